// The output directory of a data-pipeline stage, shared by the stages' commands: kept documents per
// input file, removed.jsonl, stats.json, and per-file parts for resume and tasks (docs/data.md).
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

#include "cli/data_stages.h"
#include "core/file_util.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/core/progress.h"
#include "phi/core/text_io.h"
#include "phi/data/documents.h"

namespace phi::cli {

inline std::string numbered(int64_t i, const char* suffix) {
  char name[32];
  std::snprintf(name, sizeof(name), "%05lld%s", static_cast<long long>(i), suffix);
  return name;
}

inline bool wait_until(const std::function<bool()>& ready, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!ready()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return true;
}

// Removes the temporary files (NAME.tmp.PID) that a killed process left in `directory`: those whose
// process no longer runs on this machine.
inline void remove_stale_temporaries(const std::string& directory) {
  for (const auto& e : std::filesystem::directory_iterator(directory)) {
    const auto name = e.path().filename().string();
    const auto at = name.rfind(".tmp.");
    if (at == std::string::npos || !e.is_regular_file()) continue;
    const auto pid_text = name.substr(at + 5);
    if (pid_text.empty() ||
        !std::all_of(pid_text.begin(), pid_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      continue;
    }
    const auto pid = static_cast<pid_t>(std::stol(pid_text));
    if (::kill(pid, 0) != 0 && errno == ESRCH) std::filesystem::remove(e.path());
  }
}

// One stage's output, the contract at the top of cmd_data_stages.cpp. Each input file's result is complete on
// its own: NNNNN.jsonl, then .parts/NNNNN.removed.jsonl and .parts/NNNNN.json (its counts and the
// parameters' hash, written last), so a killed run or another task resumes file by file.
class StageOutput {
 public:
  /// `reasons`: the reasons stats.json counts even when nothing is dropped for them.
  StageOutput(std::string stage, std::string directory, nlohmann::json parameters, size_t files,
              const std::vector<std::string>& reasons = {})
      : stage_(std::move(stage)),
        directory_(std::move(directory)),
        parameters_(std::move(parameters)),
        files_(files),
        start_(std::chrono::steady_clock::now()) {
    std::filesystem::create_directories(std::filesystem::path(directory_) / ".parts");
    remove_stale_temporaries(directory_);
    remove_stale_temporaries((std::filesystem::path(directory_) / ".parts").string());
    for (const auto& r : reasons) reasons_[r] = 0;
    const auto text = parameters_.dump();
    hash_ = XXH64(text.data(), text.size(), 0);
  }

  /// Whether stats.json says the stage already ran with these inputs and parameters. With other
  /// ones it goes: the directory is no longer complete while the stage runs again.
  bool complete() const {
    const auto path = stats_path();
    if (!std::filesystem::exists(path)) return false;
    if (read_json_file(path).value("parameters", nlohmann::json()) == parameters_) {
      spdlog::info("{}: {} is complete for these inputs and parameters; nothing to do", stage_, directory_);
      return true;
    }
    std::filesystem::remove(path);
    return false;
  }

  /// Whether input file `index` was finished with these parameters (by this run, an earlier one or
  /// another task).
  bool file_done(size_t index) const {
    const auto path = part_path(index, ".json");
    if (!std::filesystem::exists(path) || !std::filesystem::exists(kept_path(index))) return false;
    try {
      return read_json_file(path).value("parameters_hash", uint64_t{0}) == hash_;
    } catch (const Error&) {
      return false;  // a torn part (not possible with atomic writes, but cheap to survive): redo
    }
  }
  size_t files_done() const {
    size_t n = 0;
    for (size_t f = 0; f < files_; ++f) n += file_done(f) ? 1 : 0;
    return n;
  }

  void keep(const Document& d) {
    kept_ += document_to_json(d).dump() + "\n";
    ++part_.documents_out;
    part_.bytes_out += static_cast<int64_t>(d.text.size());
    count_in(d);
  }
  /// `extra`: more fields for its line in removed.jsonl.
  void drop(const Document& d, const std::string& reason, nlohmann::json extra = nlohmann::json::object()) {
    extra["id"] = d.id;
    extra["source"] = d.source;
    extra["reason"] = reason;
    removed_ += extra.dump() + "\n";
    ++part_.reasons[reason];
    count_in(d);
  }
  /// A line of the input that is not a document, skipped (skip_bad_records): removed.jsonl gets
  /// {"where", "reason": "bad_record", "error"}.
  void bad_record(const std::string& where, const std::string& why) {
    removed_ += nlohmann::json{{"where", where}, {"reason", "bad_record"}, {"error", why}}.dump() + "\n";
    ++part_.reasons["bad_record"];
  }
  /// bad_record as the callback for_each_document takes when `skip` is set; none otherwise.
  /// The loop of a stage that works input file by input file: for each file of this task not yet
  /// finished, `work(f, docs)` gets its documents (bad records counted and skipped when
  /// `skip_bad_records`, else an error) and keeps or drops each; the file is then ended. Progress
  /// is shown in files under `label`.
  template <typename Work>
  void for_each_pending_file(const std::vector<std::string>& files, const TaskSlice& slice, bool skip_bad_records,
                             const std::string& label, Work&& work) {
    Progress progress(label, static_cast<int64_t>(files.size()), "files");
    for (size_t f = 0; f < files.size(); ++f) {
      if (slice.mine(f) && !file_done(f)) {
        std::vector<Document> docs;
        for_each_document(
            files[f], [&](Document&& d) { docs.push_back(std::move(d)); }, bad_records_if(skip_bad_records));
        work(f, docs);
        end_file(f);
      }
      progress.advance();
    }
    progress.finish();
  }

  std::function<void(const std::string&, const std::string&)> bad_records_if(bool skip) {
    if (!skip) return {};
    return [this](const std::string& where, const std::string& why) { bad_record(where, why); };
  }
  /// Another per-file output, e.g. "hits.jsonl": finish() concatenates the files' parts into
  /// DIR/name. Called before end_file.
  void part_file(size_t index, const std::string& name, const std::string& content) {
    write_file_atomic(part_path(index, ("." + name).c_str()), content.data(), content.size());
  }
  /// Input file `index` is done: its kept documents, its removed ones, then its counts.
  void end_file(size_t index) {
    write_file_atomic(kept_path(index), kept_.data(), kept_.size());
    write_file_atomic(part_path(index, ".removed.jsonl"), removed_.data(), removed_.size());
    write_json_file_atomic(part_path(index, ".json"), {{"parameters_hash", hash_},
                                                       {"documents_in", part_.documents_in},
                                                       {"documents_out", part_.documents_out},
                                                       {"bytes_in", part_.bytes_in},
                                                       {"bytes_out", part_.bytes_out},
                                                       {"removed", part_.reasons}});
    kept_.clear();
    removed_.clear();
    part_ = Part{};
  }

  /// Whether this process finishes the stage now: every file is done (the finishing task waits up
  /// to slice.wait_seconds for the others) and it is the finishing task.
  bool ready_to_finish(const TaskSlice& slice) const {
    if (!slice.finisher()) {
      spdlog::info("{}: task {} of {} finished its files; task 0 finishes the stage", stage_, slice.index, slice.tasks);
      return false;
    }
    if (wait_until([&] { return files_done() == files_; }, slice.wait_seconds)) return true;
    spdlog::warn("{}: {} of {} files are done; the rest belong to other tasks. Run again when they finish", stage_,
                 files_done(), files_);
    return false;
  }

  /// removed.jsonl (every file's, in order), then stats.json (last: the stage is complete) with the
  /// counts summed over the files and `extra` fields; the stats.
  nlohmann::json finish(const nlohmann::json& extra, const std::vector<std::string>& part_files = {}) {
    for (const auto& name : part_files) {
      std::string all;
      for (size_t f = 0; f < files_; ++f) all += read_text_file(part_path(f, ("." + name).c_str()), "stage part");
      write_file_atomic((std::filesystem::path(directory_) / name).string(), all.data(), all.size());
    }
    std::string removed;
    Part total;
    total.reasons = reasons_;
    for (size_t f = 0; f < files_; ++f) {
      removed += read_text_file(part_path(f, ".removed.jsonl"), "stage part");
      const auto p = read_json_file(part_path(f, ".json"));
      total.documents_in += p.at("documents_in").get<int64_t>();
      total.documents_out += p.at("documents_out").get<int64_t>();
      total.bytes_in += p.at("bytes_in").get<int64_t>();
      total.bytes_out += p.at("bytes_out").get<int64_t>();
      for (const auto& [reason, n] : p.at("removed").items()) total.reasons[reason] += n.get<int64_t>();
    }
    write_file_atomic((std::filesystem::path(directory_) / "removed.jsonl").string(), removed.data(), removed.size());
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    nlohmann::json stats = {
        {"stage", stage_},
        {"files", files_},
        {"documents_in", total.documents_in},
        {"documents_out", total.documents_out},
        {"bytes_in", total.bytes_in},
        {"bytes_out", total.bytes_out},
        {"removed", total.reasons},
        {"seconds", seconds},
        {"documents_per_second", static_cast<double>(total.documents_in) / std::max(seconds, 1e-9)},
        {"megabytes_per_second", static_cast<double>(total.bytes_in) / 1e6 / std::max(seconds, 1e-9)},
        {"parameters", parameters_}};
    stats.update(extra);
    write_json_file_atomic(stats_path(), stats);
    return stats;
  }

  const std::string& directory() const { return directory_; }

 private:
  struct Part {
    int64_t documents_in = 0, documents_out = 0, bytes_in = 0, bytes_out = 0;
    std::map<std::string, int64_t> reasons;
  };
  std::string stats_path() const { return (std::filesystem::path(directory_) / "stats.json").string(); }
  std::string kept_path(size_t index) const {
    return (std::filesystem::path(directory_) / numbered(static_cast<int64_t>(index), ".jsonl")).string();
  }
  std::string part_path(size_t index, const char* suffix) const {
    return (std::filesystem::path(directory_) / ".parts" / numbered(static_cast<int64_t>(index), suffix)).string();
  }
  void count_in(const Document& d) {
    ++part_.documents_in;
    part_.bytes_in += static_cast<int64_t>(d.text.size());
  }
  std::string stage_, directory_;
  nlohmann::json parameters_;
  size_t files_;
  uint64_t hash_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::string kept_, removed_;
  Part part_;
  std::map<std::string, int64_t> reasons_;
};

/// --skip-bad-records on a stage command.
inline void add_skip_bad_records(CLI::App* cmd, bool& skip) {
  cmd->add_flag("--skip-bad-records", skip,
                "skip input lines that are not documents (not JSON, no string text, invalid UTF-8), counted in "
                "removed.jsonl as bad_record, instead of stopping");
}

/// --tasks, --task-index and --wait on a stage command.
inline void add_task_options(CLI::App* cmd, TaskSlice& slice) {
  cmd->add_option("--tasks", slice.tasks, "split the input files over this many tasks (processes or machines)")
      ->capture_default_str();
  cmd->add_option("--task-index", slice.index, "which task this is, 0 to --tasks - 1")->capture_default_str();
  cmd->add_option("--wait", slice.wait_seconds,
                  "seconds task 0 waits for the other tasks' files before finishing the stage")
      ->capture_default_str();
}

}  // namespace phi::cli
