// The phi-1 quality classifier: documents are represented by the mean of a phi model's final hidden
// states over their tokens (phi-1 used a pretrained code model's embeddings), and a logistic
// regression on those features, trained from labelled documents, scores how much a document is
// worth training on (docs/data.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

namespace phi {

class Transformer;
class Tokenizer;

struct FeatureOptions {
  int64_t max_tokens = 512;  // a longer document is cut to its first max_tokens tokens
  int64_t batch_size = 8;
};

/// float32 [N, hidden]: each text's mean-pooled final hidden states. `ids_out` (optional) receives
/// the token ids used.
at::Tensor mean_pooled_features(const Transformer& model, const Tokenizer& tokenizer,
                                const std::vector<std::string>& texts, const FeatureOptions& options = {},
                                std::vector<std::vector<int64_t>>* ids_out = nullptr);

struct LogisticOptions {
  double l2 = 1.0;  // penalty (lambda / 2) * |w|^2 on the weights, not the intercept (sklearn's C = 1 / l2)
  int64_t max_iterations = 100;
  double tolerance = 1e-10;  // on the largest Newton step
};

/// Binary logistic regression on standardised features, fitted exactly by Newton's method (IRLS)
/// in float64: the minimiser of sum(log loss) + l2 / 2 |w|^2, as sklearn's LogisticRegression(C =
/// 1 / l2) finds it.
class QualityClassifier {
 public:
  /// features [N, H], labels [N] (0 or 1, both present).
  static QualityClassifier train(const at::Tensor& features, const at::Tensor& labels,
                                 const LogisticOptions& options = {});
  /// P(label 1) for each row of features [N, H], float64 [N].
  at::Tensor probabilities(const at::Tensor& features) const;

  /// classifier.safetensors (mean, scale, weight, bias; float64) and classifier.json (`info`) in
  /// `directory`, written atomically.
  void save(const std::string& directory, const nlohmann::json& info) const;
  /// Reads what save wrote; `info` receives classifier.json. A missing or malformed file is an error
  /// naming it.
  static QualityClassifier load(const std::string& directory, nlohmann::json* info = nullptr);

  int64_t iterations() const { return iterations_; }
  const at::Tensor& weight() const { return weight_; }  // on standardised features
  double bias() const { return bias_; }

 private:
  at::Tensor mean_, scale_, weight_;  // float64 [H]
  double bias_ = 0;
  int64_t iterations_ = 0;
};

}  // namespace phi
