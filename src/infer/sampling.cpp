#include "phi/infer/sampling.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "phi/core/error.h"
#include "phi/core/json_reader.h"

namespace phi {

void SamplingParams::validate() const {
  auto bad = [](const std::string& field, const std::string& why) {
    throw Error("invalid sampling parameter " + field + ": " + why);
  };
  if (!(temperature >= 0) || !std::isfinite(temperature)) bad("temperature", "must be >= 0");
  if (top_k < 0) bad("top_k", "must be >= 0");
  if (!(top_p > 0 && top_p <= 1)) bad("top_p", "must be in (0, 1]");
  if (!(min_p >= 0 && min_p <= 1)) bad("min_p", "must be in [0, 1]");
  if (!(repetition_penalty > 0) || !std::isfinite(repetition_penalty)) bad("repetition_penalty", "must be finite and > 0");
  if (!(std::fabs(presence_penalty) <= 2)) bad("presence_penalty", "must be in [-2, 2]");
  if (!(std::fabs(frequency_penalty) <= 2)) bad("frequency_penalty", "must be in [-2, 2]");
  if (max_new_tokens < 0) bad("max_new_tokens", "must be >= 0");
  if (top_logprobs < 0 || top_logprobs > 20) bad("top_logprobs", "must be in [0, 20]");
  for (const auto& s : stop_strings) {
    if (s.empty()) bad("stop", "stop strings must not be empty");
  }
}

SamplingParams sampling_params_from_json(const nlohmann::json& j, const std::string& source) {
  JsonReader r(j, source);
  SamplingParams p;
  p.temperature = r.optional<double>("temperature", p.temperature);
  p.top_k = r.optional<int64_t>("top_k", p.top_k);
  p.top_p = r.optional<double>("top_p", p.top_p);
  p.min_p = r.optional<double>("min_p", p.min_p);
  p.repetition_penalty = r.optional<double>("repetition_penalty", p.repetition_penalty);
  p.presence_penalty = r.optional<double>("presence_penalty", p.presence_penalty);
  p.frequency_penalty = r.optional<double>("frequency_penalty", p.frequency_penalty);
  p.seed = static_cast<uint64_t>(r.optional<int64_t>("seed", 0));
  p.max_new_tokens = r.optional<int64_t>("max_new_tokens", p.max_new_tokens);
  p.stop_token_ids = r.optional<std::vector<int64_t>>("stop_token_ids", {});
  if (r.has_value("stop")) {
    const auto& stop = r.raw("stop");
    if (stop.is_string()) {
      p.stop_strings.push_back(stop.get<std::string>());
    } else if (stop.is_array()) {
      for (const auto& s : stop) {
        if (!s.is_string()) r.fail("stop", "must be a string or an array of strings");
        p.stop_strings.push_back(s.get<std::string>());
      }
    } else {
      r.fail("stop", "must be a string or an array of strings");
    }
  } else {
    r.ignore({"stop"});
  }
  p.ignore_eos = r.optional<bool>("ignore_eos", false);
  p.top_logprobs = r.optional<int64_t>("top_logprobs", 0);
  r.finish();
  p.validate();
  return p;
}

Sampler::Sampler(SamplingParams params) : params_(std::move(params)), rng_(params_.seed) {}

SampledToken Sampler::sample(const at::Tensor& logits_in, const std::vector<int64_t>& history, size_t generated) {
  auto logits = logits_in.to(at::kCPU, at::kFloat).contiguous().clone();
  const int64_t V = logits.size(0);
  float* x = logits.data_ptr<float>();
  // Log-probabilities reported are those of the model itself (before penalties and filters).
  auto logprobs = at::log_softmax(logits, 0);
  const float* lp = logprobs.data_ptr<float>();

  if (params_.repetition_penalty != 1.0) {
    std::vector<bool> seen(static_cast<size_t>(V), false);
    for (auto id : history) {
      if (id < 0 || id >= V || seen[id]) continue;
      seen[id] = true;
      x[id] = x[id] > 0 ? static_cast<float>(x[id] / params_.repetition_penalty)
                        : static_cast<float>(x[id] * params_.repetition_penalty);
    }
  }
  if (params_.presence_penalty != 0.0 || params_.frequency_penalty != 0.0) {
    std::unordered_map<int64_t, int64_t> counts;
    for (size_t i = history.size() - std::min(generated, history.size()); i < history.size(); ++i) ++counts[history[i]];
    for (const auto& [id, count] : counts) {
      if (id < 0 || id >= V) continue;
      x[id] -= static_cast<float>(params_.presence_penalty + params_.frequency_penalty * static_cast<double>(count));
    }
  }

  int64_t chosen = 0;
  if (params_.greedy()) {
    chosen = std::max_element(x, x + V) - x;
  } else {
    // Candidates sorted by logit, filtered by top-k, then top-p and min-p on the tempered probabilities.
    std::vector<int64_t> order(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; ++i) order[i] = i;
    int64_t keep = params_.top_k > 0 ? std::min<int64_t>(params_.top_k, V) : V;
    auto by_logit = [&](int64_t a, int64_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
    if (keep < V) {
      std::partial_sort(order.begin(), order.begin() + keep, order.end(), by_logit);
      order.resize(static_cast<size_t>(keep));
    } else {
      std::sort(order.begin(), order.end(), by_logit);
    }
    const double t = params_.temperature;
    const double max_logit = x[order[0]];
    std::vector<double> probs(order.size());
    double total = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      probs[i] = std::exp((x[order[i]] - max_logit) / t);
      total += probs[i];
    }
    for (auto& p : probs) p /= total;
    size_t n = probs.size();
    if (params_.top_p < 1.0) {
      double cumulative = 0;
      for (size_t i = 0; i < probs.size(); ++i) {
        cumulative += probs[i];
        if (cumulative >= params_.top_p) {
          n = i + 1;
          break;
        }
      }
    }
    if (params_.min_p > 0.0) {
      const double threshold = params_.min_p * probs[0];
      size_t m = 1;
      while (m < n && probs[m] >= threshold) ++m;
      n = m;
    }
    double mass = 0;
    for (size_t i = 0; i < n; ++i) mass += probs[i];
    std::uniform_real_distribution<double> uniform(0.0, mass);
    double u = uniform(rng_);
    size_t pick = n - 1;
    for (size_t i = 0; i < n; ++i) {
      u -= probs[i];
      if (u <= 0) {
        pick = i;
        break;
      }
    }
    chosen = order[pick];
  }

  SampledToken out;
  out.id = chosen;
  out.logprob = lp[chosen];
  if (params_.top_logprobs > 0) {
    auto top = at::topk(logprobs, std::min<int64_t>(params_.top_logprobs, V));
    auto values = std::get<0>(top);
    auto indices = std::get<1>(top);
    for (int64_t i = 0; i < values.size(0); ++i) {
      out.top.push_back({indices[i].item<int64_t>(), values[i].item<float>()});
    }
  }
  return out;
}

}  // namespace phi
