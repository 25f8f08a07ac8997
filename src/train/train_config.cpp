#include "phi/train/train_config.h"

#include <algorithm>
#include <filesystem>

#include "phi/config/overrides.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"

namespace phi {

namespace {

// A section that may be absent (or null): its defaults. Unknown keys, then ranges, are errors.
template <typename Section>
Section optional_section(JsonReader& r, const char* key) {
  if (!r.has_value(key)) {
    r.ignore({key});
    return Section{};
  }
  auto child = r.child(key);
  auto section = Section::from_json(child);
  child.finish();
  section.validate(child);
  return section;
}

}  // namespace

RunSection RunSection::from_json(JsonReader& r) {
  RunSection s;
  s.dir = r.optional<std::string>("dir", s.dir);
  s.seed = static_cast<uint64_t>(r.optional<int64_t>("seed", 0));
  return s;
}

nlohmann::json RunSection::to_json() const { return {{"dir", dir}, {"seed", static_cast<int64_t>(seed)}}; }

ModelSection ModelSection::from_json(JsonReader& r) {
  ModelSection s;
  s.preset = r.optional<std::string>("preset", "");
  s.config = r.optional<std::string>("config", "");
  s.init_from = r.optional<std::string>("init_from", "");
  s.overrides = r.optional<std::vector<std::string>>("set", {});
  s.init_std = r.optional<double>("init_std", s.init_std);
  return s;
}

nlohmann::json ModelSection::to_json() const {
  nlohmann::json j = {{"init_std", init_std}, {"set", overrides}};
  if (!preset.empty()) j["preset"] = preset;
  if (!config.empty()) j["config"] = config;
  if (!init_from.empty()) j["init_from"] = init_from;
  return j;
}

void ModelSection::validate(const JsonReader& r) const {
  const int given = !preset.empty() + !config.empty() + !init_from.empty();
  if (given != 1) r.fail("preset", "exactly one of preset, config and init_from must be given");
}

namespace {

// {path, weight} entries of `list` (a recipe's data.sources, or a mixture file's "sources", whose
// relative paths are relative to the file and whose tokens / epochs are informational).
std::vector<DataSource> read_sources(const nlohmann::json& list, const std::string& source_name,
                                     const std::string& path, const std::string& mixture_dir) {
  std::vector<DataSource> out;
  for (size_t i = 0; i < list.size(); ++i) {
    JsonReader source(list[i], source_name, path + "[" + std::to_string(i) + "]");
    DataSource ds;
    ds.path = source.required<std::string>("path");
    if (!mixture_dir.empty() && std::filesystem::path(ds.path).is_relative()) {
      ds.path = (std::filesystem::path(mixture_dir) / ds.path).lexically_normal().string();
    }
    if (!mixture_dir.empty()) source.ignore({"tokens", "epochs"});
    ds.weight = source.optional<double>("weight", 1.0);
    if (!(ds.weight > 0)) source.fail("weight", "must be > 0");
    source.finish();
    out.push_back(ds);
  }
  return out;
}

}  // namespace

void load_mixture_sources(DataSection& data) {
  if (!data.sources.empty() || data.mixture.empty()) return;
  if (!std::filesystem::exists(data.mixture)) {
    throw Error("data.sources names a mixture file that does not exist", data.mixture,
                "run the data recipe that writes it first (phi data run)");
  }
  const auto mixture = read_json_file(data.mixture);
  const auto& list = mixture.is_object() ? mixture.value("sources", nlohmann::json()) : nlohmann::json();
  if (!list.is_array() || list.empty()) throw Error("a mixture file needs a non-empty \"sources\" array", data.mixture);
  data.sources =
      read_sources(list, data.mixture, "$.sources", std::filesystem::path(data.mixture).parent_path().string());
}

DataSection DataSection::from_json(JsonReader& r) {
  DataSection s;
  const auto& given = r.raw("sources");
  if (given.is_string()) {
    // A data recipe's mixture file ({"sources": [{path, weight, tokens, epochs}]}, mix stage): read
    // now when it is there, else when training starts (a recipe can be checked before its data).
    s.mixture = given.get<std::string>();
    if (s.mixture.empty()) r.fail("sources", "must name a mixture file or list {path, weight}");
    if (std::filesystem::exists(s.mixture)) load_mixture_sources(s);
  } else {
    if (!given.is_array() || given.empty()) {
      r.fail("sources", "must be a non-empty array of {path, weight} or a data recipe's mixture file");
    }
    s.sources = read_sources(given, r.source(), r.path_of("sources"), "");
  }
  s.valid = r.optional<std::string>("valid", "");
  s.seq_len = r.optional<int64_t>("seq_len", s.seq_len);
  s.pack = r.optional<bool>("pack", s.pack);
  s.document_masks = r.optional<bool>("document_masks", s.document_masks);
  s.special_tokens_in_content = r.optional<bool>("special_tokens_in_content", s.special_tokens_in_content);
  return s;
}

nlohmann::json DataSection::to_json() const {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& s : sources) list.push_back({{"path", s.path}, {"weight", s.weight}});
  return {{"sources", mixture.empty() ? list : nlohmann::json(mixture)},
          {"valid", valid},
          {"seq_len", seq_len},
          {"pack", pack},
          {"document_masks", document_masks},
          {"special_tokens_in_content", special_tokens_in_content}};
}

void DataSection::validate(const std::string& source) const {
  if (seq_len <= 0) throw Error("$.data.seq_len must be > 0", source);
}

TrainingSection TrainingSection::from_json(JsonReader& r) {
  TrainingSection s;
  s.batch_size = r.optional<int64_t>("batch_size", s.batch_size);
  s.grad_accum = r.optional<int64_t>("grad_accum", s.grad_accum);
  s.max_steps = r.optional<int64_t>("max_steps", s.max_steps);
  s.precision = r.optional<std::string>("precision", s.precision);
  s.loss_scale = r.optional<double>("loss_scale", s.loss_scale);
  s.loss_scale_window = r.optional<int64_t>("loss_scale_window", s.loss_scale_window);
  s.activation_checkpointing = r.optional<bool>("activation_checkpointing", s.activation_checkpointing);
  s.max_nonfinite_steps = r.optional<int64_t>("max_nonfinite_steps", s.max_nonfinite_steps);
  s.device = r.optional<std::string>("device", s.device);
  s.log_every = r.optional<int64_t>("log_every", s.log_every);
  s.eval_every = r.optional<int64_t>("eval_every", s.eval_every);
  s.eval_batches = r.optional<int64_t>("eval_batches", s.eval_batches);
  return s;
}

nlohmann::json TrainingSection::to_json() const {
  return {{"batch_size", batch_size},
          {"grad_accum", grad_accum},
          {"max_steps", max_steps},
          {"precision", precision},
          {"loss_scale", loss_scale},
          {"loss_scale_window", loss_scale_window},
          {"activation_checkpointing", activation_checkpointing},
          {"max_nonfinite_steps", max_nonfinite_steps},
          {"device", device},
          {"log_every", log_every},
          {"eval_every", eval_every},
          {"eval_batches", eval_batches}};
}

void TrainingSection::validate(const JsonReader& r) const {
  if (batch_size <= 0) r.fail("batch_size", "must be > 0");
  if (grad_accum <= 0) r.fail("grad_accum", "must be > 0");
  if (max_steps <= 0) r.fail("max_steps", "must be > 0");
  if (precision != "f32" && precision != "bf16" && precision != "f16") r.fail("precision", "must be f32, bf16 or f16");
  if (!(loss_scale >= 1)) r.fail("loss_scale", "must be >= 1");
  if (loss_scale_window <= 0) r.fail("loss_scale_window", "must be > 0");
  if (max_nonfinite_steps <= 0) r.fail("max_nonfinite_steps", "must be > 0");
}

CheckpointSection CheckpointSection::from_json(JsonReader& r) {
  CheckpointSection s;
  s.every = r.optional<int64_t>("every", s.every);
  s.keep = r.optional<int64_t>("keep", s.keep);
  return s;
}

nlohmann::json CheckpointSection::to_json() const { return {{"every", every}, {"keep", keep}}; }

void CheckpointSection::validate(const JsonReader& r) const {
  if (keep <= 0) r.fail("keep", "must be > 0");
}

KernelSection KernelSection::from_json(JsonReader& r) {
  KernelSection s;
  s.attention = r.optional<std::string>("attention", "");
  s.elementwise = r.optional<std::string>("elementwise", "");
  s.flash_kernel = r.optional<std::string>("flash_kernel", "");
  return s;
}

nlohmann::json KernelSection::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  if (!attention.empty()) j["attention"] = attention;
  if (!elementwise.empty()) j["elementwise"] = elementwise;
  if (!flash_kernel.empty()) j["flash_kernel"] = flash_kernel;
  return j;
}

void KernelSection::validate(const JsonReader& r) const {
  auto one_of = [&](const char* key, const std::string& value, const char* a, const char* b) {
    if (!value.empty() && value != a && value != b)
      r.fail(key, std::string("must be ") + a + " or " + b + ", got \"" + value + "\"");
  };
  one_of("attention", attention, "aten", "fused");
  one_of("elementwise", elementwise, "aten", "fused");
  one_of("flash_kernel", flash_kernel, "wmma", "mma");
}

DistributedSection DistributedSection::from_json(JsonReader& r) {
  DistributedSection s;
  s.backend = r.optional<std::string>("backend", s.backend);
  s.strategy = r.optional<std::string>("strategy", s.strategy);
  s.bucket_mb = r.optional<double>("bucket_mb", s.bucket_mb);
  s.overlap = r.optional<bool>("overlap", s.overlap);
  s.reduce_dtype = r.optional<std::string>("reduce_dtype", s.reduce_dtype);
  s.timeout_s = r.optional<double>("timeout_s", s.timeout_s);
  return s;
}

nlohmann::json DistributedSection::to_json() const {
  return {{"backend", backend}, {"strategy", strategy},         {"bucket_mb", bucket_mb},
          {"overlap", overlap}, {"reduce_dtype", reduce_dtype}, {"timeout_s", timeout_s}};
}

void DistributedSection::validate(const JsonReader& r) const {
  if (backend != "auto" && backend != "gloo" && backend != "nccl") r.fail("backend", "must be auto, gloo or nccl");
  if (strategy != "ddp" && strategy != "zero1" && strategy != "fsdp") r.fail("strategy", "must be ddp, zero1 or fsdp");
  if (!(bucket_mb > 0 && bucket_mb <= 4096)) r.fail("bucket_mb", "must be in (0, 4096]");
  if (reduce_dtype != "f32" && reduce_dtype != "bf16") r.fail("reduce_dtype", "must be f32 or bf16");
  if (!(timeout_s > 0)) r.fail("timeout_s", "must be > 0");
}

EvalTaskSection EvalTaskSection::from_json(JsonReader& r) {
  EvalTaskSection s;
  s.task = r.required<std::string>("task");
  if (s.task != "perplexity" && s.task != "mmlu") r.fail("task", "must be perplexity or mmlu");
  s.name = r.optional<std::string>("name", s.task);
  s.every = r.optional<int64_t>("every", 0);
  s.tokenizer = r.optional<std::string>("tokenizer", "");
  if (s.task == "perplexity") {
    s.input = r.required<std::string>("input");
    s.seq_len = r.optional<int64_t>("seq_len", 0);
    s.stride = r.optional<int64_t>("stride", 0);
    s.max_tokens = r.optional<int64_t>("max_tokens", 0);
  } else if (s.task == "mmlu") {
    s.data = r.required<std::string>("data");
    s.subjects = r.optional<std::vector<std::string>>("subjects", {});
    s.shots = r.optional<int64_t>("shots", s.shots);
    s.limit = r.optional<int64_t>("limit", 0);
    s.batch_size = r.optional<int64_t>("batch_size", s.batch_size);
  }
  return s;
}

nlohmann::json EvalTaskSection::to_json() const {
  nlohmann::json j = {{"task", task}, {"name", name}, {"every", every}};
  if (!tokenizer.empty()) j["tokenizer"] = tokenizer;
  if (task == "perplexity") {
    j.update({{"input", input}, {"seq_len", seq_len}, {"stride", stride}, {"max_tokens", max_tokens}});
  } else {
    j.update({{"data", data}, {"subjects", subjects}, {"shots", shots}, {"limit", limit}, {"batch_size", batch_size}});
  }
  return j;
}

void EvalTaskSection::validate(const JsonReader& r) const {
  if (every < 0) r.fail("every", "must be >= 0");
  if (name.empty() || name.find('/') != std::string::npos) r.fail("name", "must be a non-empty name without '/'");
  if (seq_len < 0 || stride < 0 || max_tokens < 0) r.fail("seq_len", "seq_len, stride and max_tokens must be >= 0");
  if (shots < 0 || limit < 0 || batch_size < 1) r.fail("shots", "shots and limit must be >= 0, batch_size >= 1");
}

TrainConfig train_config_from_json(const nlohmann::json& j, const std::string& source) {
  JsonReader r(j, source);
  TrainConfig c;
  r.ignore({"_comment"});  // recipes explain their numbers here
  c.run = optional_section<RunSection>(r, "run");
  {
    auto model = r.child("model");
    c.model = ModelSection::from_json(model);
    model.finish();
    c.model.validate(model);
  }
  {
    auto data = r.child("data");
    c.data = DataSection::from_json(data);
    data.finish();
  }
  c.training = optional_section<TrainingSection>(r, "training");
  c.checkpoint = optional_section<CheckpointSection>(r, "checkpoint");
  c.kernels = optional_section<KernelSection>(r, "kernels");
  c.distributed = optional_section<DistributedSection>(r, "distributed");
  c.optimizer = r.has_value("optimizer") ? optimizer_config_from_json(r.raw("optimizer"), source) : OptimizerConfig{};
  if (!r.has_value("optimizer")) r.ignore({"optimizer"});
  c.schedule = r.has_value("schedule") ? schedule_config_from_json(r.raw("schedule"), source) : ScheduleConfig{};
  if (!r.has_value("schedule")) r.ignore({"schedule"});
  if (r.has_value("evals")) {
    const auto& list = r.raw("evals");
    if (!list.is_array()) r.fail("evals", "must be an array of {task, every, ...}");
    for (size_t i = 0; i < list.size(); ++i) {
      JsonReader task(list[i], source, r.path_of("evals") + "[" + std::to_string(i) + "]");
      auto section = EvalTaskSection::from_json(task);
      task.finish();
      section.validate(task);
      for (const auto& other : c.evals) {
        if (other.name == section.name) task.fail("name", "another eval task is named '" + section.name + "'");
      }
      c.evals.push_back(std::move(section));
    }
  } else {
    r.ignore({"evals"});
  }
  r.finish();
  c.data.validate(source);
  return c;
}

nlohmann::json train_config_to_json(const TrainConfig& c) {
  nlohmann::json j = {{"run", c.run.to_json()},
                      {"model", c.model.to_json()},
                      {"data", c.data.to_json()},
                      {"training", c.training.to_json()},
                      {"checkpoint", c.checkpoint.to_json()},
                      {"kernels", c.kernels.to_json()},
                      {"optimizer", optimizer_config_to_json(c.optimizer)},
                      {"schedule", schedule_config_to_json(c.schedule)},
                      {"distributed", c.distributed.to_json()}};
  if (!c.evals.empty()) {
    j["evals"] = nlohmann::json::array();
    for (const auto& e : c.evals) j["evals"].push_back(e.to_json());
  }
  return j;
}

TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides) {
  auto j = read_json_file(path);
  // A section the recipe leaves out (its defaults) can still be set from the command line
  // (--set distributed.strategy=fsdp); a key that does not exist in it is still an error.
  for (const auto& assignment : overrides) {
    const auto section = assignment.substr(0, assignment.find_first_of(".="));
    static const char* kOptional[] = {"run",         "training",  "checkpoint", "kernels",
                                      "distributed", "optimizer", "schedule"};
    const bool optional = std::find(std::begin(kOptional), std::end(kOptional), section) != std::end(kOptional);
    if (optional && j.is_object() && !j.contains(section) && assignment.find('.') < assignment.find('=')) {
      j[section] = nlohmann::json::object();
    }
  }
  apply_overrides(j, overrides);
  return train_config_from_json(j, path);
}

}  // namespace phi
