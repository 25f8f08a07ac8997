#include "phi/models/model_loader.h"

#include <filesystem>

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/io/safetensors.h"
#include "phi/models/family.h"
#include "phi/models/weight_map.h"

namespace phi {

ModelConfig load_directory_config(const std::string& directory,
                                  const std::vector<std::string>& overrides) {
  const auto path = (std::filesystem::path(directory) / "config.json").string();
  if (!std::filesystem::exists(path)) {
    throw Error("model directory has no config.json", directory,
                "pass a Hugging Face model directory (config.json + *.safetensors)");
  }
  return load_model_config(path, overrides);
}

Transformer load_model(const std::string& directory, const LoadOptions& options) {
  auto config = load_directory_config(directory, options.config_overrides);
  auto store = TensorStore::open_directory(directory);
  HfTensorReader reader(store);
  auto parameters = weight_map_for(config.family).load(reader, config);
  reader.finish();
  for (auto& item : parameters) {
    item.second = item.second.to(options.device, options.dtype).contiguous();
  }
  spdlog::debug("loaded {} tensors from {}", parameters.size(), store.description());
  return Transformer(config, std::move(parameters));
}

void save_model(const Transformer& model, const std::string& directory, c10::ScalarType dtype,
                uint64_t max_shard_bytes) {
  const auto& config = model.config();
  auto tensors = weight_map_for(config.family).save(model.parameters(), config);
  for (auto& item : tensors) item.second = item.second.to(at::kCPU, dtype).contiguous();
  std::filesystem::create_directories(directory);
  save_safetensors_directory(directory, tensors, max_shard_bytes);
  write_json_file_atomic((std::filesystem::path(directory) / "config.json").string(),
                         model_config_to_hf_json(config, dtype_name(dtype)));
}

c10::ScalarType parse_dtype(const std::string& text) {
  if (text == "f32" || text == "float32" || text == "fp32") return at::kFloat;
  if (text == "f16" || text == "float16" || text == "fp16") return at::kHalf;
  if (text == "bf16" || text == "bfloat16") return at::kBFloat16;
  throw Error("unknown dtype \"" + text + "\"", "", "use one of f32, f16, bf16");
}

std::string dtype_name(c10::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "float32";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    default: throw Error(std::string("unsupported model dtype ") + c10::toString(dtype));
  }
}

c10::Device parse_device(const std::string& text) {
  c10::Device device(c10::DeviceType::CPU);
  try {
    device = c10::Device(text);
  } catch (const std::exception&) {
    throw Error("unknown device \"" + text + "\"", "", "use cpu, cuda or cuda:N");
  }
  if (device.is_cuda() && !at::hasCUDA()) {
    throw Error("device \"" + text + "\" requested but no CUDA GPU is available", "",
                "run with --device cpu");
  }
  return device;
}

}  // namespace phi
