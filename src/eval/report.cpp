#include "phi/eval/report.h"

#include <cctype>
#include <cstdio>
#include <ctime>
#include <filesystem>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core/file_util.h"
#include "phi/core/build_info.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/core/text_io.h"

namespace phi {

std::string model_config_hash(const ModelConfig& config) {
  const auto text = model_config_to_json(config).dump();
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(XXH64(text.data(), text.size(), 0)));
  return hex;
}

namespace {

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

}  // namespace

nlohmann::json report_header(const std::string& task, const std::string& model_path, const ModelConfig& config,
                             const nlohmann::json& settings) {
  return {{"task", task},
          {"model", {{"path", model_path}, {"config_hash", model_config_hash(config)}, {"name", config.name}, {"family", config.family}}},
          {"settings", settings},
          {"git_commit", git_commit()},
          {"date", utc_now()}};
}

void write_jsonl_file(const std::string& path, const std::vector<nlohmann::json>& lines) {
  AtomicFileWriter out(path);
  for (const auto& line : lines) {
    const auto text = line.dump() + "\n";
    out.append(text.data(), text.size());
  }
  out.commit();
}

EvalCache::EvalCache(std::string dir, nlohmann::json fingerprint) : dir_(std::move(dir)) {
  if (dir_.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) throw Error("cannot create the eval cache directory: " + ec.message(), dir_);
  const auto path = dir_ + "/fingerprint.json";
  if (std::filesystem::exists(path)) {
    nlohmann::json stored;
    try {
      stored = nlohmann::json::parse(read_text_file(path, "eval cache fingerprint"));
    } catch (const nlohmann::json::exception& e) {
      throw Error(std::string("the eval cache's fingerprint is not JSON: ") + e.what(), path,
                  "remove the cache directory to start over");
    }
    if (stored != fingerprint) {
      throw Error("the eval cache was made by a run with other settings or another model", path,
                  "remove " + dir_ + " (or pass another --cache) to start over; stored: " + stored.dump() +
                      "; this run: " + fingerprint.dump());
    }
  } else {
    write_json_file_atomic(path, fingerprint);
  }
}

std::string EvalCache::path_of(const std::string& group) const {
  std::string name;
  for (char c : group) name += (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-') ? c : '_';
  return dir_ + "/" + name + ".jsonl";
}

std::optional<std::vector<nlohmann::json>> EvalCache::load(const std::string& group) const {
  if (!enabled()) return std::nullopt;
  const auto path = path_of(group);
  if (!std::filesystem::exists(path)) return std::nullopt;
  std::vector<nlohmann::json> items;
  for_each_jsonl(path, [&](const nlohmann::json& value, const std::string&) {
    items.push_back(value);
    return true;
  });
  return items;
}

void EvalCache::store(const std::string& group, const std::vector<nlohmann::json>& items) const {
  if (enabled()) write_jsonl_file(path_of(group), items);
}

void EvalCache::remove(const std::string& dir) {
  if (dir.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace phi
