// phi forward --model DIR --input ids.json --output logits.safetensors [--device] [--dtype]
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/inference_model.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/io/safetensors.h"
#include "phi/models/model_loader.h"

namespace phi::cli {

namespace {
struct ForwardOptions {
  std::string model;
  std::string input;
  std::string output;
  std::string device = "cpu";
  std::string dtype = "f32";
  std::vector<std::string> overrides;
  KernelChoice kernels;
};

// ids.json: a JSON array of token-id arrays, one per sequence.
std::vector<std::vector<int64_t>> read_token_ids(const std::string& path, int64_t vocab_size,
                                                 int64_t max_length) {
  auto document = read_json_file(path);
  if (!document.is_array() || document.empty()) {
    throw Error("$ must be a non-empty array of token-id arrays", path,
                "write e.g. [[1, 2, 3], [4, 5]]");
  }
  std::vector<std::vector<int64_t>> sequences;
  for (size_t i = 0; i < document.size(); ++i) {
    const auto& seq = document[i];
    const std::string where = "$[" + std::to_string(i) + "]";
    if (!seq.is_array() || seq.empty()) {
      throw Error(where + " must be a non-empty array of token ids", path);
    }
    if (static_cast<int64_t>(seq.size()) > max_length) {
      throw Error(where + " has " + std::to_string(seq.size()) + " tokens, more than the model's context of " +
                      std::to_string(max_length),
                  path, "shorten the sequence");
    }
    std::vector<int64_t> ids;
    for (size_t j = 0; j < seq.size(); ++j) {
      const auto& v = seq[j];
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= vocab_size) {
        throw Error(where + "[" + std::to_string(j) + "] = " + v.dump() +
                        " is not a token id in [0, " + std::to_string(vocab_size) + ")",
                    path);
      }
      ids.push_back(v.get<int64_t>());
    }
    sequences.push_back(std::move(ids));
  }
  return sequences;
}

int run_forward(const ForwardOptions& o) {
  o.kernels.apply();
  LoadOptions load;
  load.dtype = parse_dtype(o.dtype);
  load.device = parse_device(o.device);
  load.config_overrides = o.overrides;
  auto model = load_model(o.model, load);
  const auto& config = model.config();
  auto sequences = read_token_ids(o.input, config.vocab_size, config.max_position_embeddings);
  std::vector<const std::vector<int64_t>*> views;
  for (const auto& s : sequences) views.push_back(&s);
  std::vector<int64_t> lengths;
  auto ids = pad_token_ids(views, lengths);
  at::NoGradGuard no_grad;
  auto logits = model.forward(ids, at::tensor(lengths, at::kLong)).to(at::kCPU, at::kFloat);
  save_safetensors(o.output, {{"logits", logits}});
  spdlog::info("wrote logits {} to {}", c10::str(logits.sizes()), o.output);
  return 0;
}
}  // namespace

void add_forward_command(CLI::App& root, Runner& run) {
  auto o = std::make_shared<ForwardOptions>();
  auto* cmd = root.add_subcommand("forward", "Run the full forward pass on token ids and save the logits");
  cmd->add_option("--model", o->model, "Hugging Face model directory")->required();
  cmd->add_option("--input", o->input, "ids.json: an array of token-id arrays (lengths may differ)")->required();
  cmd->add_option("--output", o->output, "logits.safetensors: float32 `logits` [batch, max_len, vocab], padding 0")
      ->required();
  cmd->add_option("--device", o->device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "compute dtype: f32, f16, bf16")->capture_default_str();
  cmd->add_option("--set", o->overrides, "override a config.json value: --set key=value (repeatable)");
  add_kernel_options(cmd, o->kernels);
  cmd->callback([&run, o]() { run = [o]() { return run_forward(*o); }; });
}

}  // namespace phi::cli
