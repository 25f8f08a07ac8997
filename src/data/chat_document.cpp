#include "phi/data/chat_document.h"

namespace phi {

MaskedDocument tokenize_conversation(const Tokenizer& tokenizer, const ChatTemplate& chat,
                                     const std::vector<ChatMessage>& messages) {
  MaskedDocument document;
  document.ids = chat.encode(tokenizer, messages, false);
  document.train.assign(document.ids.size(), 0);
  auto agreeing = [&](const std::vector<int64_t>& ids) {
    size_t n = 0;
    while (n < ids.size() && n < document.ids.size() && ids[n] == document.ids[n]) ++n;
    return n;
  };
  const auto first = messages.begin();
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role != "assistant") continue;
    const size_t begin = agreeing(chat.encode(tokenizer, {first, first + static_cast<long>(i)}, true));
    const size_t end = i + 1 == messages.size()
                           ? document.ids.size()
                           : agreeing(chat.encode(tokenizer, {first, first + static_cast<long>(i) + 1}, false));
    for (size_t k = begin; k < end; ++k) document.train[k] = 1;
  }
  return document;
}

}  // namespace phi
