#include "phi/data/decontamination.h"

#include <algorithm>
#include <filesystem>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core/csv.h"
#include "data/unicode_classes.h"
#include "phi/core/error.h"
#include "phi/core/text_io.h"

namespace phi {

namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The code point at text[i] (advancing i); an invalid sequence is one U+FFFD per byte.
uint32_t next_code_point(const std::string& text, size_t& i) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const unsigned char b = s[i];
  if (b < 0x80) {
    ++i;
    return b;
  }
  const int length = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 0;
  if (length == 0 || i + static_cast<size_t>(length) > text.size()) {
    ++i;
    return 0xFFFD;
  }
  uint32_t c = b & (0x7F >> length);
  for (int k = 1; k < length; ++k) c = (c << 6) | (s[i + static_cast<size_t>(k)] & 0x3F);
  i += static_cast<size_t>(length);
  return c;
}

// Python's str.split() separators.
bool is_space(uint32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
#ifdef PHI_WITH_ICU
  return is_python_space(static_cast<char32_t>(c));
#else
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
#endif
}

bool is_ascii_punctuation(unsigned char c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
}

uint64_t gram_hash(const uint64_t* word_hashes, int64_t length) {
  return XXH3_64bits_withSeed(word_hashes, static_cast<size_t>(length) * sizeof(uint64_t),
                              static_cast<uint64_t>(length));
}

std::vector<uint64_t> hashes_of(const std::vector<NormalizedWord>& words) {
  std::vector<uint64_t> h(words.size());
  for (size_t i = 0; i < words.size(); ++i) h[i] = words[i].hash;
  return h;
}

std::string id_text(const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

}  // namespace

std::vector<NormalizedWord> normalized_words(const std::string& text) {
  std::vector<NormalizedWord> words;
  std::string folded;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    if (is_space(next_code_point(text, i))) continue;
    size_t end = i;
    while (end < text.size()) {
      size_t j = end;
      if (is_space(next_code_point(text, j))) break;
      end = j;
    }
    folded.clear();
    for (size_t k = start; k < end; ++k) {
      const auto c = static_cast<unsigned char>(text[k]);
      if (is_ascii_punctuation(c)) continue;
      folded += static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    if (!folded.empty()) words.push_back({start, end, XXH3_64bits(folded.data(), folded.size())});
    i = end;
  }
  return words;
}

int32_t EvalIndex::new_item(const std::string& name) {
  items_.push_back(name);
  return static_cast<int32_t>(items_.size() - 1);
}

void EvalIndex::add_text(int32_t item, const std::string& text, nlohmann::json& file_summary) {
  const auto words = normalized_words(text);
  const auto w = static_cast<int64_t>(words.size());
  if (w < options_.min_words) {
    file_summary["short_texts_skipped"] = file_summary.value("short_texts_skipped", 0) + 1;
    return;
  }
  const int64_t length = std::min(w, options_.n_gram);
  if (std::find(lengths_.begin(), lengths_.end(), length) == lengths_.end()) {
    lengths_.push_back(length);
    std::sort(lengths_.begin(), lengths_.end());
  }
  int64_t added = 0;
  const auto hashes = hashes_of(words);
  for (int64_t i = 0; i + length <= w; ++i) {
    added += grams_.emplace(gram_hash(&hashes[static_cast<size_t>(i)], length), item).second ? 1 : 0;
  }
  file_summary["texts"] = file_summary.value("texts", 0) + 1;
  file_summary["n_grams"] = file_summary.value("n_grams", 0) + added;
}

void EvalIndex::add_json_record(const nlohmann::json& record, const std::string& file, const std::string& fallback_id,
                                nlohmann::json& file_summary) {
  if (!record.is_object()) throw Error("an eval record is not a JSON object", fallback_id);
  std::vector<std::string> texts;
  auto take = [&](const char* key) {
    const auto it = record.find(key);
    if (it == record.end()) return;
    if (it->is_string()) texts.push_back(it->get<std::string>());
    if (it->is_array()) {
      for (const auto& v : *it) {
        if (v.is_string()) texts.push_back(v.get<std::string>());
      }
    }
  };
  // A question and its choices are one text (MMLU as JSON); every other field is its own.
  if (record.contains("question") && record["question"].is_string() && record.contains("choices") &&
      record["choices"].is_array()) {
    std::string joined = record["question"].get<std::string>();
    for (const auto& c : record["choices"]) {
      if (c.is_string()) joined += "\n" + c.get<std::string>();
    }
    texts.push_back(joined);
  } else {
    take("question");
  }
  for (const char* key : {"prompt", "canonical_solution", "text", "code", "turns", "reference"}) take(key);
  if (texts.empty()) return;
  std::string id = fallback_id;
  for (const char* key : {"task_id", "question_id", "id"}) {
    if (record.contains(key)) {
      id = file + ":" + id_text(record[key]);
      break;
    }
  }
  const auto item = new_item(id);
  const auto grams_before = grams_.size();
  for (const auto& t : texts) add_text(item, t, file_summary);
  if (grams_.size() == grams_before) {
    items_.pop_back();  // every text too short, or already indexed for an earlier item
    return;
  }
  file_summary["items"] = file_summary.value("items", 0) + 1;
}

void EvalIndex::add_csv(const std::string& text, const std::string& file, const std::string& where,
                        nlohmann::json& file_summary) {
  const auto rows = parse_csv(text, where);
  int64_t row_number = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    const auto& row = rows[r];
    if (r == 0 && !row.empty() && row[0] == "question") continue;  // the reformatted files' header
    ++row_number;
    if (row.size() < 5) {
      throw Error(
          "an MMLU-style row needs a question and four choices, this one has " + std::to_string(row.size()) + " fields",
          where + ": record " + std::to_string(r + 1));
    }
    nlohmann::json record = {{"question", row[0]},
                             {"choices", std::vector<std::string>(row.begin() + 1, row.begin() + 5)}};
    add_json_record(record, file, file + ":" + std::to_string(row_number), file_summary);
  }
}

void EvalIndex::add_file_bytes(const std::string& name, const std::string& bytes, const std::string& where) {
  auto& file_summary = summary_[name];
  if (file_summary.is_null()) file_summary = {{"items", 0}, {"texts", 0}, {"n_grams", 0}, {"short_texts_skipped", 0}};
  if (ends_with(name, ".csv")) {
    add_csv(bytes, name, where, file_summary);
  } else if (ends_with(name, ".json")) {
    nlohmann::json records;
    try {
      records = nlohmann::json::parse(bytes);
    } catch (const nlohmann::json::exception& e) {
      throw Error(std::string("eval file is not valid JSON: ") + e.what(), where);
    }
    if (!records.is_array()) throw Error("a .json eval file must hold an array of records", where);
    for (size_t i = 0; i < records.size(); ++i) {
      add_json_record(records[i], name, name + ":" + std::to_string(i + 1), file_summary);
    }
  } else {
    for_each_jsonl_text(bytes, where, [&](const nlohmann::json& record, const std::string& at) {
      add_json_record(record, name, name + ":" + at.substr(at.rfind(':') + 1), file_summary);
      return true;
    });
  }
  if (file_summary["items"] == 0) summary_.erase(name);
}

void EvalIndex::add(const std::vector<std::string>& paths) {
  auto known = [](const std::string& p) {
    return ends_with(p, ".jsonl") || ends_with(p, ".jsonl.gz") || ends_with(p, ".jsonl.zst") || ends_with(p, ".json") ||
           ends_with(p, ".csv");
  };
  auto add_file = [&](const fs::path& file, const std::string& name) {
    const auto path = file.string();
    if (is_archive_path(path)) {
      for_each_archive_member(path, [&](const std::string& member, const std::string& bytes) {
        if (known(member) && !ends_with(member, ".gz") && !ends_with(member, ".zst")) {
          add_file_bytes(name + "/" + member, bytes, path + "/" + member);
        }
      });
    } else if (known(path)) {
      add_file_bytes(name, read_maybe_compressed(path, "eval file"), path);
    }
  };
  for (const auto& p : paths) {
    const fs::path root(p);
    if (!fs::exists(root)) throw Error("eval path does not exist", p);
    if (!fs::is_directory(root)) {
      add_file(root, root.filename().string());
      continue;
    }
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(root)) {
      if (e.is_regular_file()) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) add_file(f, fs::relative(f, root).generic_string());
  }
}

std::vector<EvalMatch> EvalIndex::find(const std::string& text) const {
  if (grams_.empty()) return {};
  const auto words = normalized_words(text);
  const auto w = static_cast<int64_t>(words.size());
  struct Window {
    int32_t item;
    int64_t first, last;  // words [first, last)
  };
  std::vector<Window> windows;
  const auto hashes = hashes_of(words);
  for (const auto length : lengths_) {
    for (int64_t i = 0; i + length <= w; ++i) {
      const auto it = grams_.find(gram_hash(&hashes[static_cast<size_t>(i)], length));
      if (it != grams_.end()) windows.push_back({it->second, i, i + length});
    }
  }
  std::sort(windows.begin(), windows.end(),
            [](const Window& a, const Window& b) { return a.item != b.item ? a.item < b.item : a.first < b.first; });
  std::vector<EvalMatch> matches;
  int64_t run_last = -1;
  for (const auto& win : windows) {
    if (!matches.empty() && matches.back().item == win.item && win.first <= run_last) {
      run_last = std::max(run_last, win.last);
      matches.back().end = words[static_cast<size_t>(run_last - 1)].end;
      ++matches.back().n_grams;
      continue;
    }
    matches.push_back(
        {win.item, words[static_cast<size_t>(win.first)].begin, words[static_cast<size_t>(win.last - 1)].end, 1});
    run_last = win.last;
  }
  std::sort(matches.begin(), matches.end(), [](const EvalMatch& a, const EvalMatch& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.item < b.item;
  });
  return matches;
}

}  // namespace phi
