// phi data decontaminate --input PATHS... --output DIR [--eval PATHS...] [--ngram 13] [--min-words 13]
//   [--action drop|cut|report] [--cut-margin 200] [--min-piece 200] [--max-pieces 10]
// hits.jsonl lists every document that matches an eval item, once per item (the span and the
// number of n-grams); removed.jsonl names the eval item a dropped document matches.
// The output directory's contract is described in cmd_data_stages.cpp.
#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "cli/data_stages.h"
#include "cli/stage_output.h"
#include "phi/core/error.h"
#include "phi/core/text_io.h"
#include "phi/data/decontamination.h"
#include "phi/data/documents.h"

namespace phi::cli {

namespace fs = std::filesystem;

namespace {

// The start of the UTF-8 character holding byte i (i itself when it starts one).
size_t char_start(const std::string& s, size_t i) {
  while (i > 0 && i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return i;
}

std::string excerpt(const std::string& text, size_t begin, size_t end, size_t limit = 300) {
  if (end - begin > limit) end = char_start(text, begin + limit);
  return text.substr(begin, end - begin);
}

bool is_blank(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

// The text with every match and `margin` bytes around it cut out: the pieces left that keep at
// least `min_piece` bytes, blank-trimmed (GPT-3's cleaning rule).
std::vector<std::string> cut_pieces(const std::string& text, const std::vector<EvalMatch>& matches, int64_t margin,
                                    int64_t min_piece) {
  std::vector<std::pair<size_t, size_t>> cuts;
  for (const auto& m : matches) {
    const size_t b =
        char_start(text, m.begin > static_cast<size_t>(margin) ? m.begin - static_cast<size_t>(margin) : 0);
    const size_t e = char_start(text, std::min(text.size(), m.end + static_cast<size_t>(margin)));
    cuts.emplace_back(b, e);
  }
  std::sort(cuts.begin(), cuts.end());
  std::vector<std::string> pieces;
  size_t at = 0;
  auto take = [&](size_t b, size_t e) {
    while (b < e && is_blank(text[b])) ++b;
    while (e > b && is_blank(text[e - 1])) --e;
    if (static_cast<int64_t>(e - b) >= min_piece) pieces.push_back(text.substr(b, e - b));
  };
  for (const auto& [b, e] : cuts) {
    if (b > at) take(at, b);
    at = std::max(at, e);
  }
  if (at < text.size()) take(at, text.size());
  return pieces;
}

}  // namespace

int run_decontaminate(const DecontaminateOptions& o, const TaskSlice& slice) {
  slice.validate();
  if (o.action != "drop" && o.action != "cut" && o.action != "report") {
    throw Error("--action must be drop, cut or report, got " + o.action);
  }
  if (o.index.n_gram < 1 || o.index.min_words < 1) throw Error("--ngram and --min-words must be positive");
  const auto files = document_files(o.inputs);
  if (files.empty()) throw Error("no document files (.jsonl, .jsonl.gz, .jsonl.zst) in the inputs");
  for (const auto& e : o.eval) {
    if (!fs::exists(e)) {
      throw Error("eval path does not exist", e, "--eval takes eval sets: files or directories (../shared/data/eval)");
    }
  }
  EvalIndex index(o.index);
  index.add(o.eval);
  if (index.items() == 0) throw Error("no eval items found under --eval", o.eval.front());
  nlohmann::json parameters = {{"inputs", files},          {"eval", o.eval},
                               {"n_gram", o.index.n_gram}, {"min_words", o.index.min_words},
                               {"action", o.action},       {"skip_bad_records", o.skip_bad_records}};
  if (o.action == "cut") {
    parameters["cut_margin"] = o.cut_margin;
    parameters["min_piece"] = o.min_piece;
    parameters["max_pieces"] = o.max_pieces;
  }
  StageOutput output("decontaminate", o.output, parameters, files.size(), {"contaminated"});
  if (output.complete()) return 0;
  spdlog::info("decontaminate: {} eval items, {} distinct n-grams, from {}", index.items(), index.n_grams(),
               o.eval.front());
  output.for_each_pending_file(
      files, slice, o.skip_bad_records, "decontaminate", [&](size_t f, std::vector<Document>& docs) {
        std::string hits;
        std::vector<std::vector<EvalMatch>> found(docs.size());
        at::parallel_for(0, static_cast<int64_t>(docs.size()), 8, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) found[static_cast<size_t>(i)] = index.find(docs[static_cast<size_t>(i)].text);
        });
        for (size_t i = 0; i < docs.size(); ++i) {
          auto& d = docs[i];
          const auto& matches = found[i];
          if (matches.empty()) {
            output.keep(d);
            continue;
          }
          std::vector<std::string> pieces;
          std::string fate = o.action == "report" ? "kept" : "dropped";
          if (o.action == "cut") {
            pieces = cut_pieces(d.text, matches, o.cut_margin, o.min_piece);
            if (!pieces.empty() && static_cast<int64_t>(pieces.size()) <= o.max_pieces) fate = "cut";
          }
          // One hits line per (document, eval item): the first span and every n-gram of the item.
          std::map<int32_t, nlohmann::json> per_item;
          std::vector<std::string> items;
          for (const auto& m : matches) {
            auto& h = per_item[m.item];
            if (h.is_null()) {
              h = {{"id", d.id},
                   {"source", d.source},
                   {"eval_item", index.item_name(m.item)},
                   {"n_grams", 0},
                   {"begin", m.begin},
                   {"end", m.end},
                   {"excerpt", excerpt(d.text, m.begin, m.end)},
                   {"action", fate}};
              items.push_back(index.item_name(m.item));
            }
            h["n_grams"] = h["n_grams"].get<int64_t>() + m.n_grams;
          }
          for (const auto& [item, h] : per_item) hits += h.dump() + "\n";
          if (fate == "kept") {
            output.keep(d);
          } else if (fate == "cut") {
            std::string text;
            for (const auto& p : pieces) text += (text.empty() ? "" : "\n\n") + p;
            d.text = std::move(text);
            if (!d.metadata.is_object()) d.metadata = nlohmann::json::object();
            d.metadata["decontamination_cuts"] = matches.size();
            output.keep(d);
          } else {
            output.drop(d, "contaminated", {{"eval_item", items.front()}, {"eval_items", items}});
          }
        }
        output.part_file(f, "hits.jsonl", hits);
      });
  if (!output.ready_to_finish(slice)) return 0;
  auto stats =
      output.finish({{"eval_items", index.items()}, {"eval_n_grams", index.n_grams()}, {"eval_files", index.summary()}},
                    {"hits.jsonl"});
  // Documents with hits, and those cut, from the files' hits (each document once).
  std::set<std::string> contaminated_ids, cut_ids;
  for_each_jsonl((fs::path(o.output) / "hits.jsonl").string(), [&](const nlohmann::json& h, const std::string&) {
    const auto key = h["source"].get<std::string>() + "\n" + h["id"].get<std::string>();
    contaminated_ids.insert(key);
    if (h["action"] == "cut") cut_ids.insert(key);
    return true;
  });
  const auto contaminated = static_cast<int64_t>(contaminated_ids.size()), cut = static_cast<int64_t>(cut_ids.size());
  stats["contaminated_documents"] = contaminated;
  stats["cut_documents"] = cut;
  write_json_file_atomic((fs::path(o.output) / "stats.json").string(), stats);
  spdlog::info("decontaminate: {} documents in, {} matched eval items ({} cut), {} kept ({:.1f} MB/s)",
               stats["documents_in"].get<int64_t>(), contaminated, cut, stats["documents_out"].get<int64_t>(),
               stats["megabytes_per_second"].get<double>());
  return 0;
}

}  // namespace phi::cli
