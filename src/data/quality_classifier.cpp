#include "phi/data/quality_classifier.h"

#include <algorithm>
#include <filesystem>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "core/file_util.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/io/safetensors.h"
#include "phi/models/transformer.h"
#include "phi/tokenizer/tokenizer.h"

namespace phi {

at::Tensor mean_pooled_features(const Transformer& model, const Tokenizer& tokenizer,
                                const std::vector<std::string>& texts, const FeatureOptions& options,
                                std::vector<std::vector<int64_t>>* ids_out) {
  PHI_CHECK(options.max_tokens > 0 && options.batch_size > 0, "max_tokens and batch_size must be positive");
  const auto limit = std::min<int64_t>(options.max_tokens, model.config().max_position_embeddings);
  EncodeOptions encode;
  encode.allow_special = false;
  std::vector<std::vector<int64_t>> ids(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    ids[i] = tokenizer.encode(texts[i], encode);
    if (static_cast<int64_t>(ids[i].size()) > limit) ids[i].resize(static_cast<size_t>(limit));
    if (ids[i].empty()) {
      // an empty text has no tokens to average: one end-of-text token stands for it
      ids[i].push_back(tokenizer.eos_id().value_or(0));
    }
  }
  // Batches of similar lengths waste less padding: visit the texts by length.
  std::vector<size_t> order(texts.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ids[a].size() < ids[b].size(); });
  const auto device = model.parameter("embed.weight").device();
  auto features = at::zeros({static_cast<int64_t>(texts.size()), model.config().hidden_size}, at::kFloat);
  at::NoGradGuard no_grad;
  for (size_t start = 0; start < order.size(); start += static_cast<size_t>(options.batch_size)) {
    const size_t end = std::min(order.size(), start + static_cast<size_t>(options.batch_size));
    std::vector<const std::vector<int64_t>*> batch;
    for (size_t k = start; k < end; ++k) batch.push_back(&ids[order[k]]);
    std::vector<int64_t> lengths;
    auto input = pad_token_ids(batch, lengths).to(device);
    auto lengths_t = at::tensor(lengths, at::kLong).to(device);
    auto hidden = model.hidden_states(input, lengths_t).to(at::kFloat).cpu();  // padding rows are 0
    auto pooled = hidden.sum(1) / at::tensor(lengths, at::kFloat).unsqueeze(1);
    for (size_t k = start; k < end; ++k)
      features[static_cast<int64_t>(order[k])].copy_(pooled[static_cast<int64_t>(k - start)]);
  }
  if (ids_out) *ids_out = std::move(ids);
  return features;
}

QualityClassifier QualityClassifier::train(const at::Tensor& features, const at::Tensor& labels,
                                           const LogisticOptions& options) {
  PHI_CHECK(features.dim() == 2 && labels.dim() == 1 && labels.size(0) == features.size(0),
            "features [N, H] and labels [N] expected");
  const auto X0 = features.to(at::kDouble);
  const auto y = labels.to(at::kDouble);
  const int64_t n = X0.size(0), h = X0.size(1);
  const double positives = y.sum().item<double>();
  if (positives < 1 || positives > static_cast<double>(n) - 1) {
    throw Error("the labels need both classes: " + std::to_string(static_cast<int64_t>(positives)) + " of " +
                std::to_string(n) + " are positive");
  }
  QualityClassifier c;
  c.mean_ = X0.mean(0);
  c.scale_ = X0.std(0, /*unbiased=*/false).clamp_min(1e-12);
  const auto X = (X0 - c.mean_) / c.scale_;
  const auto Xb = at::cat({X, at::ones({n, 1}, X.options())}, 1);  // the last column is the intercept
  auto theta = at::zeros({h + 1}, X.options());
  auto penalty = at::full({h + 1}, options.l2, X.options());
  penalty[h] = 0.0;
  for (int64_t it = 0; it < options.max_iterations; ++it) {
    const auto p = at::sigmoid(Xb.matmul(theta));
    const auto gradient = Xb.t().matmul(p - y) + penalty * theta;
    const auto w = p * (1 - p);
    const auto hessian = Xb.t().matmul(Xb * w.unsqueeze(1)) + at::diag(penalty) + at::eye(h + 1, X.options()) * 1e-12;
    const auto step = at::linalg_solve(hessian, gradient);
    theta = theta - step;
    c.iterations_ = it + 1;
    if (step.abs().max().item<double>() < options.tolerance) break;
  }
  c.weight_ = theta.slice(0, 0, h).clone();
  c.bias_ = theta[h].item<double>();
  return c;
}

at::Tensor QualityClassifier::probabilities(const at::Tensor& features) const {
  PHI_CHECK(features.dim() == 2 && features.size(1) == weight_.size(0), "features must be [N, ", weight_.size(0),
            "], got ", features.sizes());
  const auto X = (features.to(at::kDouble) - mean_) / scale_;
  return at::sigmoid(X.matmul(weight_) + bias_);
}

void QualityClassifier::save(const std::string& directory, const nlohmann::json& info) const {
  std::filesystem::create_directories(directory);
  save_safetensors(
      (std::filesystem::path(directory) / "classifier.safetensors").string(),
      {{"mean", mean_}, {"scale", scale_}, {"weight", weight_}, {"bias", at::tensor({bias_}, at::kDouble)}});
  nlohmann::json j = info;
  j["kind"] = "logistic_regression";
  j["hidden_size"] = weight_.size(0);
  j["iterations"] = iterations_;
  write_json_file_atomic((std::filesystem::path(directory) / "classifier.json").string(), j);
}

QualityClassifier QualityClassifier::load(const std::string& directory, nlohmann::json* info) {
  const auto json_path = (std::filesystem::path(directory) / "classifier.json").string();
  const auto tensors_path = (std::filesystem::path(directory) / "classifier.safetensors").string();
  if (!std::filesystem::exists(json_path) || !std::filesystem::exists(tensors_path)) {
    throw Error("not a quality classifier (classifier.json and classifier.safetensors expected)", directory,
                "train one with phi data classify train");
  }
  const auto j = read_json_file(json_path);
  if (j.value("kind", "") != "logistic_regression") throw Error("unknown classifier kind", json_path);
  const auto file = SafetensorsFile::open(tensors_path);
  QualityClassifier c;
  for (const char* name : {"mean", "scale", "weight", "bias"}) {
    if (!file->contains(name)) throw Error(std::string("classifier tensor '") + name + "' is missing", tensors_path);
  }
  c.mean_ = file->tensor("mean").to(at::kDouble).clone();
  c.scale_ = file->tensor("scale").to(at::kDouble).clone();
  c.weight_ = file->tensor("weight").to(at::kDouble).clone();
  c.bias_ = file->tensor("bias").to(at::kDouble)[0].item<double>();
  const auto h = c.weight_.size(0);
  if (c.weight_.dim() != 1 || c.mean_.sizes() != c.weight_.sizes() || c.scale_.sizes() != c.weight_.sizes()) {
    throw Error("classifier tensors disagree on their size", tensors_path);
  }
  if (j.value("hidden_size", int64_t{-1}) != h)
    throw Error("classifier.json's hidden_size disagrees with its tensors", json_path);
  c.iterations_ = j.value("iterations", int64_t{0});
  if (info) *info = j;
  return c;
}

}  // namespace phi
