// Documents of the data pipeline: JSONL records {"id", "text", "source", "metadata"?}, one per line,
// read from .jsonl, .jsonl.gz and .jsonl.zst files or directories of them (docs/data.md).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace phi {

struct Document {
  std::string id;
  std::string text;
  std::string source;
  nlohmann::json metadata;  // null when absent
};

/// The document files of `inputs`: files as given, directories searched recursively for .jsonl,
/// .jsonl.gz and .jsonl.zst (hidden entries skipped; in a stage's output directory, one with
/// stats.json or .parts, only its kept NNNNN.jsonl); sorted within each directory. A missing input
/// is an error naming it.
std::vector<std::string> document_files(const std::vector<std::string>& inputs);

/// Calls fn for every document of one file, in order. A line that is not a JSON object, a record
/// whose "text" is missing or not a string, or text that is not valid UTF-8 is an error naming
/// file:line. A record without "id" gets "<file name>:<line>"; without "source", the file name.
/// With `bad_record`, such a line is reported to it (where, why) and skipped instead.
void for_each_document(const std::string& file, const std::function<void(Document&& document)>& fn,
                       const std::function<void(const std::string& where, const std::string& why)>& bad_record = {});

nlohmann::json document_to_json(const Document& document);

/// Whether `text` is valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool valid_utf8(const std::string& text);

}  // namespace phi
