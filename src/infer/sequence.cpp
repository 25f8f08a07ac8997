#include "infer/sequence.h"

#include <cstdint>
#include <algorithm>

namespace phi {

ActiveSequence::ActiveSequence(const Tokenizer& tokenizer, std::vector<int64_t> prompt, int64_t max_new_tokens,
                               const SamplingParams& params, const std::vector<int64_t>& model_end_ids)
    : prompt_(std::move(prompt)),
      history_(prompt_),
      max_new_(max_new_tokens),
      sampler_(params),
      stream_(tokenizer),
      stops_(params.stop_strings),
      end_ids_(params.stop_token_ids) {
  if (!params.ignore_eos) end_ids_.insert(end_ids_.end(), model_end_ids.begin(), model_end_ids.end());
  output_.prompt_tokens = static_cast<int64_t>(prompt_.size());
  if (max_new_ <= 0) pending_finish_ = "length";
}

std::string ActiveSequence::advance(const at::Tensor& logits) {
  const size_t generated = output_.tokens.size();
  auto token = sampler_.sample(logits, history_, generated);
  history_.push_back(token.id);
  output_.tokens.push_back(token.id);
  output_.details.push_back(token);
  const bool is_end = std::find(end_ids_.begin(), end_ids_.end(), token.id) != end_ids_.end();
  std::string delta = is_end ? "" : stops_.push(stream_.push(token.id));
  output_.text += delta;
  if (is_end || stops_.stopped()) {
    pending_finish_ = "stop";
  } else if (static_cast<int64_t>(output_.tokens.size()) >= max_new_) {
    pending_finish_ = "length";
  }
  return delta;
}

std::string ActiveSequence::finish(const std::string& reason) {
  std::string tail = stops_.push(stream_.flush());
  tail += stops_.flush();
  output_.text += tail;
  output_.finish_reason = reason;
  return tail;
}

}  // namespace phi
