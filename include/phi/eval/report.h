// What every evaluation writes: one JSON report (model, config hash, task, settings, git commit,
// date, metrics, timings) and a JSONL of per-item samples, both written atomically; and the cache
// of finished items that lets a killed run resume.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "phi/config/model_config.h"

namespace phi {

/// A stable hash (xxh64, hex) of the model config as phi's JSON writes it.
std::string model_config_hash(const ModelConfig& config);

/// {"task", "model": {"path", "config_hash", "model_type", "parameters"...}, "settings",
/// "git_commit", "date" (UTC, ISO 8601)}: the head of every report; callers add "metrics" and
/// "timings".
nlohmann::json report_header(const std::string& task, const std::string& model_path, const ModelConfig& config,
                             const nlohmann::json& settings);

/// An atomic write (temporary name, fsync, rename) of one JSON value per line (the JSON report goes
/// through core/json_reader.h's write_json_file_atomic).
void write_jsonl_file(const std::string& path, const std::vector<nlohmann::json>& lines);

/// Finished items of a run, so that a killed run resumes without redoing them: one JSONL file per
/// group (an MMLU subject, a chunk of problems) in `dir`, each written atomically when its group
/// is done, beside `fingerprint.json` (the task, model and settings). Opening a cache whose
/// fingerprint differs is an error (its items mean something else). An empty `dir` disables it.
class EvalCache {
 public:
  EvalCache(std::string dir, nlohmann::json fingerprint);
  bool enabled() const { return !dir_.empty(); }
  const std::string& dir() const { return dir_; }
  /// The items stored for `group`, if that group finished in an earlier run.
  std::optional<std::vector<nlohmann::json>> load(const std::string& group) const;
  void store(const std::string& group, const std::vector<nlohmann::json>& items) const;
  /// Deletes the cache in `dir` (after the final report is written); nothing when `dir` is empty.
  static void remove(const std::string& dir);

 private:
  std::string path_of(const std::string& group) const;
  std::string dir_;
};

}  // namespace phi
