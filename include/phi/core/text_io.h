// Reading text inputs: whole files, and JSONL files line by line with positions for errors.
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace phi {

/// The whole file as bytes; `what` names it in the error ("cannot open <what>").
std::string read_text_file(const std::string& path, const std::string& what = "input file");

/// The same, decompressing a .gz (zlib) or .zst (zstd) file; a build without the library says so.
std::string read_maybe_compressed(const std::string& path, const std::string& what = "input file");

/// Calls `member_fn(name, bytes)` for each regular file of a tar archive (.tar, .tar.gz, .tgz,
/// .tar.zst), in archive order; a corrupt or truncated archive is an error naming it, and a build
/// without libarchive says so.
void for_each_archive_member(const std::string& path,
                             const std::function<void(const std::string& name, const std::string& bytes)>& member_fn);

/// Whether `path` names a tar archive by its suffix (.tar, .tar.gz, .tgz, .tar.zst).
bool is_archive_path(const std::string& path);

/// Calls `line_fn(value, where)` for each non-blank line of a JSONL file, `where` being
/// "path:line"; a line that is not JSON, or longer than `max_line_bytes`, is an error naming it
/// (read in bounded pieces: a file without newlines never becomes one huge allocation). Stops
/// early when line_fn returns false.
constexpr size_t kMaxJsonlLineBytes = size_t{64} << 20;
void for_each_jsonl(const std::string& path,
                    const std::function<bool(const nlohmann::json& value, const std::string& where)>& line_fn,
                    size_t max_line_bytes = kMaxJsonlLineBytes);
/// The raw non-blank lines of a JSONL file, unparsed (for callers that parse them on threads):
/// `line_fn(line, number)`, numbers from 1; a line longer than `max_line_bytes` is an error naming it.
void for_each_jsonl_raw_line(const std::string& path,
                             const std::function<void(std::string&& line, int64_t number)>& line_fn,
                             size_t max_line_bytes = kMaxJsonlLineBytes);
/// The same over JSONL text already in memory (a decompressed file); `source` names it in errors
/// ("source:line").
void for_each_jsonl_text(const std::string& text, const std::string& source,
                         const std::function<bool(const nlohmann::json& value, const std::string& where)>& line_fn,
                         size_t max_line_bytes = kMaxJsonlLineBytes);

/// The same, a line that is not JSON reported to `bad_line(where, why)` and skipped instead of an
/// error.
void for_each_jsonl_text_skipping(
    const std::string& text, const std::string& source,
    const std::function<bool(const nlohmann::json& value, const std::string& where)>& line_fn,
    const std::function<void(const std::string& where, const std::string& why)>& bad_line);

}  // namespace phi
