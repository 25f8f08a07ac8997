#include "phi/infer/scheduler.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <spdlog/spdlog.h>

#include "infer/sequence.h"
#include "phi/core/error.h"
#include "phi/models/rope.h"

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
  uint64_t arrival = 0;                     // submission order: later ones are preempted first
  std::unique_ptr<ActiveSequence> resumed;  // set for a preempted request: its state so far
  /// The tokens its prefill feeds: the prompt, or for a preempted request the prompt and every
  /// token sampled (the last one was not fed yet).
  const std::vector<int64_t>& tokens() const { return resumed ? resumed->history() : prompt; }
};

struct Scheduler::Slot {
  std::unique_ptr<ActiveSequence> sequence;
  std::shared_ptr<RequestHandle> handle;
  at::Tensor last_logits;
  uint64_t arrival = 0;
};

Scheduler::Scheduler(const Transformer& model, const Tokenizer& tokenizer, SchedulerOptions options)
    : model_(model), tokenizer_(tokenizer), options_(std::move(options)) {
  PHI_CHECK(
      options_.max_batch_size > 0 && options_.slot_capacity > 0 && options_.page_size > 0 && options_.cache_tokens >= 0,
      "scheduler needs sequences, a context, a page size > 0 and cache_tokens >= 0");
  options_.slot_capacity = std::min(options_.slot_capacity, model_.config().max_position_embeddings);
  const int64_t tokens =
      options_.cache_tokens > 0 ? options_.cache_tokens : options_.max_batch_size * options_.slot_capacity;
  const int64_t pages = (tokens + options_.page_size - 1) / options_.page_size;
  options_.cache_tokens = pages * options_.page_size;
  // A request must fit the cache on its own: the context is at most the whole cache.
  options_.slot_capacity = std::min(options_.slot_capacity, options_.cache_tokens);
  cache_ = std::make_unique<PagedKVCache>(model_.config(), options_.max_batch_size, pages, options_.page_size,
                                          /*planned_length=*/0, model_.dtype(), model_.device());
  free_pages_ = cache_->free_pages();
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
int64_t Scheduler::cache_pages() const { return cache_->n_pages(); }

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
    pending->arrival = arrivals_++;
    queue_.push_back(std::move(pending));
    ++load_;
  }
  wake_.notify_all();
  return handle;
}

at::Tensor Scheduler::fixed_shape_step(const std::vector<int64_t>& slots, const std::vector<int64_t>& tokens) {
  const int64_t n = static_cast<int64_t>(slots.size());
  int64_t rows = 1;
  while (rows < n) rows *= 2;
  rows = std::min(rows, options_.max_batch_size);
  const int64_t width = cache_->pages_for(options_.slot_capacity);
  const bool long_factors = cache_->long_rope(slots.front());
  const std::vector<int64_t> ones(slots.size(), 1);
  cache_->allocate(slots, ones);
  std::vector<int64_t> table_rows(slots), ids(tokens), positions;
  for (auto s : slots) positions.push_back(cache_->length(s));
  table_rows.resize(static_cast<size_t>(rows), -1);  // padding rows: the scratch page, position 0
  ids.resize(static_cast<size_t>(rows), 0);
  positions.resize(static_cast<size_t>(rows), 0);
  auto table = cache_->page_table(table_rows, width);
  at::Tensor logits;
  if (model_.device().is_cuda()) {
    auto& graph = graphs_[{rows, long_factors}];
    if (!graph) {
      spdlog::info("capturing the decode step for {} rows as a CUDA graph", rows);
      graph = std::make_unique<PagedDecodeGraph>(model_, *cache_, rows, width, long_factors);
    }
    logits = graph->step(ids, positions, table).narrow(0, 0, n).clone();
  } else {
    auto& inv_freq = inv_freq_[long_factors];
    if (!inv_freq.defined()) {
      inv_freq = rope_inverse_frequencies(model_.config(), long_factors).to(model_.device(), at::kFloat);
    }
    const auto device = model_.device();
    logits = model_
                 .decode_step_paged(at::tensor(ids, at::kLong).view({rows, 1}).to(device),
                                    at::tensor(positions, at::kLong).to(device), table.to(device), inv_freq,
                                    rope_magnitude_scale(model_.config(), long_factors), *cache_)
                 .select(1, 0)
                 .narrow(0, 0, n);
  }
  cache_->advance(slots, ones);
  return logits;
}

// ---- The worker: admit, prefill, sample and stream, preempt, decode step -----------------------------

int64_t Scheduler::running() const {
  int64_t n = 0;
  for (const auto& s : slots_) n += s.sequence ? 1 : 0;
  return n;
}

void Scheduler::free_slot(size_t s) {
  cache_->release(static_cast<int64_t>(s));
  slots_[s] = Slot{};
  free_pages_ = cache_->free_pages();  // published at once: /health may be asked the next moment
}

// The request stops counting as load before its last event reaches the client, so that a client
// that asks /health after its answer sees the server as it left it.
void Scheduler::finish(ActiveSequence& sequence, RequestHandle& handle, const std::string& reason) {
  auto tail = sequence.finish(reason);
  if (!tail.empty()) handle.push({SampledToken{-1, 0.f, {}}, tail, false, {}, {}});
  StreamEvent done;
  done.token.id = -1;
  done.done = true;
  done.output = sequence.output();
  --load_;
  handle.push(std::move(done));
}

// The slot's pages go back to the cache before the client hears that its request ended (same reason).
void Scheduler::end_request(size_t s, const std::string& reason) {
  Slot slot = std::move(slots_[s]);
  free_slot(s);
  finish(*slot.sequence, *slot.handle, reason);
}

// Waits for work; takes waiting requests (first come, first served) into free slots while their
// prompts' pages fit with a page of room for every running sequence. False when stopping.
bool Scheduler::admit(Admission& admission) {
  std::unique_lock<std::mutex> lock(mutex_);
  wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || running() > 0; });
  if (stopping_) return false;
  int64_t active = running(), free = cache_->free_pages();
  size_t s = 0;
  while (!queue_.empty()) {
    auto& next = queue_.front();
    if (next->resumed && next->handle->cancelled()) {  // preempted, then abandoned: end it here
      finish(*next->resumed, *next->handle, "cancelled");
      queue_.pop_front();
      continue;
    }
    while (s < slots_.size() && slots_[s].sequence) ++s;
    if (s == slots_.size()) break;
    const int64_t need = cache_->pages_for(static_cast<int64_t>(next->tokens().size()));
    if (need + active > free) break;
    free -= need;
    ++active;
    admission.requests.push_back(std::move(next));
    queue_.pop_front();
    admission.slots.push_back(s++);
  }
  return true;
}

// Prefills the admitted requests (a preempted one: prompt and sampled tokens) in one batch.
void Scheduler::prefill(Admission& admission) {
  if (admission.requests.empty()) return;
  std::vector<const std::vector<int64_t>*> prompts;
  for (const auto& p : admission.requests) prompts.push_back(&p->tokens());
  std::vector<int64_t> lengths, slot_ids;
  auto ids = pad_token_ids(prompts, lengths);
  for (size_t k = 0; k < admission.requests.size(); ++k) {
    slot_ids.push_back(static_cast<int64_t>(admission.slots[k]));
    // LongRoPE's factor set follows the planned length, the same after a preemption.
    const auto& request = *admission.requests[k];
    cache_->reset_slot(slot_ids.back(), static_cast<int64_t>(request.prompt.size()) + request.max_new);
  }
  auto logits = model_.forward_cached(ids, lengths, *cache_, slot_ids, last_positions(lengths));  // [n, 1, V]
  for (size_t k = 0; k < admission.requests.size(); ++k) {
    auto& pending = *admission.requests[k];
    auto& slot = slots_[admission.slots[k]];
    slot.handle = pending.handle;
    slot.arrival = pending.arrival;
    slot.sequence = pending.resumed ? std::move(pending.resumed)
                                    : std::make_unique<ActiveSequence>(tokenizer_, pending.prompt, pending.max_new,
                                                                       pending.params, options_.end_token_ids);
    slot.last_logits = logits[k][0];
  }
}

// Samples one token for every active slot and streams it; returns the slots that go on.
std::vector<int64_t> Scheduler::sample_and_stream() {
  std::vector<int64_t> step_slots;
  for (size_t s = 0; s < slots_.size(); ++s) {
    auto& slot = slots_[s];
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
    }
  }
  return step_slots;
}

// Preempts the latest requests while the step needs more pages than are free: their pages are
// freed and they wait at the head of the queue (ordered by arrival) with their state so far.
void Scheduler::preempt(std::vector<int64_t>& step_slots) {
  auto pages_wanted = [&] {
    int64_t n = 0;
    for (auto s : step_slots) n += cache_->pages_needed(s, 1);
    return n;
  };
  while (!step_slots.empty() && pages_wanted() > cache_->free_pages()) {
    auto victim = std::max_element(step_slots.begin(), step_slots.end(),
                                   [&](int64_t a, int64_t b) { return slots_[a].arrival < slots_[b].arrival; });
    auto& slot = slots_[*victim];
    auto pending = std::make_unique<Pending>();
    pending->prompt = slot.sequence->prompt();
    pending->max_new = slot.sequence->max_new_tokens();
    pending->handle = slot.handle;
    pending->arrival = slot.arrival;
    pending->resumed = std::move(slot.sequence);
    free_slot(static_cast<size_t>(*victim));
    step_slots.erase(victim);
    ++preemptions_;
    std::lock_guard<std::mutex> lock(mutex_);
    auto at = std::find_if(queue_.begin(), queue_.end(), [&](const auto& p) { return p->arrival > pending->arrival; });
    queue_.insert(at, std::move(pending));
  }
}

// Feeds the sampled tokens of `step_slots` in one batched decode step (the fixed-shape step when
// asked and every row shares LongRoPE's factor set).
void Scheduler::decode_step(const std::vector<int64_t>& step_slots) {
  if (step_slots.empty()) return;
  peak_batch_ = std::max<int64_t>(peak_batch_, static_cast<int64_t>(step_slots.size()));
  std::vector<int64_t> step_ids;
  for (auto s : step_slots) step_ids.push_back(slots_[s].sequence->last_token());
  const bool one_rope = std::all_of(step_slots.begin(), step_slots.end(), [&](int64_t s) {
    return cache_->long_rope(s) == cache_->long_rope(step_slots.front());
  });
  at::Tensor logits;
  if (options_.fixed_shape_decode && one_rope) {
    logits = fixed_shape_step(step_slots, step_ids);
  } else {
    logits = model_
                 .forward_cached(at::tensor(step_ids, at::kLong).unsqueeze(1),
                                 std::vector<int64_t>(step_slots.size(), 1), *cache_, step_slots)
                 .select(1, 0);
  }
  for (size_t k = 0; k < step_slots.size(); ++k) slots_[step_slots[k]].last_logits = logits[k];
}

// A failed step fails every request in flight (admitted ones included); the server keeps running.
void Scheduler::fail_in_flight(const Admission& admission, const std::string& error) {
  spdlog::error("scheduler step failed: {}", error);
  auto fail = [&](const std::shared_ptr<RequestHandle>& handle) {
    StreamEvent failed;
    failed.done = true;
    failed.error = error;
    handle->push(std::move(failed));
    --load_;
  };
  for (size_t k = 0; k < admission.requests.size(); ++k) {
    const auto& request = admission.requests[k];
    if (request && slots_[admission.slots[k]].handle != request->handle) fail(request->handle);  // never placed
  }
  for (size_t s = 0; s < slots_.size(); ++s) {
    if (!slots_[s].sequence) continue;
    fail(slots_[s].handle);
    free_slot(s);
  }
  for (size_t s : admission.slots) cache_->release(static_cast<int64_t>(s));
  free_pages_ = cache_->free_pages();
}

// Shutting down: end whatever is still queued or running.
void Scheduler::shut_down() {
  std::lock_guard<std::mutex> lock(mutex_);
  auto fail = [](RequestHandle& handle) {
    StreamEvent failed;
    failed.done = true;
    failed.error = "server shutting down";
    handle.push(std::move(failed));
  };
  for (auto& p : queue_) fail(*p->handle);
  for (auto& s : slots_) {
    if (s.sequence) fail(*s.handle);
  }
}

void Scheduler::loop() {
  at::NoGradGuard no_grad;
  slots_.clear();
  slots_.resize(static_cast<size_t>(options_.max_batch_size));
  while (true) {
    Admission admission;
    if (!admit(admission)) break;
    try {
      prefill(admission);
      auto step_slots = sample_and_stream();
      preempt(step_slots);
      decode_step(step_slots);
      free_pages_ = cache_->free_pages();
    } catch (const std::exception& e) {
      fail_in_flight(admission, e.what());
    }
  }
  shut_down();
}

}  // namespace phi
