// A conversation as a training document: its token ids as the model's chat template renders it
// (message content never becomes control tokens: ChatTemplate::encode) and a loss mask that trains
// on the assistant turns only.
#pragma once

#include <cstdint>
#include <vector>

#include "phi/infer/chat_template.h"
#include "phi/tokenizer/tokenizer.h"

namespace phi {

struct MaskedDocument {
  std::vector<int64_t> ids;
  std::vector<uint8_t> train;  // 1: the token is a training target
};

/// The whole conversation rendered without a generation prompt. Each assistant turn (and the
/// tokens that close it) is trained on: from where the prompt rendered up to that turn stops
/// agreeing with the conversation, to where the conversation rendered through that turn stops
/// agreeing with it (the last turn: to the end). Common prefixes rather than lengths, because a
/// template may end a partial rendering differently (Phi-3's adds eos_token when no generation
/// prompt is asked).
MaskedDocument tokenize_conversation(const Tokenizer& tokenizer, const ChatTemplate& chat,
                                     const std::vector<ChatMessage>& messages);

}  // namespace phi
