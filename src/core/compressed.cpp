// Whole files read as text, decompressing .gz (zlib) and .zst (zstd) when the build has them.
#include <fstream>
#include <string>

#ifdef PHI_WITH_ZLIB
#include <zlib.h>
#endif
#ifdef PHI_WITH_ZSTD
#include <zstd.h>
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

}  // namespace phi
