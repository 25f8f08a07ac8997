// Hugging Face safetensors: memory-mapped reading with full validation of the header against the
// file, and atomic writing (temporary name, fsync, rename), single file or sharded with
// model.safetensors.index.json.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
//   {"__metadata__": {...}, "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
// then the data region; offsets are relative to the start of the data region.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace phi {

/// One tensor's entry in a safetensors header.
struct TensorInfo {
  std::string name;
  std::string dtype;  // safetensors spelling: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offsets into the data region
  uint64_t end = 0;
};

/// A validated, memory-mapped safetensors file. Tensors are zero-copy views of the mapping
/// (copy-on-write: writing to them never touches the file) that keep the mapping alive.
class SafetensorsFile {
 public:
  /// Opens and validates: size, header length, header JSON, dtypes, shapes, offsets in range,
  /// sizes matching shapes, tensors tiling the data region exactly (no gaps, overlaps or trailing
  /// bytes, as the format's reference implementation requires). Throws phi::Error naming the file and the tensor.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  /// The tensor as stored (its dtype and shape).
  at::Tensor tensor(const std::string& name) const;

 private:
  struct Mapping;
  SafetensorsFile() = default;
  std::string path_;
  std::shared_ptr<Mapping> mapping_;  // shared with every tensor view
  const uint8_t* data_ = nullptr;     // start of the data region
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

/// All tensors of a checkpoint directory: model.safetensors, or the shards named by
/// model.safetensors.index.json (every listed shard must exist and hold what the index says).
class TensorStore {
 public:
  static TensorStore open_directory(const std::string& directory);
  static TensorStore open_file(const std::string& path);

  std::vector<std::string> names() const;
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  at::Tensor tensor(const std::string& name) const;
  /// The file holding `name`, for error messages.
  const std::string& file_of(const std::string& name) const;
  const std::string& description() const { return description_; }

 private:
  std::string description_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> owner_;
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

/// Writes one safetensors file atomically. Tensors are written as stored (contiguous CPU copies are
/// made where needed); names must be unique.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

/// Writes a checkpoint directory: one model.safetensors when the total fits `max_shard_bytes`
/// (0: no limit), else model-0000i-of-0000n.safetensors shards plus model.safetensors.index.json.
void save_safetensors_directory(const std::string& directory, const NamedTensors& tensors,
                                uint64_t max_shard_bytes = 0);

/// Parses a safetensors dtype string ("F32", "BF16", ...); throws for unsupported ones.
c10::ScalarType scalar_type_from_safetensors(const std::string& dtype);
std::string safetensors_dtype_name(c10::ScalarType type);

}  // namespace phi
