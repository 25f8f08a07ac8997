#include "cli/inference_model.h"

#include "phi/infer/generator.h"
#include "phi/models/model_loader.h"

namespace phi::cli {

void InferenceModelOptions::add_options(CLI::App* cmd) {
  cmd->add_option("--model", model, "model directory (weights + tokenizer)")->required();
  cmd->add_option("--device", device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_option("--dtype", dtype, "compute dtype: f32, f16, bf16")->capture_default_str();
  cmd->add_option("--chat-template", chat_template, "a built-in template name or a .jinja file (default: the model's)");
  cmd->add_flag("--special-tokens-in-content", special_tokens_in_content,
                "encode special-token text inside chat messages as control tokens (transformers' behaviour; "
                "by default message content is plain text, so no message can forge a turn)");
  add_kernel_options(cmd, kernels);
}

void add_kernel_options(CLI::App* cmd, KernelChoice& choice) {
  cmd->add_option("--attention", choice.attention, "attention kernels on CUDA: aten (default) or fused (env PHI_ATTENTION)")
      ->check(CLI::IsMember({"aten", "fused"}));
  cmd->add_option("--kernels", choice.elementwise,
                  "norm / activation / rotary kernels on CUDA: aten (default) or fused (env PHI_KERNELS)")
      ->check(CLI::IsMember({"aten", "fused"}));
  cmd->add_option("--flash-kernel", choice.flash_kernel,
                  "flash kernels of the fused attention: wmma (default) or mma (env PHI_FLASH_KERNEL)")
      ->check(CLI::IsMember({"wmma", "mma"}));
}

Transformer load_inference_weights(const std::string& directory, const std::string& device, const std::string& dtype,
                                   const KernelChoice& kernels) {
  kernels.apply();
  LoadOptions load;
  load.dtype = parse_dtype(dtype);
  load.device = parse_device(device);
  return load_model(directory, load);
}

InferenceModel InferenceModel::load(const InferenceModelOptions& o) {
  auto model = load_inference_weights(o.model, o.device, o.dtype, o.kernels);
  auto tokenizer = load_tokenizer(o.model);
  auto chat = ChatTemplate::for_model(o.model, model.config(), *tokenizer, o.chat_template);
  chat.set_special_tokens_in_content(o.special_tokens_in_content);
  auto end_ids = default_end_token_ids(o.model, *tokenizer);
  return InferenceModel{std::move(model), std::move(tokenizer), std::move(chat), std::move(end_ids)};
}

}  // namespace phi::cli
