// Private file helpers shared by the writers: atomic writes (temporary name, fsync, rename).
#pragma once

#include <cstddef>
#include <string>

namespace phi {

/// Writes `size` bytes to `path` through "<path>.tmp.<pid>", fsyncs the file, renames it over
/// `path` and fsyncs the directory. On any failure the temporary file is removed and the previous
/// content of `path` is untouched.
void write_file_atomic(const std::string& path, const void* data, size_t size);

/// Streaming variant: `writer` appends the content through `append(data, size)`.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();  // removes the temporary file unless commit() succeeded
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void append(const void* data, size_t size);
  /// fsync, rename over the final path, fsync the directory.
  void commit();

 private:
  std::string path_;
  std::string tmp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

/// fsyncs a directory (makes the entries created or renamed in it durable).
void fsync_directory(const std::string& directory);
/// fsyncs the directory holding `path` (makes a rename durable).
void fsync_parent_directory(const std::string& path);

}  // namespace phi
