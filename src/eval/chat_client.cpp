#include "eval/chat_client.h"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <thread>

#ifdef PHI_WITH_CURL
#include <curl/curl.h>
#endif

#include "phi/core/error.h"

namespace phi {

ChatClient::ChatClient(ChatClientOptions options) : options_(std::move(options)) {
  if (options_.url.empty()) throw Error("no endpoint URL given (an OpenAI-compatible endpoint)");
  endpoint_ = options_.url;
  while (!endpoint_.empty() && endpoint_.back() == '/') endpoint_.pop_back();
  const std::string suffix = "/chat/completions";
  if (endpoint_.size() < suffix.size() || endpoint_.compare(endpoint_.size() - suffix.size(), suffix.size(), suffix) != 0) {
    endpoint_ += suffix;
  }
}

std::string ChatClient::complete(const nlohmann::ordered_json& messages, double temperature, int64_t max_tokens) const {
  return complete_with(messages, temperature, max_tokens, nlohmann::ordered_json::object()).content;
}

#ifndef PHI_WITH_CURL
ChatReply ChatClient::complete_with(const nlohmann::ordered_json&, double, int64_t, const nlohmann::ordered_json&) const {
  throw Error("this build has no libcurl: cannot reach " + endpoint_);
}
#else
namespace {

size_t append_body(char* data, size_t size, size_t n, void* out) {
  auto* body = static_cast<std::string*>(out);
  if (body->size() > (size_t{64} << 20)) return 0;  // a runaway reply aborts the transfer
  body->append(data, size * n);
  return size * n;
}

}  // namespace

ChatReply ChatClient::complete_with(const nlohmann::ordered_json& messages, double temperature, int64_t max_tokens,
                                    const nlohmann::ordered_json& extra) const {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  nlohmann::ordered_json request{{"model", options_.model}, {"messages", messages}, {"n", 1},
                                 {"temperature", temperature}, {"max_tokens", max_tokens}};
  for (const auto& [key, value] : extra.items()) request[key] = value;
  const std::string payload = request.dump();
  std::string last_error;
  double wait = options_.backoff_seconds;
  for (int attempt = 0; attempt <= options_.max_retries; ++attempt) {
    if (attempt > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(wait));
      wait = std::min(wait * 2, 60.0);
    }
    CURL* curl = curl_easy_init();
    if (curl == nullptr) throw Error("cannot start a libcurl handle");
    std::string body;
    struct curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    if (!options_.api_key.empty()) headers = curl_slist_append(headers, ("Authorization: Bearer " + options_.api_key).c_str());
    curl_easy_setopt(curl, CURLOPT_URL, endpoint_.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(payload.size()));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, append_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout_seconds * 1000));
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    const CURLcode code = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    if (code != CURLE_OK) {
      last_error = std::string("cannot reach ") + endpoint_ + ": " + curl_easy_strerror(code);
      continue;
    }
    if (status == 429 || status >= 500) {
      last_error = endpoint_ + " answered HTTP " + std::to_string(status) + ": " + body.substr(0, 500);
      continue;
    }
    if (status != 200) {
      throw Error(endpoint_ + " answered HTTP " + std::to_string(status) + ": " + body.substr(0, 500));
    }
    try {
      const auto reply = nlohmann::json::parse(body);
      const auto& content = reply.at("choices").at(0).at("message").at("content");
      ChatReply out;
      out.content = content.is_null() ? std::string() : content.get<std::string>();
      out.usage = reply.value("usage", nlohmann::json());
      out.tries = attempt + 1;
      return out;
    } catch (const nlohmann::json::exception& e) {
      last_error = endpoint_ + " answered with an unexpected body (" + e.what() + "): " + body.substr(0, 300);
    }
  }
  throw Error("the endpoint failed after " + std::to_string(options_.max_retries + 1) + " tries: " + last_error);
}
#endif

}  // namespace phi
