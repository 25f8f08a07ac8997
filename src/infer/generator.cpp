#include "phi/infer/generator.h"

#include <algorithm>
#include <filesystem>
#include <memory>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include "infer/sequence.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/infer/decode_graph.h"
#include "phi/kernels/cuda_kernels.h"

namespace phi {

// ---- StopStringFilter ------------------------------------------------------------------------------

StopStringFilter::StopStringFilter(std::vector<std::string> stop_strings) : stops_(std::move(stop_strings)) {}

std::string StopStringFilter::push(const std::string& delta) {
  if (stopped_) return "";
  pending_ += delta;
  size_t cut = std::string::npos;
  for (const auto& s : stops_) cut = std::min(cut, pending_.find(s));
  if (cut != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, cut);
    pending_.clear();
    return out;
  }
  // Hold back the longest tail that is a proper prefix of a stop string.
  size_t hold = 0;
  for (const auto& s : stops_) {
    for (size_t n = std::min(s.size() - 1, pending_.size()); n > hold; --n) {
      if (pending_.compare(pending_.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
    }
  }
  // Never split a UTF-8 character: move the cut back to a character boundary.
  size_t emit = pending_.size() - hold;
  while (emit > 0 && emit < pending_.size() && (static_cast<unsigned char>(pending_[emit]) & 0xC0) == 0x80) --emit;
  std::string out = pending_.substr(0, emit);
  pending_.erase(0, emit);
  return out;
}

std::string StopStringFilter::flush() {
  std::string out = stopped_ ? "" : pending_;
  pending_.clear();
  return out;
}

// ---- end tokens ------------------------------------------------------------------------------------

std::vector<int64_t> default_end_token_ids(const std::string& model_directory, const Tokenizer& tokenizer) {
  namespace fs = std::filesystem;
  std::vector<int64_t> ids;
  auto add = [&](int64_t id) {
    if (id >= 0 && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  };
  auto add_json = [&](const nlohmann::json& v) {
    if (v.is_number_integer()) add(v.get<int64_t>());
    if (v.is_array()) {
      for (const auto& x : v) {
        if (x.is_number_integer()) add(x.get<int64_t>());
      }
    }
  };
  bool from_generation_config = false;
  for (const char* name : {"generation_config.json", "config.json"}) {
    auto path = fs::path(model_directory) / name;
    if (model_directory.empty() || !fs::exists(path)) continue;
    auto j = read_json_file(path.string());
    if (j.is_object() && j.contains("eos_token_id")) {
      add_json(j["eos_token_id"]);
      if (std::string(name) == "generation_config.json") from_generation_config = true;
    }
    if (from_generation_config) break;
  }
  if (!from_generation_config) {
    if (tokenizer.eos_id()) add(*tokenizer.eos_id());
    if (auto end = tokenizer.token_to_id("<|end|>")) add(*end);
  }
  return ids;
}

// ---- Generator -------------------------------------------------------------------------------------

Generator::Generator(const Transformer& model, const Tokenizer& tokenizer, GeneratorOptions options)
    : model_(model), tokenizer_(tokenizer), options_(std::move(options)) {
  PHI_CHECK(options_.max_batch_size > 0, "max_batch_size must be > 0");
}

std::pair<std::vector<int64_t>, int64_t> Generator::fit_to_context(const std::vector<int64_t>& prompt,
                                                                   int64_t max_new_tokens) const {
  const int64_t context = model_.config().max_position_embeddings;
  std::vector<int64_t> ids = prompt;
  if (ids.empty()) throw Error("the prompt is empty", "", "give at least one token");
  if (static_cast<int64_t>(ids.size()) >= context) {
    if (!options_.truncate_prompt_left) {
      throw Error(
          "the prompt has " + std::to_string(ids.size()) + " tokens; the model's context is " + std::to_string(context),
          "", "shorten the prompt, or ask for left truncation (--truncate)");
    }
    ids.erase(ids.begin(), ids.end() - (context - 1));
  }
  const int64_t room = context - static_cast<int64_t>(ids.size());
  return {ids, std::min(max_new_tokens, room)};
}

std::vector<GenerationOutput> Generator::generate(const std::vector<GenerationRequest>& requests,
                                                  const TokenCallback& on_token) const {
  for (const auto& r : requests) r.params.validate();
  std::vector<GenerationOutput> outputs(requests.size());
  for (size_t first = 0; first < requests.size(); first += options_.max_batch_size) {
    const size_t count = std::min<size_t>(options_.max_batch_size, requests.size() - first);
    generate_chunk(requests, first, count, outputs, on_token);
  }
  return outputs;
}

void Generator::generate_chunk(const std::vector<GenerationRequest>& requests, size_t first, size_t count,
                               std::vector<GenerationOutput>& outputs, const TokenCallback& on_token) const {
  at::NoGradGuard no_grad;
  std::vector<std::unique_ptr<ActiveSequence>> seqs;
  int64_t capacity = 1;
  for (size_t i = 0; i < count; ++i) {
    const auto& request = requests[first + i];
    auto [prompt, max_new] = fit_to_context(request.prompt, request.params.max_new_tokens);
    capacity = std::max<int64_t>(capacity, static_cast<int64_t>(prompt.size()) + max_new);
    seqs.push_back(std::make_unique<ActiveSequence>(tokenizer_, std::move(prompt), max_new, request.params,
                                                    options_.end_token_ids));
  }
  auto cache = model_.make_cache(static_cast<int64_t>(count), capacity, capacity);
  std::vector<const std::vector<int64_t>*> prompts;
  for (const auto& s : seqs) prompts.push_back(&s->prompt());
  std::vector<int64_t> prompt_lengths;
  auto ids = pad_token_ids(prompts, prompt_lengths);
  for (size_t i = 0; i < count; ++i) {
    cache.reset_slot(static_cast<int64_t>(i), prompt_lengths[i] + seqs[i]->max_new_tokens());
  }
  // Prefill every prompt (right-padded) in one forward; only each prompt's last position goes
  // through the output head (the largest matrix of a small model), as only it is sampled from.
  auto logits = model_.forward_cached(ids, prompt_lengths, cache, {}, last_positions(prompt_lengths));
  std::vector<at::Tensor> last(count);
  for (size_t i = 0; i < count; ++i) last[i] = logits[i][0];

  // Batch-1 decoding on a GPU is launch-bound: capture the step once and replay it per token.
  std::unique_ptr<DecodeGraph> graph;
  // (Only when a decode step will run: the first token comes from the prefill's logits.)
  if (count == 1 && options_.cuda_graph && model_.device().is_cuda() && cuda_kernels_compiled() &&
      seqs[0]->max_new_tokens() > 1) {
    graph = std::make_unique<DecodeGraph>(model_, cache);
  }
  auto finish = [&](size_t i, const std::string& reason) {
    auto tail = seqs[i]->finish(reason);
    if (!tail.empty() && on_token) on_token(first + i, SampledToken{-1, 0.f, {}}, tail);
    outputs[first + i] = seqs[i]->output();
  };
  while (true) {
    std::vector<int64_t> step_slots;
    std::vector<int64_t> step_ids;
    for (size_t i = 0; i < count; ++i) {
      auto& s = *seqs[i];
      if (s.finished()) continue;
      if (!s.pending_finish().empty()) {  // nothing to generate (max_new_tokens 0)
        finish(i, s.pending_finish());
        continue;
      }
      auto delta = s.advance(last[i]);
      const bool keep_going = !on_token || on_token(first + i, s.output().details.back(), delta);
      if (!keep_going) {
        finish(i, "cancelled");
      } else if (!s.pending_finish().empty()) {
        finish(i, s.pending_finish());
      } else {
        step_slots.push_back(static_cast<int64_t>(i));
        step_ids.push_back(s.last_token());
      }
    }
    if (step_slots.empty()) break;
    if (graph) {
      last[0] = graph->step(step_ids)[0];
      continue;
    }
    auto step = model_.forward_cached(at::tensor(step_ids, at::kLong).unsqueeze(1),
                                      std::vector<int64_t>(step_slots.size(), 1), cache, step_slots);
    for (size_t k = 0; k < step_slots.size(); ++k) last[step_slots[k]] = step[k][0];
  }
}

}  // namespace phi
