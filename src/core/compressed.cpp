// Whole files read as text, decompressing .gz (zlib) and .zst (zstd) when the build has them, and the
// members of tar archives (libarchive).
#include <fstream>
#include <string>

#ifdef PHI_WITH_ZLIB
#include <zlib.h>
#endif
#ifdef PHI_WITH_ZSTD
#include <zstd.h>
#endif
#ifdef PHI_WITH_LIBARCHIVE
#include <archive.h>
#include <archive_entry.h>
#endif

#include "phi/core/error.h"
#include "phi/core/text_io.h"

namespace phi {

namespace {

constexpr size_t kMaxDecompressed = size_t{4} << 30;

bool ends_with(const std::string& s, const char* suffix) {
  const std::string t(suffix);
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

std::string read_gzip(const std::string& path, const std::string& what) {
#ifndef PHI_WITH_ZLIB
  throw Error("this build has no zlib: decompress the " + what + " first (gunzip)", path);
#else
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) throw Error("cannot open the " + what, path);
  std::string text;
  char buffer[65536];
  int n = 0;
  while ((n = gzread(f, buffer, sizeof buffer)) > 0) {
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > kMaxDecompressed) {
      gzclose(f);
      throw Error("the decompressed " + what + " is larger than 4 GiB", path, "split it into smaller files");
    }
  }
  int code = 0;
  const char* message = gzerror(f, &code);
  const bool failed = n < 0 || (code != Z_OK && code != Z_STREAM_END);
  const std::string why = message ? message : "";
  gzclose(f);
  if (failed) throw Error("the " + what + " is not valid gzip: " + why, path);
  return text;
#endif
}

std::string read_zstd(const std::string& path, const std::string& what) {
#ifndef PHI_WITH_ZSTD
  throw Error("this build has no zstd: decompress the " + what + " first (zstd -d)", path);
#else
  const std::string compressed = read_text_file(path, what);
  ZSTD_DCtx* ctx = ZSTD_createDCtx();
  std::string text;
  std::string buffer(ZSTD_DStreamOutSize(), '\0');
  ZSTD_inBuffer in{compressed.data(), compressed.size(), 0};
  size_t last = 0;
  while (in.pos < in.size) {
    ZSTD_outBuffer out{buffer.data(), buffer.size(), 0};
    last = ZSTD_decompressStream(ctx, &out, &in);
    if (ZSTD_isError(last)) {
      const std::string why = ZSTD_getErrorName(last);
      ZSTD_freeDCtx(ctx);
      throw Error("the " + what + " is not valid zstd: " + why, path);
    }
    text.append(buffer.data(), out.pos);
    if (text.size() > kMaxDecompressed) {
      ZSTD_freeDCtx(ctx);
      throw Error("the decompressed " + what + " is larger than 4 GiB", path, "split it into smaller files");
    }
  }
  ZSTD_freeDCtx(ctx);
  if (last != 0) throw Error("the " + what + " ends in the middle of a zstd frame (truncated)", path);
  return text;
#endif
}

}  // namespace

std::string read_maybe_compressed(const std::string& path, const std::string& what) {
  if (ends_with(path, ".gz")) return read_gzip(path, what);
  if (ends_with(path, ".zst")) return read_zstd(path, what);
  return read_text_file(path, what);
}

bool is_archive_path(const std::string& path) {
  return ends_with(path, ".tar") || ends_with(path, ".tar.gz") || ends_with(path, ".tgz") ||
         ends_with(path, ".tar.zst");
}

void for_each_archive_member(const std::string& path,
                             const std::function<void(const std::string& name, const std::string& bytes)>& member_fn) {
#ifndef PHI_WITH_LIBARCHIVE
  (void)member_fn;
  throw Error("this build has no libarchive: extract the archive first (tar xf)", path);
#else
  struct Reader {
    archive* a = archive_read_new();
    ~Reader() { archive_read_free(a); }
  } r;
  archive_read_support_filter_all(r.a);
  archive_read_support_format_tar(r.a);
  archive_read_support_format_gnutar(r.a);
  if (archive_read_open_filename(r.a, path.c_str(), 1 << 16) != ARCHIVE_OK) {
    throw Error(std::string("cannot open the archive: ") + archive_error_string(r.a), path);
  }
  archive_entry* entry = nullptr;
  for (;;) {
    const int status = archive_read_next_header(r.a, &entry);
    if (status == ARCHIVE_EOF) break;
    if (status != ARCHIVE_OK) {
      throw Error(std::string("corrupt or truncated archive: ") + archive_error_string(r.a), path);
    }
    if (archive_entry_filetype(entry) != AE_IFREG) continue;
    const std::string name = archive_entry_pathname(entry);
    const auto size = archive_entry_size(entry);
    if (size < 0 || static_cast<size_t>(size) > kMaxDecompressed) {
      throw Error("archive member " + name + " is larger than 4 GiB", path);
    }
    std::string bytes(static_cast<size_t>(size), '\0');
    size_t got = 0;
    while (got < bytes.size()) {
      const auto n = archive_read_data(r.a, bytes.data() + got, bytes.size() - got);
      if (n < 0) throw Error("archive member " + name + ": " + archive_error_string(r.a), path);
      if (n == 0) throw Error("archive member " + name + " is truncated", path);
      got += static_cast<size_t>(n);
    }
    member_fn(name, bytes);
  }
#endif
}

}  // namespace phi
