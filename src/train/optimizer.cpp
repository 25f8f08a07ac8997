#include "phi/train/optimizer.h"

#include <algorithm>

#include <cmath>
#include <map>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include "phi/core/error.h"
#include "phi/core/json_reader.h"

namespace phi {

namespace {
bool matches_any(const std::string& name, const std::vector<std::string>& patterns) {
  for (const auto& p : patterns) {
    if (name.find(p) != std::string::npos) return true;
  }
  return false;
}
}  // namespace

OptimizerConfig optimizer_config_from_json(const nlohmann::json& j, const std::string& source) {
  JsonReader r(j, source, "$.optimizer");
  OptimizerConfig c;
  c.name = r.optional<std::string>("name", c.name);
  if (c.name != "adamw" && c.name != "sgd") r.fail("name", "must be adamw or sgd, got \"" + c.name + "\"");
  c.lr = r.optional<double>("lr", c.lr);
  c.beta1 = r.optional<double>("beta1", c.beta1);
  c.beta2 = r.optional<double>("beta2", c.beta2);
  c.eps = r.optional<double>("eps", c.eps);
  c.weight_decay = r.optional<double>("weight_decay", c.weight_decay);
  c.momentum = r.optional<double>("momentum", c.momentum);
  c.nesterov = r.optional<bool>("nesterov", c.nesterov);
  c.clip_grad_norm = r.optional<double>("clip_grad_norm", c.clip_grad_norm);
  c.fused = r.optional<std::string>("fused", c.fused);
  if (c.fused != "auto" && c.fused != "on" && c.fused != "off") r.fail("fused", "must be auto, on or off");
  c.no_decay = r.optional<std::vector<std::string>>("no_decay", c.no_decay);
  c.freeze = r.optional<std::vector<std::string>>("freeze", c.freeze);
  if (r.has_value("lr_scale")) {
    const auto& scales = r.raw("lr_scale");
    if (!scales.is_object()) r.fail("lr_scale", "must be an object of name pattern -> multiplier");
    for (const auto& item : scales.items()) {
      if (!item.value().is_number()) r.fail("lr_scale." + item.key(), "must be a number");
      c.lr_scale.push_back({item.key(), item.value().get<double>()});
    }
  } else {
    r.ignore({"lr_scale"});
  }
  r.finish();
  if (!(c.lr > 0)) r.fail("lr", "must be > 0");
  if (!(c.beta1 >= 0 && c.beta1 < 1) || !(c.beta2 >= 0 && c.beta2 < 1)) r.fail("beta1", "and beta2 must be in [0, 1)");
  if (!(c.eps > 0)) r.fail("eps", "must be > 0");
  if (c.weight_decay < 0) r.fail("weight_decay", "must be >= 0");
  if (!(c.momentum >= 0 && c.momentum < 1)) r.fail("momentum", "must be in [0, 1)");
  if (c.clip_grad_norm < 0) r.fail("clip_grad_norm", "must be >= 0");
  return c;
}

nlohmann::json optimizer_config_to_json(const OptimizerConfig& c) {
  nlohmann::json scales = nlohmann::json::object();
  for (const auto& [k, v] : c.lr_scale) scales[k] = v;
  return {{"name", c.name},         {"lr", c.lr},           {"beta1", c.beta1},       {"beta2", c.beta2},
          {"eps", c.eps},           {"weight_decay", c.weight_decay}, {"momentum", c.momentum},
          {"nesterov", c.nesterov}, {"clip_grad_norm", c.clip_grad_norm}, {"no_decay", c.no_decay},
          {"freeze", c.freeze},     {"lr_scale", scales},     {"fused", c.fused}};
}

Optimizer::Optimizer(ParameterMap& parameters, OptimizerConfig config) : config_(std::move(config)) {
  for (auto& [name, param] : parameters) {
    if (matches_any(name, config_.freeze)) {
      param.requires_grad_(false);
      frozen_.push_back(name);
      frozen_count_ += param.numel();
      continue;
    }
    param.requires_grad_(true);
    Slot slot;
    slot.name = name;
    slot.param = param;
    slot.weight_decay = matches_any(name, config_.no_decay) ? 0.0 : config_.weight_decay;
    for (const auto& [pattern, scale] : config_.lr_scale) {
      if (name.find(pattern) != std::string::npos) {
        slot.lr_scale = scale;
        break;
      }
    }
    slots_.push_back(std::move(slot));
  }
  if (slots_.empty()) throw Error("every parameter is frozen; nothing to train", "", "check optimizer.freeze");
}

bool Optimizer::is_frozen(const std::string& name) const {
  return std::find(frozen_.begin(), frozen_.end(), name) != frozen_.end();
}

int64_t Optimizer::trainable_parameters() const {
  int64_t n = 0;
  for (const auto& s : slots_) n += s.param.numel();
  return n;
}
int64_t Optimizer::frozen_parameters() const { return frozen_count_; }

std::vector<std::pair<std::string, int64_t>> Optimizer::trainable() const {
  std::vector<std::pair<std::string, int64_t>> out;
  for (const auto& s : slots_) out.emplace_back(s.name, s.param.numel());
  return out;
}

std::vector<std::string> Optimizer::state_kinds() const {
  if (config_.name == "adamw") return {"exp_avg", "exp_avg_sq"};
  return config_.momentum > 0 ? std::vector<std::string>{"momentum"} : std::vector<std::string>{};
}

at::Tensor Optimizer::state(const std::string& param, const std::string& kind) const {
  for (const auto& s : slots_) {
    if (s.name != param) continue;
    if (kind == "exp_avg") return s.exp_avg;
    if (kind == "exp_avg_sq") return s.exp_avg_sq;
    if (kind == "momentum") return s.momentum;
  }
  return {};
}

int64_t Optimizer::state_bytes_per_parameter() const {
  if (config_.name == "adamw") return 16;
  return config_.momentum > 0 ? 12 : 8;
}

double Optimizer::step(double lr, double grad_scale) {
  at::NoGradGuard no_grad;
  // Global gradient norm (float64 accumulation for a reproducible sum order).
  // One read-back for all parameters (a device sync per parameter would stall a GPU step).
  std::vector<at::Tensor> squares;
  for (const auto& s : slots_) {
    if (s.param.grad().defined()) squares.push_back(s.param.grad().to(at::kDouble).pow(2).sum());
  }
  double total = squares.empty() ? 0.0 : at::stack(squares).sum().item<double>();
  if (reduce_norm_) total = reduce_norm_(total);
  const double norm = std::sqrt(total) / grad_scale;
  if (!std::isfinite(norm)) {
    // Overflow (fp16 loss scaling) or a diverged step: no update, no state change.
    for (auto& s : slots_) {
      if (s.param.grad().defined()) s.param.mutable_grad().zero_();
    }
    return norm;
  }
  ++steps_;
  const double clip = config_.clip_grad_norm > 0 && norm > config_.clip_grad_norm ? config_.clip_grad_norm / (norm + 1e-6) : 1.0;
  const double factor = clip / grad_scale;
  const bool on_cuda = !slots_.empty() && slots_.front().param.is_cuda();
  if (config_.name == "adamw" && (config_.fused == "on" || (config_.fused == "auto" && on_cuda))) {
    fused_adamw(lr, factor);
    return norm;
  }
  for (auto& s : slots_) {
    auto grad = s.param.mutable_grad();
    if (!grad.defined()) continue;
    if (factor != 1.0) grad.mul_(factor);
    const double step_lr = lr * s.lr_scale;
    if (config_.name == "adamw") {
      if (!s.exp_avg.defined()) {
        s.exp_avg = at::zeros_like(s.param);
        s.exp_avg_sq = at::zeros_like(s.param);
      }
      if (s.weight_decay > 0) s.param.mul_(1.0 - step_lr * s.weight_decay);
      s.exp_avg.mul_(config_.beta1).add_(grad, 1.0 - config_.beta1);
      s.exp_avg_sq.mul_(config_.beta2).addcmul_(grad, grad, 1.0 - config_.beta2);
      const double bias1 = 1.0 - std::pow(config_.beta1, static_cast<double>(steps_));
      const double bias2 = 1.0 - std::pow(config_.beta2, static_cast<double>(steps_));
      auto denom = (s.exp_avg_sq / bias2).sqrt_().add_(config_.eps);
      s.param.addcdiv_(s.exp_avg, denom, -step_lr / bias1);
    } else {
      if (s.weight_decay > 0) grad.add_(s.param, s.weight_decay);
      if (config_.momentum > 0) {
        if (!s.momentum.defined()) {
          s.momentum = grad.clone();
        } else {
          s.momentum.mul_(config_.momentum).add_(grad);
        }
        if (config_.nesterov) {
          s.param.add_(grad + config_.momentum * s.momentum, -step_lr);
        } else {
          s.param.add_(s.momentum, -step_lr);
        }
      } else {
        s.param.add_(grad, -step_lr);
      }
    }
    grad.zero_();
  }
  return norm;
}

void Optimizer::fused_adamw(double lr, double grad_factor) {
  // Groups of parameters sharing (weight decay, lr scale) go through one fused call each.
  std::map<std::pair<double, double>, std::vector<Slot*>> groups;
  for (auto& s : slots_) {
    if (!s.param.grad().defined()) continue;
    if (!s.exp_avg.defined()) {
      s.exp_avg = at::zeros_like(s.param);
      s.exp_avg_sq = at::zeros_like(s.param);
    }
    if (!s.step_count.defined()) s.step_count = at::zeros({}, s.param.options().dtype(at::kFloat));
    s.step_count.fill_(static_cast<double>(steps_));  // bias corrections of this step
    if (grad_factor != 1.0) s.param.mutable_grad().mul_(grad_factor);
    groups[{s.weight_decay, s.lr_scale}].push_back(&s);
  }
  for (auto& [key, members] : groups) {
    std::vector<at::Tensor> params, grads, m, v, steps;
    for (auto* s : members) {
      params.push_back(s->param);
      grads.push_back(s->param.grad());
      m.push_back(s->exp_avg);
      v.push_back(s->exp_avg_sq);
      steps.push_back(s->step_count);
    }
    at::_fused_adamw_(params, grads, m, v, {}, steps, lr * key.second, config_.beta1, config_.beta2, key.first,
                      config_.eps, /*amsgrad=*/false, /*maximize=*/false);
  }
  for (auto& s : slots_) {
    if (s.param.grad().defined()) s.param.mutable_grad().zero_();
  }
}

NamedTensors Optimizer::state_tensors() const {
  NamedTensors out;
  for (const auto& s : slots_) {
    if (s.exp_avg.defined()) out.push_back({s.name + ".exp_avg", s.exp_avg});
    if (s.exp_avg_sq.defined()) out.push_back({s.name + ".exp_avg_sq", s.exp_avg_sq});
    if (s.momentum.defined()) out.push_back({s.name + ".momentum", s.momentum});
  }
  return out;
}

void Optimizer::load_state(const TensorStore& store, int64_t steps) {
  std::string file;  // the file of the tensor looked up last: the source an error names
  load_state(
      [&](const std::string& key) {
        if (!store.contains(key)) return at::Tensor();
        file = store.file_of(key);
        return store.tensor(key);
      },
      steps, file);
}

void Optimizer::load_state(const std::function<at::Tensor(const std::string& key)>& find, int64_t steps,
                           const std::string& source) {
  steps_ = steps;
  for (auto& s : slots_) {
    auto load = [&](const std::string& key, at::Tensor& target) {
      auto t = find(key);
      if (!t.defined()) return;
      if (t.sizes() != s.param.sizes()) {
        throw Error("optimizer state \"" + key + "\" has shape " + c10::str(t.sizes()) + ", the parameter " +
                    c10::str(s.param.sizes()), source);
      }
      target = t.to(s.param.device(), s.param.scalar_type()).clone();
    };
    load(s.name + ".exp_avg", s.exp_avg);
    load(s.name + ".exp_avg_sq", s.exp_avg_sq);
    load(s.name + ".momentum", s.momentum);
  }
}

ScheduleConfig schedule_config_from_json(const nlohmann::json& j, const std::string& source) {
  JsonReader r(j, source, "$.schedule");
  ScheduleConfig c;
  c.kind = r.optional<std::string>("kind", c.kind);
  if (c.kind != "cosine" && c.kind != "linear" && c.kind != "constant" && c.kind != "wsd") {
    r.fail("kind", "must be cosine, linear, constant or wsd, got \"" + c.kind + "\"");
  }
  c.warmup_steps = r.optional<int64_t>("warmup_steps", c.warmup_steps);
  c.total_steps = r.optional<int64_t>("total_steps", c.total_steps);
  c.min_lr_ratio = r.optional<double>("min_lr_ratio", c.min_lr_ratio);
  c.decay_fraction = r.optional<double>("decay_fraction", c.decay_fraction);
  r.finish();
  if (c.warmup_steps < 0) r.fail("warmup_steps", "must be >= 0");
  if (c.total_steps <= 0) r.fail("total_steps", "must be > 0");
  if (!(c.min_lr_ratio >= 0 && c.min_lr_ratio <= 1)) r.fail("min_lr_ratio", "must be in [0, 1]");
  if (!(c.decay_fraction > 0 && c.decay_fraction <= 1)) r.fail("decay_fraction", "must be in (0, 1]");
  return c;
}

nlohmann::json schedule_config_to_json(const ScheduleConfig& c) {
  return {{"kind", c.kind}, {"warmup_steps", c.warmup_steps}, {"total_steps", c.total_steps},
          {"min_lr_ratio", c.min_lr_ratio}, {"decay_fraction", c.decay_fraction}};
}

double scheduled_lr(const ScheduleConfig& s, double lr, int64_t step) {
  if (step < s.warmup_steps) return lr * static_cast<double>(step + 1) / static_cast<double>(s.warmup_steps);
  const double min_lr = lr * s.min_lr_ratio;
  const double span = static_cast<double>(std::max<int64_t>(1, s.total_steps - s.warmup_steps));
  const double progress = std::min(1.0, static_cast<double>(step - s.warmup_steps) / span);
  if (s.kind == "constant") return lr;
  if (s.kind == "linear") return lr + (min_lr - lr) * progress;
  if (s.kind == "cosine") return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress));
  // wsd: constant, then linear decay over the last decay_fraction of the steps.
  const double decay_start = 1.0 - s.decay_fraction;
  if (progress <= decay_start) return lr;
  return lr + (min_lr - lr) * (progress - decay_start) / s.decay_fraction;
}

}  // namespace phi
