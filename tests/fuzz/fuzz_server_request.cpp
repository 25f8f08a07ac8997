// Fuzz target: the server's request bodies (/v1/completions and /v1/chat/completions) through the
// same parser the HTTP handlers use. First byte picks the endpoint. Client errors are ApiErrors.
#include "fuzz_util.h"
#include "phi/infer/chat_template.h"
#include "phi/serve/request.h"

using namespace phi;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const auto tokenizer = load_tokenizer(fuzz::tokenizer_fixture());
  static const auto chat = ChatTemplate::builtin("phi3", *tokenizer);
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  RequestLimits limits;
  limits.context = 256;
  limits.max_tokens_limit = 128;
  fuzz::expect_clean([&] {
    try {
      auto request = data[0] % 2 ? parse_chat_request(body, *tokenizer, chat, limits)
                                 : parse_completion_request(body, *tokenizer, limits);
      if (request.prompt.size() > static_cast<size_t>(4 * limits.context + 4096)) std::abort();
      request.params.validate();
    } catch (const ApiError& e) {
      if (e.status < 400 || e.status >= 500 || e.message.empty()) std::abort();
    }
  });
  return 0;
}
