#include "phi/eval/loglikelihood.h"

#include <algorithm>
#include <numeric>
#include <string>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "phi/core/error.h"
#include "phi/models/transformer.h"
#include "phi/tokenizer/tokenizer.h"

namespace phi {

namespace {

// Python's str.rstrip() over the ASCII whitespace prompts end in: the split lm-eval makes.
size_t rstripped_size(std::string_view text) {
  size_t end = text.size();
  while (end > 0 && (text[end - 1] == ' ' || (text[end - 1] >= '\t' && text[end - 1] <= '\r'))) --end;
  return end;
}

}  // namespace

LoglikelihoodRequest encode_request(const Tokenizer& tokenizer, std::string_view context,
                                    const std::vector<std::string>& continuations, const EncodeOptions& options) {
  PHI_CHECK(!context.empty(), "a log-likelihood request needs a non-empty context");
  const size_t end = rstripped_size(context);
  const auto ctx = context.substr(0, end);
  const auto moved = context.substr(end);
  LoglikelihoodRequest request;
  request.context = tokenizer.encode(ctx, options);
  for (const auto& continuation : continuations) {
    std::string whole(ctx);
    whole.append(moved);
    whole.append(continuation);
    const auto whole_ids = tokenizer.encode(whole, options);
    const size_t n = std::min(request.context.size(), whole_ids.size());
    request.continuations.emplace_back(whole_ids.begin() + static_cast<std::ptrdiff_t>(n), whole_ids.end());
  }
  return request;
}

EncodedPair encode_context_continuation(const Tokenizer& tokenizer, std::string_view context,
                                        std::string_view continuation, const EncodeOptions& options) {
  auto request = encode_request(tokenizer, context, {std::string(continuation)}, options);
  return {std::move(request.context), std::move(request.continuations[0])};
}

namespace {

struct Row {
  size_t request = 0;
  int64_t continuation = -1;  // -1: every continuation of the request is one token
  std::vector<int64_t> tokens;
  int64_t first_scored = 0;   // the position whose logits predict the first scored token
  int64_t n_scored = 1;       // positions scored from first_scored on
};

}  // namespace

std::vector<std::vector<ContinuationScore>> score_continuations(
    const Transformer& model, const std::vector<LoglikelihoodRequest>& requests, int64_t batch_size,
    ScoringStats* stats, const std::function<void(int64_t rows)>& on_batch) {
  PHI_CHECK(batch_size > 0, "batch size must be > 0, got ", batch_size);
  at::NoGradGuard no_grad;
  std::vector<std::vector<ContinuationScore>> scores(requests.size());
  std::vector<Row> rows;
  for (size_t r = 0; r < requests.size(); ++r) {
    const auto& q = requests[r];
    PHI_CHECK(!q.context.empty(), "request ", r, " has an empty context");
    scores[r].resize(q.continuations.size());
    if (q.continuations.empty()) continue;
    bool single = true;
    for (const auto& c : q.continuations) {
      PHI_CHECK(!c.empty(), "request ", r, " has an empty continuation");
      single = single && c.size() == 1;
    }
    if (single) {
      Row row{r, -1, q.context, static_cast<int64_t>(q.context.size()) - 1, 1};
      rows.push_back(std::move(row));
      continue;
    }
    for (size_t c = 0; c < q.continuations.size(); ++c) {
      Row row{r, static_cast<int64_t>(c), q.context, static_cast<int64_t>(q.context.size()) - 1,
              static_cast<int64_t>(q.continuations[c].size())};
      row.tokens.insert(row.tokens.end(), q.continuations[c].begin(), q.continuations[c].end() - 1);
      rows.push_back(std::move(row));
    }
  }
  if (rows.empty()) return scores;

  const int64_t max_positions = model.config().max_position_embeddings;
  int64_t longest = 0;
  for (const auto& row : rows) {
    const auto n = static_cast<int64_t>(row.tokens.size());
    if (n > max_positions) {
      throw Error("a scored sequence of " + std::to_string(n) + " tokens is longer than the model's context of " +
                  std::to_string(max_positions) + " tokens");
    }
    longest = std::max(longest, n);
  }
  // The prefix every row shares, ending before any row's first scored position.
  int64_t prefix = rows[0].first_scored;
  for (const auto& row : rows) {
    prefix = std::min(prefix, row.first_scored);
    int64_t common = 0;
    while (common < prefix && row.tokens[common] == rows[0].tokens[common]) ++common;
    prefix = common;
  }

  const int64_t B = std::min<int64_t>(batch_size, static_cast<int64_t>(rows.size()));
  auto cache = model.make_cache(B + 1, longest, longest);
  auto long_options = at::TensorOptions().dtype(at::kLong);
  if (prefix > 0) {
    std::vector<int64_t> ids(rows[0].tokens.begin(), rows[0].tokens.begin() + prefix);
    model.forward_cached(at::tensor(ids, long_options).unsqueeze(0), {prefix}, cache, {B},
                         at::empty({1, 0}, long_options));
  }
  if (stats) stats->prefix_tokens += prefix;

  std::vector<size_t> order(rows.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return rows[a].tokens.size() > rows[b].tokens.size(); });
  for (size_t start = 0; start < order.size(); start += static_cast<size_t>(B)) {
    const size_t n = std::min(order.size() - start, static_cast<size_t>(B));
    std::vector<int64_t> slots(n);
    std::iota(slots.begin(), slots.end(), 0);
    cache.copy_prefix(B, prefix, slots);
    int64_t T = 0, K = 0;
    for (size_t i = 0; i < n; ++i) {
      const auto& row = rows[order[start + i]];
      T = std::max<int64_t>(T, static_cast<int64_t>(row.tokens.size()) - prefix);
      K = std::max(K, row.n_scored);
    }
    auto ids = at::zeros({static_cast<int64_t>(n), T}, long_options);
    auto positions = at::zeros({static_cast<int64_t>(n), K}, long_options);
    auto ids_a = ids.accessor<int64_t, 2>();
    auto pos_a = positions.accessor<int64_t, 2>();
    std::vector<int64_t> new_lengths(n);
    for (size_t i = 0; i < n; ++i) {
      const auto& row = rows[order[start + i]];
      new_lengths[i] = static_cast<int64_t>(row.tokens.size()) - prefix;
      for (int64_t t = 0; t < new_lengths[i]; ++t) ids_a[i][t] = row.tokens[prefix + t];
      for (int64_t k = 0; k < K; ++k) pos_a[i][k] = row.first_scored - prefix + std::min(k, row.n_scored - 1);
      if (stats) stats->forward_tokens += new_lengths[i];
    }
    auto logits = model.forward_cached(ids, new_lengths, cache, slots, positions);
    auto logprobs = at::log_softmax(logits, -1);
    auto best = logprobs.argmax(-1).cpu();
    auto best_a = best.accessor<int64_t, 2>();
    // Only the scored tokens' log-probabilities travel to the host.
    for (size_t i = 0; i < n; ++i) {
      const auto& row = rows[order[start + i]];
      const auto& request = requests[row.request];
      auto row_lp = logprobs[static_cast<int64_t>(i)];
      if (row.continuation < 0) {
        std::vector<int64_t> ids_c;
        for (const auto& c : request.continuations) ids_c.push_back(c[0]);
        auto picked = row_lp[0].index_select(0, at::tensor(ids_c, long_options).to(row_lp.device())).cpu();
        for (size_t c = 0; c < ids_c.size(); ++c) {
          scores[row.request][c] = {picked[static_cast<int64_t>(c)].item<double>(), best_a[i][0] == ids_c[c]};
        }
      } else {
        const auto& cont = request.continuations[static_cast<size_t>(row.continuation)];
        auto target = at::tensor(cont, long_options).to(row_lp.device());
        auto picked = row_lp.narrow(0, 0, row.n_scored).gather(1, target.unsqueeze(1)).squeeze(1).to(at::kDouble).cpu();
        ContinuationScore s;
        s.logprob = picked.sum().item<double>();
        s.greedy = true;
        for (int64_t k = 0; k < row.n_scored; ++k) s.greedy = s.greedy && best_a[i][k] == cont[static_cast<size_t>(k)];
        scores[row.request][static_cast<size_t>(row.continuation)] = s;
      }
    }
    if (stats) {
      stats->rows += static_cast<int64_t>(n);
      stats->batches += 1;
    }
    if (on_batch) on_batch(static_cast<int64_t>(n));
  }
  return scores;
}

PromptScores score_prompt(const Transformer& model, const std::vector<int64_t>& ids, int64_t top_k, int64_t chunk) {
  PHI_CHECK(!ids.empty(), "an empty prompt has nothing to score");
  PHI_CHECK(top_k >= 0 && chunk > 0, "top_k must be >= 0 and chunk > 0");
  at::NoGradGuard no_grad;
  const auto n = static_cast<int64_t>(ids.size());
  PromptScores scores;
  scores.tokens.resize(ids.size());
  scores.tokens[0].id = ids[0];
  auto cache = model.make_cache(1, n, n);
  const int64_t k = std::max<int64_t>(top_k, 1);
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t len = std::min(chunk, n - begin);
    std::vector<int64_t> piece(ids.begin() + begin, ids.begin() + begin + len);
    auto logprobs = at::log_softmax(model.forward_cached(at::tensor(piece, at::kLong).unsqueeze(0), {len}, cache)[0], -1);
    // Position p predicts token p + 1 (the next token after the prompt at the last position).
    std::vector<int64_t> targets;
    for (int64_t p = begin; p < begin + len; ++p) targets.push_back(p + 1 < n ? ids[static_cast<size_t>(p + 1)] : 0);
    auto picked = logprobs.gather(1, at::tensor(targets, at::kLong).to(logprobs.device()).unsqueeze(1)).squeeze(1).cpu();
    auto best = logprobs.topk(k, -1);
    auto best_values = std::get<0>(best).cpu();
    auto best_ids = std::get<1>(best).cpu();
    auto pv = picked.accessor<float, 1>();
    auto bv = best_values.accessor<float, 2>();
    auto bi = best_ids.accessor<int64_t, 2>();
    for (int64_t i = 0; i < len; ++i) {
      const int64_t p = begin + i;
      PromptTokenScore s;
      if (p + 1 < n) {
        s.id = targets[static_cast<size_t>(i)];
        s.logprob = pv[i];
      } else {
        s.id = bi[i][0];
        s.logprob = bv[i][0];
      }
      for (int64_t j = 0; j < top_k; ++j) s.top.emplace_back(bi[i][j], bv[i][j]);
      if (p + 1 < n) {
        scores.tokens[static_cast<size_t>(p + 1)] = std::move(s);
      } else {
        scores.next = std::move(s);
      }
    }
  }
  return scores;
}

}  // namespace phi
