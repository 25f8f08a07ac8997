#include "phi/data/documents.h"

#include <algorithm>
#include <filesystem>

#include "phi/core/error.h"
#include "phi/core/text_io.h"

namespace phi {

namespace fs = std::filesystem;

namespace {

bool is_document_file(const fs::path& p) {
  const auto name = p.filename().string();
  for (const char* suffix : {".jsonl", ".jsonl.gz", ".jsonl.zst"}) {
    const std::string s(suffix);
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) return true;
  }
  return false;
}

}  // namespace

bool valid_utf8(const std::string& text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int extra = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + static_cast<size_t>(extra) >= n) return false;
    for (int k = 1; k <= extra; ++k) {
      if ((s[i + static_cast<size_t>(k)] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + static_cast<size_t>(k)] & 0x3F);
    }
    static const uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += static_cast<size_t>(extra) + 1;
  }
  return true;
}

namespace {

// A stage's kept documents: NNNNN.jsonl.
bool is_stage_document(const fs::path& p) {
  const auto name = p.filename().string();
  return name.size() == 11 && name.compare(5, 6, ".jsonl") == 0 &&
         std::all_of(name.begin(), name.begin() + 5, [](char c) { return c >= '0' && c <= '9'; });
}

// The document files under `dir`: in a stage's output directory (it has stats.json or .parts)
// only its kept documents; elsewhere every document file, hidden entries skipped.
void collect(const fs::path& dir, std::vector<std::string>& found) {
  const bool stage_output = fs::exists(dir / "stats.json") || fs::exists(dir / ".parts");
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (stage_output) {
      if (entry.is_regular_file() && is_stage_document(entry.path())) found.push_back(entry.path().string());
    } else if (entry.is_directory()) {
      collect(entry.path(), found);
    } else if (entry.is_regular_file() && is_document_file(entry.path())) {
      found.push_back(entry.path().string());
    }
  }
}

}  // namespace

std::vector<std::string> document_files(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const auto& input : inputs) {
    if (fs::is_directory(input)) {
      std::vector<std::string> found;
      collect(input, found);
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::exists(input)) {
      files.push_back(input);
    } else {
      throw Error("no such input file or directory", input);
    }
  }
  return files;
}

void for_each_document(const std::string& file, const std::function<void(Document&& document)>& fn,
                       const std::function<void(const std::string& where, const std::string& why)>& bad_record) {
  const std::string text = read_maybe_compressed(file, "document file");
  const std::string name = fs::path(file).filename().string();
  auto bad = [&](const std::string& why, const std::string& where) {
    if (!bad_record) throw Error(why, where);
    bad_record(where, why);
    return true;
  };
  auto record = [&](const nlohmann::json& j, const std::string& where) {
    if (!j.is_object()) return bad("the record is not a JSON object", where);
    auto text_it = j.find("text");
    if (text_it == j.end() || !text_it->is_string()) return bad("the record has no string \"text\"", where);
    Document d;
    d.text = text_it->get<std::string>();
    if (!valid_utf8(d.text)) return bad("the record's text is not valid UTF-8", where);
    auto id = j.find("id");
    if (id != j.end() && id->is_string()) {
      d.id = id->get<std::string>();
    } else if (id != j.end() && id->is_number_integer()) {
      d.id = std::to_string(id->get<int64_t>());
    } else {
      d.id = name + where.substr(where.rfind(':'));
    }
    auto source = j.find("source");
    d.source = source != j.end() && source->is_string() ? source->get<std::string>() : name;
    if (j.contains("metadata")) d.metadata = j["metadata"];
    fn(std::move(d));
    return true;
  };
  if (bad_record) {
    for_each_jsonl_text_skipping(text, file, record, bad_record);
  } else {
    for_each_jsonl_text(text, file, record);
  }
}

nlohmann::json document_to_json(const Document& d) {
  nlohmann::json j = {{"id", d.id}, {"text", d.text}, {"source", d.source}};
  if (!d.metadata.is_null()) j["metadata"] = d.metadata;
  return j;
}

}  // namespace phi
