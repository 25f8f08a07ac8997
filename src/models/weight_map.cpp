#include "phi/models/weight_map.h"

#include <ATen/ATen.h>

#include "phi/core/error.h"
#include "phi/models/family.h"

namespace phi {

HfTensorReader::HfTensorReader(const TensorStore& store) : store_(store) {}

at::Tensor HfTensorReader::take(const std::string& name, const std::vector<int64_t>& shape) {
  if (!store_.contains(name)) {
    throw Error("missing tensor \"" + name + "\"", store_.description(),
                "the checkpoint does not match its config.json (wrong family or size?)");
  }
  const auto& info = store_.info(name);
  if (info.shape != shape) {
    throw Error("tensor \"" + name + "\" has shape " + c10::str(at::IntArrayRef(info.shape)) +
                    ", config.json implies " + c10::str(at::IntArrayRef(shape)),
                store_.file_of(name), "the checkpoint does not match its config.json");
  }
  if (info.dtype != "F32" && info.dtype != "F16" && info.dtype != "BF16") {
    throw Error("tensor \"" + name + "\" has dtype " + info.dtype +
                    "; model weights must be F32, F16 or BF16",
                store_.file_of(name));
  }
  consumed_.insert(name);
  return store_.tensor(name);
}

void HfTensorReader::ignore_suffix(const std::string& suffix) { ignored_suffixes_.push_back(suffix); }

void HfTensorReader::finish() const {
  std::vector<std::string> unexpected;
  for (const auto& name : store_.names()) {
    if (consumed_.count(name)) continue;
    bool ignored = false;
    for (const auto& suffix : ignored_suffixes_) {
      ignored = ignored || (name.size() >= suffix.size() &&
                            name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0);
    }
    if (!ignored) unexpected.push_back(name);
  }
  if (unexpected.empty()) return;
  std::string list;
  for (size_t i = 0; i < unexpected.size() && i < 5; ++i) list += (i ? ", " : "") + unexpected[i];
  if (unexpected.size() > 5) list += ", ... (" + std::to_string(unexpected.size()) + " in all)";
  throw Error("unexpected tensor \"" + unexpected.front() + "\" (not used by the model: " + list + ")",
              store_.file_of(unexpected.front()),
              "the checkpoint does not match its config.json (wrong family or layer count?)");
}

std::string hf_layer(int64_t i, const std::string& rest) {
  return "model.layers." + std::to_string(i) + "." + rest;
}

std::string canonical_layer(int64_t i, const std::string& rest) {
  return "layers." + std::to_string(i) + "." + rest;
}

const HfWeightMap& weight_map_for(const std::string& family) { return *family_spec(family).weight_map; }

}  // namespace phi
