// Optimizers over named parameters: AdamW (decoupled weight decay) and SGD with momentum /
// Nesterov; parameter groups by name pattern (weight decay off for norms, biases and embeddings by
// default; per-group learning-rate scale), frozen parameters (no gradient, no state), clipping by
// global norm. States are saved and restored exactly.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

#include "phi/io/safetensors.h"
#include "phi/models/transformer.h"

namespace phi {

struct OptimizerConfig {
  std::string name = "adamw";  // adamw | sgd
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double weight_decay = 0.1;
  double momentum = 0.9;       // sgd
  bool nesterov = false;       // sgd
  double clip_grad_norm = 1.0; // 0: off
  /// Substrings of parameter names that get no weight decay.
  std::vector<std::string> no_decay = {"norm", ".bias", "embed"};
  /// Substrings of parameter names that are frozen (e.g. "embed" for SGD with a frozen embedding).
  std::vector<std::string> freeze;
  /// Per-group learning-rate multipliers: name substring -> scale (first match wins).
  std::vector<std::pair<std::string, double>> lr_scale;
  /// AdamW through ATen's fused multi-tensor kernel (one launch per parameter group) instead of the
  /// per-parameter reference update: "auto" (on for CUDA parameters), "on", "off".
  std::string fused = "auto";
};

OptimizerConfig optimizer_config_from_json(const nlohmann::json& j, const std::string& source);
nlohmann::json optimizer_config_to_json(const OptimizerConfig& config);

class Optimizer {
 public:
  /// Marks trainable parameters (requires_grad) and freezes the rest; creates no state until step.
  Optimizer(ParameterMap& parameters, OptimizerConfig config);

  /// Divides the gradients by grad_scale (a loss scale), clips (when configured) and applies one
  /// update at learning rate `lr`; returns the global gradient norm (unscaled, before clipping).
  /// Gradients are zeroed afterwards. A non-finite norm skips the update (the step count and the
  /// states stay as they were) and is returned as is.
  double step(double lr, double grad_scale = 1.0);
  int64_t steps() const { return steps_; }
  const OptimizerConfig& config() const { return config_; }

  int64_t trainable_parameters() const;
  int64_t frozen_parameters() const;
  /// Optimizer-state bytes per trainable parameter including the fp32 weight and gradient
  /// (AdamW 16: weight, grad, m, v; SGD with momentum 12: weight, grad, momentum).
  int64_t state_bytes_per_parameter() const;
  bool is_frozen(const std::string& name) const;
  /// Sharded training (zero1, fsdp): each process steps on slices of the parameters, and the global gradient
  /// norm needs the other processes' sums of squares: `reduce` maps this process's sum to the sum
  /// over every process (the same value on each). Unset: the local sum is the global one.
  void set_norm_reduction(std::function<double(double)> reduce) { reduce_norm_ = std::move(reduce); }
  /// The trainable parameters in the optimizer's order, and their element counts.
  std::vector<std::pair<std::string, int64_t>> trainable() const;
  /// The state kinds this optimizer keeps per parameter ("exp_avg", "exp_avg_sq" or "momentum").
  std::vector<std::string> state_kinds() const;
  /// One state tensor (undefined when it does not exist yet, or is not kept here).
  at::Tensor state(const std::string& param, const std::string& kind) const;

  /// State tensors by name ("<param>.exp_avg", ...) and the step count, for checkpoints.
  NamedTensors state_tensors() const;
  void load_state(const TensorStore& store, int64_t steps);
  /// The same from a lookup: find("<param>.exp_avg") returns the state tensor (undefined when
  /// absent) shaped as the parameter; `source` names where it came from in errors.
  void load_state(const std::function<at::Tensor(const std::string& key)>& find, int64_t steps,
                  const std::string& source);

 private:
  struct Slot {
    std::string name;
    at::Tensor param;
    double weight_decay = 0;
    double lr_scale = 1;
    at::Tensor exp_avg, exp_avg_sq, momentum;
    at::Tensor step_count;  // float32 scalar on the parameter's device (the fused kernel's step)
  };
  void fused_adamw(double lr, double grad_factor);
  std::vector<Slot> slots_;
  std::function<double(double)> reduce_norm_;
  std::vector<std::string> frozen_;
  int64_t frozen_count_ = 0;
  OptimizerConfig config_;
  int64_t steps_ = 0;
};

/// Learning-rate schedules: linear warmup, then cosine / linear / constant / warmup-stable-decay.
struct ScheduleConfig {
  std::string kind = "cosine";  // cosine | linear | constant | wsd
  int64_t warmup_steps = 0;
  int64_t total_steps = 1000;
  double min_lr_ratio = 0.1;    // final lr = lr * min_lr_ratio (cosine, linear, wsd)
  double decay_fraction = 0.2;  // wsd: the last fraction of steps decays linearly
};
ScheduleConfig schedule_config_from_json(const nlohmann::json& j, const std::string& source);
nlohmann::json schedule_config_to_json(const ScheduleConfig& config);
/// The learning rate at `step` (0-based) for peak `lr`.
double scheduled_lr(const ScheduleConfig& schedule, double lr, int64_t step);

}  // namespace phi
