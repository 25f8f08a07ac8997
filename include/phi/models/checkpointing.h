// Activation checkpointing: run a function without keeping its intermediate activations, and run
// it again in the backward pass to get its gradients (per transformer block).
#pragma once

#include <functional>

#include <ATen/core/Tensor.h>

namespace phi {

/// fn(x) whose backward recomputes fn: gradients reach x and every tensor fn reads that requires a
/// gradient (parameters are accumulated into their .grad, as a .backward() call does). fn must be
/// deterministic and must not depend on state that changes before the backward pass.
at::Tensor checkpointed(std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& x);

}  // namespace phi
