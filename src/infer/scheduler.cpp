#include "phi/infer/scheduler.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <spdlog/spdlog.h>

#include "infer/sequence.h"
#include "phi/core/error.h"

namespace phi {

// ---- RequestHandle ---------------------------------------------------------------------------------

void RequestHandle::push(StreamEvent event) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.push_back(std::move(event));
  }
  ready_.notify_all();
}

bool RequestHandle::next(StreamEvent& event) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (finished_ && events_.empty()) return false;
  ready_.wait(lock, [&] { return !events_.empty(); });
  event = std::move(events_.front());
  events_.pop_front();
  if (event.done) finished_ = true;
  return true;
}

GenerationOutput RequestHandle::wait() {
  StreamEvent event;
  while (next(event)) {
    if (event.done) {
      if (!event.error.empty()) throw Error(event.error);
      return event.output;
    }
  }
  throw Error("request ended without a result");
}

// ---- Scheduler -------------------------------------------------------------------------------------

struct Scheduler::Pending {
  std::vector<int64_t> prompt;
  int64_t max_new = 0;
  SamplingParams params;
  std::shared_ptr<RequestHandle> handle;
};

struct Scheduler::Slot {
  std::unique_ptr<ActiveSequence> sequence;
  std::shared_ptr<RequestHandle> handle;
  at::Tensor last_logits;
};

Scheduler::Scheduler(const Transformer& model, const Tokenizer& tokenizer, SchedulerOptions options)
    : model_(model), tokenizer_(tokenizer), options_(std::move(options)) {
  PHI_CHECK(options_.max_batch_size > 0 && options_.slot_capacity > 0, "scheduler needs slots and capacity");
  options_.slot_capacity = std::min(options_.slot_capacity, model_.config().max_position_embeddings);
  cache_ = std::make_unique<KVCache>(model_.config(), options_.max_batch_size, options_.slot_capacity,
                                     options_.slot_capacity, model_.dtype(), model_.device());
  worker_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (worker_.joinable()) worker_.join();
}

int64_t Scheduler::cache_bytes() const { return cache_->bytes(); }

std::shared_ptr<RequestHandle> Scheduler::submit(std::vector<int64_t> prompt, const SamplingParams& params) {
  params.validate();
  if (prompt.empty()) throw Error("the prompt is empty");
  const int64_t capacity = options_.slot_capacity;
  if (static_cast<int64_t>(prompt.size()) >= capacity) {
    throw Error("the prompt has " + std::to_string(prompt.size()) + " tokens; this server's context is " +
                    std::to_string(capacity) + " tokens",
                "", "shorten the prompt");
  }
  auto pending = std::make_unique<Pending>();
  pending->max_new = std::min<int64_t>(params.max_new_tokens, capacity - static_cast<int64_t>(prompt.size()));
  pending->prompt = std::move(prompt);
  pending->params = params;
  pending->handle = std::make_shared<RequestHandle>();
  auto handle = pending->handle;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(pending));
    ++load_;
  }
  wake_.notify_all();
  return handle;
}

void Scheduler::loop() {
  at::NoGradGuard no_grad;
  std::vector<Slot> slots(static_cast<size_t>(options_.max_batch_size));
  auto free_slot = [&](size_t s) {
    slots[s] = Slot{};
    --load_;
  };
  auto end_request = [&](size_t s, const std::string& reason) {
    auto& slot = slots[s];
    auto tail = slot.sequence->finish(reason);
    if (!tail.empty()) slot.handle->push({SampledToken{-1, 0.f, {}}, tail, false, {}, {}});
    StreamEvent done;
    done.token.id = -1;
    done.done = true;
    done.output = slot.sequence->output();
    slot.handle->push(std::move(done));
    free_slot(s);
  };
  while (true) {
    // Admit waiting requests into free slots.
    std::vector<std::unique_ptr<Pending>> admitted;
    std::vector<size_t> admitted_slots;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      auto any_active = [&] {
        for (const auto& s : slots) {
          if (s.sequence) return true;
        }
        return false;
      };
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || any_active(); });
      if (stopping_) break;
      for (size_t s = 0; s < slots.size() && !queue_.empty(); ++s) {
        if (slots[s].sequence) continue;
        admitted.push_back(std::move(queue_.front()));
        queue_.pop_front();
        admitted_slots.push_back(s);
      }
    }
    try {
      if (!admitted.empty()) {
        std::vector<const std::vector<int64_t>*> prompts;
        for (const auto& p : admitted) prompts.push_back(&p->prompt);
        std::vector<int64_t> lengths, slot_ids;
        auto ids = pad_token_ids(prompts, lengths);
        for (size_t k = 0; k < admitted.size(); ++k) {
          slot_ids.push_back(static_cast<int64_t>(admitted_slots[k]));
          cache_->reset_slot(slot_ids.back(), lengths[k] + admitted[k]->max_new);
        }
        auto logits = model_.forward_cached(ids, lengths, *cache_, slot_ids);
        for (size_t k = 0; k < admitted.size(); ++k) {
          auto& slot = slots[admitted_slots[k]];
          slot.handle = admitted[k]->handle;
          slot.sequence = std::make_unique<ActiveSequence>(tokenizer_, admitted[k]->prompt, admitted[k]->max_new,
                                                           admitted[k]->params, options_.end_token_ids);
          slot.last_logits = logits[k][lengths[k] - 1];
        }
      }
      // One decode step for every active slot.
      std::vector<int64_t> step_slots, step_ids;
      for (size_t s = 0; s < slots.size(); ++s) {
        auto& slot = slots[s];
        if (!slot.sequence) continue;
        if (slot.handle->cancelled()) {
          end_request(s, "cancelled");
          continue;
        }
        if (!slot.sequence->pending_finish().empty()) {
          end_request(s, slot.sequence->pending_finish());
          continue;
        }
        auto delta = slot.sequence->advance(slot.last_logits);
        slot.handle->push({slot.sequence->output().details.back(), delta, false, {}, {}});
        if (!slot.sequence->pending_finish().empty()) {
          end_request(s, slot.sequence->pending_finish());
        } else {
          step_slots.push_back(static_cast<int64_t>(s));
          step_ids.push_back(slot.sequence->last_token());
        }
      }
      if (!step_slots.empty()) {
        peak_batch_ = std::max<int64_t>(peak_batch_, static_cast<int64_t>(step_slots.size()));
        auto logits = model_.forward_cached(at::tensor(step_ids, at::kLong).unsqueeze(1),
                                            std::vector<int64_t>(step_slots.size(), 1), *cache_, step_slots);
        for (size_t k = 0; k < step_slots.size(); ++k) slots[step_slots[k]].last_logits = logits[k][0];
      }
    } catch (const std::exception& e) {
      // A failure fails every request in flight; the server keeps running.
      spdlog::error("scheduler step failed: {}", e.what());
      auto fail = [&](const std::shared_ptr<RequestHandle>& handle) {
        StreamEvent failed;
        failed.done = true;
        failed.error = e.what();
        handle->push(std::move(failed));
        --load_;
      };
      for (size_t k = 0; k < admitted.size(); ++k) {
        if (slots[admitted_slots[k]].handle != admitted[k]->handle) fail(admitted[k]->handle);  // never placed
      }
      for (auto& slot : slots) {
        if (!slot.sequence) continue;
        fail(slot.handle);
        slot = Slot{};
      }
    }
  }
  // Shutting down: end whatever is still queued or running.
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& p : queue_) {
    StreamEvent failed;
    failed.done = true;
    failed.error = "server shutting down";
    p->handle->push(std::move(failed));
  }
  for (auto& s : slots) {
    if (!s.sequence) continue;
    StreamEvent failed;
    failed.done = true;
    failed.error = "server shutting down";
    s.handle->push(std::move(failed));
  }
}

}  // namespace phi
