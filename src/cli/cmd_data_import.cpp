// phi data import --from PATHS... --output DIR [--extensions .py ...] [--separator TEXT] [--source NAME]
//   [--files-per-shard 1000] [--max-bytes 1048576]
// Source trees (the way code corpora arrive) or text files into documents: one per file, id
// "<root name>/<path under it>", or one per piece between separators ("#k" appended).
// The output directory's contract is described in cmd_data_stages.cpp.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "cli/data_stages.h"
#include "cli/stage_output.h"
#include "core/file_util.h"
#include "phi/core/error.h"
#include "phi/core/progress.h"
#include "phi/core/text_io.h"
#include "phi/data/documents.h"

namespace phi::cli {

namespace fs = std::filesystem;

int run_import(const ImportOptions& o, const TaskSlice& slice) {
  slice.validate();
  if (o.files_per_shard < 1) throw Error("files_per_shard must be positive");
  // Every file, in a fixed order: roots as given, each searched recursively and sorted.
  struct Source {
    fs::path path;
    std::string name;  // the document id: <root name>/<path under the root>
    std::string source;
  };
  std::vector<Source> sources;
  for (const auto& root : o.from) {
    const fs::path r(root);
    if (!fs::exists(r)) throw Error("import path does not exist", root);
    const auto root_name = r.filename().empty() ? r.parent_path().filename().string() : r.filename().string();
    const auto source = o.source.empty() ? root_name : o.source;
    auto wanted = [&](const fs::path& p) {
      if (o.extensions.empty()) return true;
      const auto name = p.filename().string();
      return std::any_of(o.extensions.begin(), o.extensions.end(), [&](const std::string& ext) {
        return name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0;
      });
    };
    if (!fs::is_directory(r)) {
      sources.push_back({r, root_name, source});
      continue;
    }
    std::vector<fs::path> found;
    for (auto it = fs::recursive_directory_iterator(r, fs::directory_options::skip_permission_denied);
         it != fs::recursive_directory_iterator(); ++it) {
      if (it->is_regular_file() && wanted(it->path())) found.push_back(it->path());
    }
    std::sort(found.begin(), found.end());
    if (o.max_files > 0 && found.size() > static_cast<size_t>(o.max_files)) {
      std::vector<fs::path> spread;
      const auto n = static_cast<size_t>(o.max_files);
      for (size_t i = 0; i < n; ++i) spread.push_back(found[i * found.size() / n]);
      found = std::move(spread);
    }
    for (const auto& p : found) sources.push_back({p, root_name + "/" + fs::relative(p, r).generic_string(), source});
  }
  if (sources.empty())
    throw Error("no files to import", o.from.empty() ? "" : o.from.front(), "check --from and --extensions");

  std::string listing;
  for (const auto& src : sources) listing += src.name + "\n";
  const nlohmann::json parameters = {{"from", o.from},
                                     {"extensions", o.extensions},
                                     {"separator", o.separator},
                                     {"source", o.source},
                                     {"files_per_shard", o.files_per_shard},
                                     {"max_bytes", o.max_bytes},
                                     {"max_files", o.max_files},
                                     {"files", sources.size()},
                                     {"files_hash", XXH64(listing.data(), listing.size(), 0)}};
  const auto per = static_cast<size_t>(o.files_per_shard);
  const size_t shards = (sources.size() + per - 1) / per;
  StageOutput output("import", o.output, parameters, shards, {"invalid_utf8", "too_large", "empty", "unreadable"});
  if (output.complete()) return 0;
  Progress progress("import", static_cast<int64_t>(shards), "shards");
  for (size_t shard = 0; shard < shards; ++shard) {
    if (!slice.mine(shard) || output.file_done(shard)) {
      progress.advance();
      continue;
    }
    for (size_t i = shard * per; i < std::min(sources.size(), (shard + 1) * per); ++i) {
      const auto& src = sources[i];
      Document d;
      d.id = src.name;
      d.source = src.source;
      d.metadata = {{"path", src.name}};
      std::error_code ec;
      const auto size = fs::file_size(src.path, ec);
      if (ec) {
        output.drop(d, "unreadable");
        continue;
      }
      if (o.max_bytes > 0 && size > static_cast<uintmax_t>(o.max_bytes)) {
        output.drop(d, "too_large", {{"bytes", size}});
        continue;
      }
      std::string text;
      try {
        text = read_maybe_compressed(src.path.string(), "imported file");
      } catch (const Error&) {
        output.drop(d, "unreadable");
        continue;
      }
      if (!valid_utf8(text)) {
        output.drop(d, "invalid_utf8");
        continue;
      }
      std::vector<std::string> parts;
      if (o.separator.empty()) {
        parts.push_back(std::move(text));
      } else {
        size_t start = 0;
        for (;;) {
          const size_t end = text.find(o.separator, start);
          parts.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
          if (end == std::string::npos) break;
          start = end + o.separator.size();
        }
      }
      for (size_t k = 0; k < parts.size(); ++k) {
        Document part = d;
        if (parts.size() > 1) {
          part.id += "#" + std::to_string(k);
          part.metadata["part"] = k;
        }
        part.text = std::move(parts[k]);
        if (part.text.find_first_not_of(" \t\r\n") == std::string::npos) {
          if (parts.size() == 1) output.drop(part, "empty");
          continue;  // empty pieces between separators are not documents
        }
        output.keep(part);
      }
    }
    output.end_file(shard);
    progress.advance();
  }
  progress.finish();
  if (!output.ready_to_finish(slice)) return 0;
  const auto stats = output.finish({{"files", sources.size()}});
  spdlog::info("import: {} files, {} documents kept in {} shards", sources.size(),
               stats["documents_out"].get<int64_t>(), shards);
  return 0;
}

}  // namespace phi::cli
