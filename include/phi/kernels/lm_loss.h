// The language-model loss without the [N, V] float32 logits: rows of the final hidden states go
// through the output head a chunk at a time; each chunk's logits (float32) give its share of the
// loss and, in the same pass, its gradients with respect to the hidden states, the head weight and
// bias (the backward pass only scales them by the incoming gradient). Peak extra memory is one
// chunk's logits instead of the whole batch's.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace phi {

struct LmHead {
  at::Tensor weight;        // [V, H]
  at::Tensor bias;          // [V] or undefined
  double logit_divisor = 1; // muP: logits / divisor
  at::Tensor masked_ids;    // int64 ids whose logits are -inf (Phi-3-small's dummy tokens) or undefined
};

/// Mean cross-entropy of head(hidden) [N, H] against targets [N] (int64; -100 = ignored; a batch
/// with no target gives 0), differentiable with respect to hidden, weight and bias.
at::Tensor chunked_lm_loss(const at::Tensor& hidden, const LmHead& head, const at::Tensor& targets,
                           int64_t chunk_rows = 4096);

}  // namespace phi
