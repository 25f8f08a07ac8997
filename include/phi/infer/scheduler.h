// Continuous batching for the server: requests arrive at any time, take a free sequence slot and
// pages of the paged KV cache, are prefilled, and then share one decode step per iteration with
// every other active request. Each request's tokens stream back through its handle; a cancelled
// handle frees its slot and pages at the next step.
//
// Memory follows the tokens cached, not the slots: a request is admitted (first come, first
// served) when its prompt's pages fit with one page of room left for every running sequence; when
// a decode step needs more pages than are free, the most recently submitted running requests are
// preempted: their pages go back to the pool and they wait at the head of the queue, to be
// prefilled again from their prompt and the tokens generated so far (recomputation, as vLLM does).
// A preempted request keeps its sampler, so its output is the one it would have had uninterrupted.
#pragma once

#include <cstdint>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "phi/infer/decode_graph.h"
#include "phi/infer/generator.h"

namespace phi {

class ActiveSequence;

/// What a request's handle receives: a token with the text it completes, or the end.
struct StreamEvent {
  SampledToken token;  // id -1: text released at the end (held characters), or the final event
  std::string text;
  bool done = false;
  GenerationOutput output;  // set on the final event
  std::string error;        // set when the request failed
};

class RequestHandle {
 public:
  /// Blocks for the next event; false once the final event was taken.
  bool next(StreamEvent& event);
  /// Blocks until the request ends and returns its output (throws phi::Error if it failed).
  GenerationOutput wait();
  /// Asks the scheduler to stop this request (a client went away).
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

  // Scheduler side.
  void push(StreamEvent event);

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<StreamEvent> events_;
  bool finished_ = false;
  std::atomic<bool> cancelled_{false};
};

struct SchedulerOptions {
  int64_t max_batch_size = 8;          // sequences decoded together
  int64_t slot_capacity = 2048;        // tokens per request (prompt + completion)
  int64_t page_size = 16;              // tokens per KV-cache page
  int64_t cache_tokens = 0;            // tokens the KV cache holds in all (rounded up to whole
                                       // pages); 0: max_batch_size * slot_capacity
  // Decode steps through the fixed-shape paged step (Transformer::decode_step_paged), the batch
  // padded to the next power of two: captured once per size as a CUDA graph on a CUDA model
  // (PagedDecodeGraph), run as it is elsewhere. Steps whose sequences mix LongRoPE factor sets run
  // the usual cached forward.
  bool fixed_shape_decode = false;
  std::vector<int64_t> end_token_ids;
};

class Scheduler {
 public:
  Scheduler(const Transformer& model, const Tokenizer& tokenizer, SchedulerOptions options);
  /// The model requests run on (read-only: the server also scores prompts with it).
  const Transformer& model() const { return model_; }
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  /// Queues a request. Throws phi::Error (before queueing) when the prompt and max_new_tokens do
  /// not fit a slot or the model's context.
  std::shared_ptr<RequestHandle> submit(std::vector<int64_t> prompt, const SamplingParams& params);
  /// Requests decoding or waiting right now.
  int64_t load() const { return load_; }
  /// The most sequences one decode step has carried so far.
  int64_t peak_batch() const { return peak_batch_; }
  const SchedulerOptions& options() const { return options_; }
  /// Bytes of the KV cache.
  int64_t cache_bytes() const;
  /// Pages of the KV cache, and how many are free right now.
  int64_t cache_pages() const;
  int64_t free_pages() const { return free_pages_; }
  /// Requests preempted so far (pages taken back to let older requests go on).
  int64_t preemptions() const { return preemptions_; }

 private:
  struct Pending;
  struct Slot;
  struct Admission {
    std::vector<std::unique_ptr<Pending>> requests;
    std::vector<size_t> slots;  // the slot each request takes
  };
  // The worker's loop and its named steps (scheduler.cpp).
  void loop();
  bool admit(Admission& admission);
  void prefill(Admission& admission);
  std::vector<int64_t> sample_and_stream();
  void preempt(std::vector<int64_t>& step_slots);
  void decode_step(const std::vector<int64_t>& step_slots);
  void fail_in_flight(const Admission& admission, const std::string& error);
  void shut_down();
  int64_t running() const;
  void free_slot(size_t s);
  void finish(ActiveSequence& sequence, RequestHandle& handle, const std::string& reason);
  void end_request(size_t s, const std::string& reason);
  /// One decode step of `tokens` for `slots` through the fixed-shape paged step; logits [n, V].
  at::Tensor fixed_shape_step(const std::vector<int64_t>& slots, const std::vector<int64_t>& tokens);

  const Transformer& model_;
  const Tokenizer& tokenizer_;
  SchedulerOptions options_;
  std::unique_ptr<PagedKVCache> cache_;
  std::map<std::pair<int64_t, bool>, std::unique_ptr<PagedDecodeGraph>> graphs_;  // (rows, long factors)
  std::map<bool, at::Tensor> inv_freq_;                                           // eager static steps
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::unique_ptr<Pending>> queue_;
  std::vector<Slot> slots_;  // the worker's (max_batch_size of them)
  std::atomic<int64_t> load_{0};
  std::atomic<int64_t> peak_batch_{0};
  std::atomic<int64_t> preemptions_{0};
  std::atomic<int64_t> free_pages_{0};
  uint64_t arrivals_ = 0;  // under mutex_
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace phi
