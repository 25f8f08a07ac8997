// Hugging Face checkpoint names <-> the engine's canonical parameter names. Each family's map lives
// in its file in src/models/families/ and is reached through its FamilySpec (phi/models/family.h).
#pragma once

#include <set>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "phi/config/model_config.h"
#include "phi/io/safetensors.h"
#include "phi/models/transformer.h"

namespace phi {

/// Reads HF tensors by name with shape checks, remembering what was consumed, so that missing and
/// unexpected tensors are reported with the file that holds them.
class HfTensorReader {
 public:
  explicit HfTensorReader(const TensorStore& store);
  /// The tensor `name` with exactly `shape`; errors name the file and tensor.
  at::Tensor take(const std::string& name, const std::vector<int64_t>& shape);
  bool has(const std::string& name) const { return store_.contains(name); }
  /// Marks tensors whose names end with `suffix` as known and unused (e.g. rotary buffers).
  void ignore_suffix(const std::string& suffix);
  /// Throws listing the tensors in the checkpoint that no mapping consumed.
  void finish() const;

 private:
  const TensorStore& store_;
  std::set<std::string> consumed_;
  std::vector<std::string> ignored_suffixes_;
};

/// One family's name map.
class HfWeightMap {
 public:
  virtual ~HfWeightMap() = default;
  /// Canonical parameters (as stored: dtype unchanged) from a checkpoint.
  virtual ParameterMap load(HfTensorReader& reader, const ModelConfig& config) const = 0;
  /// HF-named tensors from canonical parameters, in the family's usual order.
  virtual NamedTensors save(const ParameterMap& parameters, const ModelConfig& config) const = 0;
};

/// The map of a registered family (phi/models/family.h).
const HfWeightMap& weight_map_for(const std::string& family);

/// Helpers shared by the family maps.
std::string hf_layer(int64_t i, const std::string& rest);
std::string canonical_layer(int64_t i, const std::string& rest);

}  // namespace phi
