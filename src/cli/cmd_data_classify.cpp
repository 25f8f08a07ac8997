// phi data classify train --model DIR --labels PATHS... --output DIR [--max-tokens 512] [--l2 1]
//   [--batch-size 8] [--features-out FILE]
// phi data classify apply --classifier DIR --input PATHS... --output DIR [--threshold 0.5]
// The phi-1 quality classifier (phi/data/quality_classifier.h): features are the mean-pooled hidden
// states of any phi checkpoint the engine loads; labels are 0/1 (or true/false) in each record's
// "label", or its metadata.label (what `phi data annotate` writes). Applying it is a stage: documents
// scoring below the threshold go to removed.jsonl ("low_quality", with their score); kept ones carry
// metadata.quality_score.
#include <filesystem>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/data_stages.h"
#include "cli/inference_model.h"
#include "cli/stage_output.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/data/documents.h"
#include "phi/data/quality_classifier.h"
#include "phi/io/safetensors.h"

namespace phi::cli {

namespace {

namespace fs = std::filesystem;

InferenceModel load_feature_model(const std::string& directory, const std::string& device) {
  InferenceModelOptions options;
  options.model = directory;
  options.device = device;
  return InferenceModel::load(options);
}

// The 0/1 label of a labelled record: "label" or metadata.label; bool or a number 0 / 1.
int64_t record_label(const Document& d, const nlohmann::json& raw, const std::string& where) {
  const nlohmann::json* v = nullptr;
  if (raw.contains("label")) v = &raw["label"];
  if (v == nullptr && d.metadata.is_object() && d.metadata.contains("label")) v = &d.metadata["label"];
  if (v == nullptr) throw Error("a labelled record needs \"label\" (or metadata.label)", where);
  if (v->is_boolean()) return v->get<bool>() ? 1 : 0;
  if (v->is_number() && (v->get<double>() == 0 || v->get<double>() == 1)) return v->get<double>() == 1 ? 1 : 0;
  throw Error("label must be 0, 1, true or false, got " + v->dump(), where);
}

}  // namespace

int train_classifier(const ClassifierTrainOptions& o) {
  const auto files = document_files(o.labels);
  if (files.empty()) throw Error("no labelled JSONL files in --labels");
  std::vector<std::string> texts;
  std::vector<int64_t> labels;
  for (const auto& file : files) {
    int64_t line = 0;
    for_each_jsonl(file, [&](const nlohmann::json& raw, const std::string& where) {
      ++line;
      Document d;
      if (!raw.is_object() || !raw.contains("text") || !raw["text"].is_string()) {
        throw Error("a labelled record needs a string \"text\"", where);
      }
      d.text = raw["text"].get<std::string>();
      d.metadata = raw.value("metadata", nlohmann::json());
      labels.push_back(record_label(d, raw, where));
      texts.push_back(std::move(d.text));
      return true;
    });
  }
  auto m = load_feature_model(o.model, o.device);
  FeatureOptions fo;
  fo.max_tokens = o.max_tokens;
  fo.batch_size = o.batch_size;
  spdlog::info("classify: features of {} labelled documents from {}", texts.size(), o.model);
  std::vector<std::vector<int64_t>> ids;
  const auto features = mean_pooled_features(m.model, *m.tokenizer, texts, fo, o.features_out.empty() ? nullptr : &ids);
  const auto y = at::tensor(labels, at::kLong);
  LogisticOptions lo;
  lo.l2 = o.l2;
  const auto c = QualityClassifier::train(features, y, lo);
  const auto p = c.probabilities(features);
  const auto yd = y.to(at::kDouble);
  const double accuracy = p.ge(0.5).to(at::kDouble).eq(yd).to(at::kDouble).mean().item<double>();
  const double log_loss =
      -(yd * at::log(p.clamp_min(1e-15)) + (1 - yd) * at::log((1 - p).clamp_min(1e-15))).mean().item<double>();
  const nlohmann::json info = {{"model", fs::absolute(o.model).lexically_normal().string()},
                               {"max_tokens", o.max_tokens},
                               {"l2", o.l2},
                               {"documents", texts.size()},
                               {"positives", y.sum().item<int64_t>()},
                               {"train_accuracy", accuracy},
                               {"train_log_loss", log_loss},
                               {"labels", files}};
  c.save(o.output, info);
  if (!o.features_out.empty()) {
    save_safetensors(o.features_out, {{"features", features}, {"labels", y}});
    std::string lines;
    for (const auto& row : ids) lines += nlohmann::json(row).dump() + "\n";
    write_file_atomic(o.features_out + ".ids.jsonl", lines.data(), lines.size());
  }
  spdlog::info(
      "classify: trained on {} documents ({} positive) in {} Newton steps: accuracy {:.3f}, log loss {:.4f} -> {}",
      texts.size(), info["positives"].get<int64_t>(), c.iterations(), accuracy, log_loss, o.output);
  return 0;
}

int run_classify(const ClassifyOptions& o, const TaskSlice& slice) {
  slice.validate();
  const auto files = document_files(o.inputs);
  if (files.empty()) throw Error("no document files (.jsonl, .jsonl.gz, .jsonl.zst) in the inputs");
  nlohmann::json info;
  const auto classifier = QualityClassifier::load(o.classifier, &info);
  const nlohmann::json parameters = {{"inputs", files},
                                     {"classifier", fs::absolute(o.classifier).lexically_normal().string()},
                                     {"classifier_info", info},
                                     {"threshold", o.threshold},
                                     {"skip_bad_records", o.skip_bad_records}};
  StageOutput output("classify", o.output, parameters, files.size(), {"low_quality"});
  if (output.complete()) return 0;
  const auto model_dir = info.value("model", std::string());
  if (!fs::exists(model_dir)) {
    throw Error("the classifier's feature model is not there", model_dir,
                "classifier.json names the model it was trained on");
  }
  auto m = load_feature_model(model_dir, o.device);
  FeatureOptions fo;
  fo.max_tokens = info.value("max_tokens", fo.max_tokens);
  fo.batch_size = o.batch_size;
  output.for_each_pending_file(
      files, slice, o.skip_bad_records, "classify", [&](size_t /*file*/, std::vector<Document>& docs) {
        std::vector<std::string> texts;
        for (const auto& d : docs) texts.push_back(d.text);
        const auto scores = docs.empty()
                                ? at::zeros({0}, at::kDouble)
                                : classifier.probabilities(mean_pooled_features(m.model, *m.tokenizer, texts, fo));
        for (size_t i = 0; i < docs.size(); ++i) {
          const double score = scores[static_cast<int64_t>(i)].item<double>();
          if (score >= o.threshold) {
            if (!docs[i].metadata.is_object()) docs[i].metadata = nlohmann::json::object();
            docs[i].metadata["quality_score"] = score;
            output.keep(docs[i]);
          } else {
            output.drop(docs[i], "low_quality", {{"quality_score", score}});
          }
        }
      });
  if (!output.ready_to_finish(slice)) return 0;
  const auto stats = output.finish({{"threshold", o.threshold}});
  spdlog::info("classify: {} documents in, {} kept at threshold {}", stats["documents_in"].get<int64_t>(),
               stats["documents_out"].get<int64_t>(), o.threshold);
  return 0;
}

void add_data_classify_command(CLI::App* data, Runner& run) {
  auto* cmd =
      data->add_subcommand("classify", "The phi-1 quality classifier: train it on labelled documents, apply it");
  cmd->require_subcommand(1);
  auto t = std::make_shared<ClassifierTrainOptions>();
  auto* train = cmd->add_subcommand("train", "Fit a logistic regression on a phi model's mean-pooled hidden states");
  train->add_option("--model", t->model, "the phi checkpoint whose hidden states are the features")->required();
  train->add_option("--labels", t->labels, "JSONL with \"text\" and \"label\" (0/1) or metadata.label")->required();
  train->add_option("--output", t->output, "classifier directory")->required();
  train->add_option("--max-tokens", t->max_tokens, "tokens of each document used (its beginning)")
      ->capture_default_str();
  train->add_option("--l2", t->l2, "L2 penalty on the weights (sklearn's C = 1 / l2)")->capture_default_str();
  train->add_option("--batch-size", t->batch_size, "documents per forward")->capture_default_str();
  train->add_option("--device", t->device, "cpu or cuda")->capture_default_str();
  train->add_option("--features-out", t->features_out, "also write the features and labels (safetensors) and ids");
  train->callback([&run, t]() { run = [t]() { return train_classifier(*t); }; });

  auto a = std::make_shared<ClassifyOptions>();
  auto a_slice = std::make_shared<TaskSlice>();
  auto* apply = cmd->add_subcommand("apply", "Keep the documents the classifier scores at or above a threshold");
  apply->add_option("--classifier", a->classifier, "classifier directory (phi data classify train)")->required();
  apply->add_option("--input", a->inputs, "JSONL files or directories of them")->required();
  apply->add_option("--output", a->output, "output directory")->required();
  apply->add_option("--threshold", a->threshold, "least P(good) kept")->capture_default_str();
  apply->add_option("--batch-size", a->batch_size, "documents per forward")->capture_default_str();
  apply->add_option("--device", a->device, "cpu or cuda")->capture_default_str();
  add_skip_bad_records(apply, a->skip_bad_records);
  add_task_options(apply, *a_slice);
  apply->callback([&run, a, a_slice]() { run = [a, a_slice]() { return run_classify(*a, *a_slice); }; });
}

}  // namespace phi::cli
