// Shared by the fuzz targets: scratch files, a small tokenizer fixture, and the rule every target
// enforces: bad input may only end in a phi::Error (or the server's ApiError); any other exception
// (a raw library message, std::bad_alloc) is a finding and aborts, as do crashes and sanitizer
// reports.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "phi/core/error.h"
#include "phi/tokenizer/tokenizer.h"
#include "tokenizer/bpe.h"

namespace phi::fuzz {

// Warnings about unused config keys and the like would drown the fuzzer's output.
inline const bool kQuiet = (spdlog::set_level(spdlog::level::off), true);

/// A scratch directory of this process (tmpfs when there is one), created once.
inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    const char* base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    auto d = std::filesystem::path(base) / ("phi-fuzz-" + std::to_string(getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline std::string write_file(const std::string& name, std::string_view bytes) {
  const auto path = scratch() / name;
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path.string();
}

/// Runs `body`; phi::Error is the expected outcome of bad input, anything else aborts.
template <typename Body>
void expect_clean(Body&& body) {
  try {
    body();
  } catch (const Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FINDING: an exception that is not a phi::Error escaped: %s\n", e.what());
    std::abort();
  }
}

/// A small byte-level BPE tokenizer directory (256 byte tokens, a few merges, the chat tokens of
/// Phi-3 as special added tokens), written once.
inline std::string tokenizer_fixture() {
  static const std::string dir = [] {
    nlohmann::json vocab = nlohmann::json::object();
    int64_t id = 0;
    for (int b = 0; b < 256; ++b) vocab[gpt2_bytes_to_unicode(std::string(1, static_cast<char>(b)))] = id++;
    const char* merges[][2] = {{" ", "t"}, {"h", "e"}, {" t", "he"}, {"i", "n"}, {"e", "r"}};
    std::string merges_text = "#version: 0.2\n";
    for (const auto& m : merges) {
      vocab[gpt2_bytes_to_unicode(std::string(m[0]) + m[1])] = id++;
      merges_text += gpt2_bytes_to_unicode(m[0]) + " " + gpt2_bytes_to_unicode(m[1]) + "\n";
    }
    nlohmann::json added = nlohmann::json::object();
    for (const char* t : {"<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"}) added[t] = id++;
    write_file("tokenizer/vocab.json", vocab.dump());
    write_file("tokenizer/merges.txt", merges_text);
    write_file("tokenizer/added_tokens.json", added.dump());
    return (scratch() / "tokenizer").string();
  }();
  return dir;
}

}  // namespace phi::fuzz
