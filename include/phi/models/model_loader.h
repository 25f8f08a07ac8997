// Loading and saving Hugging Face model directories (config.json + safetensors).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "phi/config/model_config.h"
#include "phi/models/transformer.h"

namespace phi {

struct LoadOptions {
  c10::ScalarType dtype = c10::ScalarType::Float;
  c10::Device device = c10::Device(c10::DeviceType::CPU);
  std::vector<std::string> config_overrides;  // --set a.b=v applied to config.json
};

/// The model config of a directory's config.json (HF format, or the engine's own).
ModelConfig load_directory_config(const std::string& directory,
                                  const std::vector<std::string>& overrides = {});

/// Loads config.json and the safetensors of `directory`; every tensor is checked by name, shape and
/// dtype, and unexpected tensors are errors.
Transformer load_model(const std::string& directory, const LoadOptions& options = {});

/// Writes `directory` as a Hugging Face checkpoint that transformers' from_pretrained loads:
/// config.json with torch_dtype, and model.safetensors (or shards + index past max_shard_bytes).
void save_model(const Transformer& model, const std::string& directory, c10::ScalarType dtype,
                uint64_t max_shard_bytes = 0);

/// Parses "f32"/"float32", "f16"/"float16", "bf16"/"bfloat16".
c10::ScalarType parse_dtype(const std::string& text);
/// "float32", "float16", "bfloat16".
std::string dtype_name(c10::ScalarType dtype);
/// Parses "cpu", "cuda", "cuda:N"; a CUDA device without a GPU is an error with a hint.
c10::Device parse_device(const std::string& text);

}  // namespace phi
