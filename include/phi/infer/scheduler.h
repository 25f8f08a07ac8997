// Continuous batching for the server: requests arrive at any time, take a free KV-cache slot, are
// prefilled, and then share one decode step per iteration with every other active request. Each
// request's tokens stream back through its handle; a cancelled handle frees its slot at the next
// step.
#pragma once

#include <cstdint>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "phi/infer/generator.h"

namespace phi {

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
  int64_t max_batch_size = 8;          // KV-cache slots
  int64_t slot_capacity = 2048;        // tokens per slot (prompt + completion)
  std::vector<int64_t> end_token_ids;
};

class Scheduler {
 public:
  Scheduler(const Transformer& model, const Tokenizer& tokenizer, SchedulerOptions options);
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

 private:
  struct Pending;
  struct Slot;
  void loop();

  const Transformer& model_;
  const Tokenizer& tokenizer_;
  SchedulerOptions options_;
  std::unique_ptr<KVCache> cache_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::unique_ptr<Pending>> queue_;
  std::atomic<int64_t> load_{0};
  std::atomic<int64_t> peak_batch_{0};
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace phi
