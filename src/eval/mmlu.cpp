#include "phi/eval/mmlu.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "core/csv.h"
#include "phi/core/error.h"
#include "phi/core/progress.h"
#include "phi/eval/loglikelihood.h"
#include "phi/eval/report.h"
#include "phi/models/transformer.h"
#include "phi/tokenizer/tokenizer.h"

namespace phi {

const std::vector<std::pair<std::string, std::string>>& mmlu_subjects() {
  static const std::vector<std::pair<std::string, std::string>> subjects = {
      {"abstract_algebra", "stem"}, {"anatomy", "stem"}, {"astronomy", "stem"}, {"business_ethics", "other"},
      {"clinical_knowledge", "other"}, {"college_biology", "stem"}, {"college_chemistry", "stem"},
      {"college_computer_science", "stem"}, {"college_mathematics", "stem"}, {"college_medicine", "other"},
      {"college_physics", "stem"}, {"computer_security", "stem"}, {"conceptual_physics", "stem"},
      {"econometrics", "social_sciences"}, {"electrical_engineering", "stem"}, {"elementary_mathematics", "stem"},
      {"formal_logic", "humanities"}, {"global_facts", "other"}, {"high_school_biology", "stem"},
      {"high_school_chemistry", "stem"}, {"high_school_computer_science", "stem"},
      {"high_school_european_history", "humanities"}, {"high_school_geography", "social_sciences"},
      {"high_school_government_and_politics", "social_sciences"}, {"high_school_macroeconomics", "social_sciences"},
      {"high_school_mathematics", "stem"}, {"high_school_microeconomics", "social_sciences"},
      {"high_school_physics", "stem"}, {"high_school_psychology", "social_sciences"}, {"high_school_statistics", "stem"},
      {"high_school_us_history", "humanities"}, {"high_school_world_history", "humanities"}, {"human_aging", "other"},
      {"human_sexuality", "social_sciences"}, {"international_law", "humanities"}, {"jurisprudence", "humanities"},
      {"logical_fallacies", "humanities"}, {"machine_learning", "stem"}, {"management", "other"},
      {"marketing", "other"}, {"medical_genetics", "other"}, {"miscellaneous", "other"},
      {"moral_disputes", "humanities"}, {"moral_scenarios", "humanities"}, {"nutrition", "other"},
      {"philosophy", "humanities"}, {"prehistory", "humanities"}, {"professional_accounting", "other"},
      {"professional_law", "humanities"}, {"professional_medicine", "other"},
      {"professional_psychology", "social_sciences"}, {"public_relations", "social_sciences"},
      {"security_studies", "social_sciences"}, {"sociology", "social_sciences"},
      {"us_foreign_policy", "social_sciences"}, {"virology", "other"}, {"world_religions", "humanities"}};
  return subjects;
}

namespace {

// Python's str.isspace() code points, as UTF-8 byte lengths at the start/end of `s`.
size_t whitespace_at(const std::string& s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f)) return 1;
  if (c == 0xc2 && i + 1 < s.size() && (s[i + 1] == '\x85' || s[i + 1] == '\xa0')) return 2;
  if (i + 2 < s.size()) {
    const auto b1 = static_cast<unsigned char>(s[i + 1]), b2 = static_cast<unsigned char>(s[i + 2]);
    const uint32_t cp = ((c & 0x0fu) << 12) | ((b1 & 0x3fu) << 6) | (b2 & 0x3fu);
    if ((c & 0xf0) == 0xe0 && (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
                               cp == 0x202f || cp == 0x205f || cp == 0x3000)) {
      return 3;
    }
  }
  return 0;
}

// Python's str.strip().
std::string python_strip(const std::string& s) {
  size_t begin = 0;
  while (begin < s.size()) {
    const size_t n = whitespace_at(s, begin);
    if (n == 0) break;
    begin += n;
  }
  size_t end = s.size();
  while (end > begin) {
    size_t found = 0;
    for (size_t width = 1; width <= 3 && width <= end - begin; ++width) {
      if (whitespace_at(s, end - width) == width) {
        found = width;
        break;
      }
    }
    if (found == 0) break;
    end -= found;
  }
  return s.substr(begin, end - begin);
}

std::vector<MmluQuestion> read_questions(const std::string& path) {
  const auto records = read_csv_file(path);
  std::vector<MmluQuestion> questions;
  size_t first = 0;
  const bool reformatted = !records.empty() && records[0].size() == 6 && records[0][0] == "question" &&
                           records[0][5] == "answer";
  if (reformatted) first = 1;
  for (size_t r = first; r < records.size(); ++r) {
    const auto& rec = records[r];
    const std::string where = path + " record " + std::to_string(r + 1);
    if (rec.size() != 6) {
      throw Error("an MMLU record needs 6 fields (question, four choices, answer), got " + std::to_string(rec.size()),
                  where);
    }
    MmluQuestion q;
    q.question = rec[0];
    for (int c = 0; c < 4; ++c) q.choices[c] = rec[1 + c];
    const auto& a = rec[5];
    if (a.size() == 1 && a[0] >= 'A' && a[0] <= 'D' && !reformatted) {
      q.answer = a[0] - 'A';
    } else if (a.size() == 1 && a[0] >= '0' && a[0] <= '3' && reformatted) {
      q.answer = a[0] - '0';
    } else {
      throw Error("answer '" + a + "' is not " + (reformatted ? "0-3" : "A-D"), where);
    }
    questions.push_back(std::move(q));
  }
  return questions;
}

std::string subject_file(const std::string& data_dir, const std::string& split, const std::string& subject) {
  namespace fs = std::filesystem;
  for (const auto& root : {fs::path(data_dir), fs::path(data_dir) / "data"}) {
    const auto path = root / split / (subject + "_" + split + ".csv");
    if (fs::exists(path)) return path.string();
  }
  throw Error("no " + split + " file for MMLU subject " + subject,
              (fs::path(data_dir) / split / (subject + "_" + split + ".csv")).string(),
              "--data takes the directory holding dev/ and test/ (hendrycks' data.tar layout)");
}

}  // namespace

MmluSubject load_mmlu_subject(const std::string& data_dir, const std::string& subject) {
  MmluSubject s;
  s.name = subject;
  for (const auto& [name, category] : mmlu_subjects()) {
    if (name == subject) s.category = category;
  }
  if (s.category.empty()) {
    std::string all;
    for (const auto& entry : mmlu_subjects()) all += (all.empty() ? "" : ", ") + entry.first;
    throw Error("unknown MMLU subject '" + subject + "'", "", "the subjects are: " + all);
  }
  s.dev = read_questions(subject_file(data_dir, "dev", subject));
  s.test = read_questions(subject_file(data_dir, "test", subject));
  return s;
}

namespace {

std::string question_text(const MmluQuestion& q) {
  std::string text = python_strip(q.question);
  for (int c = 0; c < 4; ++c) {
    text += "\n";
    text += static_cast<char>('A' + c);
    text += ". " + q.choices[c];
  }
  return text + "\nAnswer:";
}

}  // namespace

namespace {

void check_shots(const MmluSubject& subject, int64_t shots) {
  PHI_CHECK(shots >= 0, "shots must be >= 0");
  if (shots > static_cast<int64_t>(subject.dev.size())) {
    throw Error(std::to_string(shots) + " examples asked for, but the dev split of " + subject.name + " has " +
                std::to_string(subject.dev.size()));
  }
}

}  // namespace

std::string mmlu_context(const MmluSubject& subject, int64_t shots, const MmluQuestion& question) {
  check_shots(subject, shots);
  std::string name = subject.name;
  std::replace(name.begin(), name.end(), '_', ' ');
  std::string text = "The following are multiple choice questions (with answers) about " + name + ".\n\n";
  for (int64_t i = 0; i < shots; ++i) {
    const auto& shot = subject.dev[static_cast<size_t>(i)];
    text += question_text(shot) + " " + static_cast<char>('A' + shot.answer) + "\n\n";
  }
  return text + question_text(question);
}

nlohmann::json mmlu_sample_to_json(const MmluSample& s) {
  return {{"subject", s.subject},
          {"index", s.index},
          {"loglikelihoods", s.loglikelihoods},
          {"pred", s.pred},
          {"gold", s.gold},
          {"shots", s.shots},
          {"context_tokens", s.context_tokens},
          {"truncated", s.truncated}};
}

MmluSample mmlu_sample_from_json(const nlohmann::json& j) {
  MmluSample s;
  s.subject = j.at("subject").get<std::string>();
  s.index = j.at("index").get<int64_t>();
  s.loglikelihoods = j.at("loglikelihoods").get<std::array<double, 4>>();
  s.pred = j.at("pred").get<int>();
  s.gold = j.at("gold").get<int>();
  s.shots = j.at("shots").get<int64_t>();
  s.context_tokens = j.at("context_tokens").get<int64_t>();
  s.truncated = j.at("truncated").get<bool>();
  return s;
}

MmluRun evaluate_mmlu(const Transformer& model, const Tokenizer& tokenizer, const std::vector<MmluSubject>& subjects,
                      const MmluOptions& options) {
  PHI_CHECK(options.shots >= 0, "--shots must be >= 0, got ", options.shots);
  PHI_CHECK(options.batch_size > 0, "--batch-size must be > 0, got ", options.batch_size);
  const nlohmann::json fingerprint = {{"task", "mmlu"},
                                      {"model", options.model_fingerprint},
                                      {"shots", options.shots},
                                      {"limit", options.limit}};
  EvalCache cache(options.cache_dir, fingerprint);
  const int64_t max_length = model.config().max_position_embeddings;
  const auto encode_options = tokenizer.prompt_options();
  const std::vector<std::string> letters = {" A", " B", " C", " D"};

  auto count_of = [&](const MmluSubject& s) {
    const auto n = static_cast<int64_t>(s.test.size());
    return options.limit > 0 ? std::min(n, options.limit) : n;
  };
  int64_t total = 0;
  for (const auto& s : subjects) total += count_of(s);
  Progress progress("mmlu", total, "questions");
  MmluRun run;
  const auto start = std::chrono::steady_clock::now();
  for (const auto& subject : subjects) {
    const int64_t n = count_of(subject);
    if (auto cached = cache.load(subject.name); cached && static_cast<int64_t>(cached->size()) == n) {
      for (const auto& j : *cached) run.samples.push_back(mmlu_sample_from_json(j));
      progress.skip(n);
      continue;
    }
    check_shots(subject, options.shots);  // before any question is tokenized
    std::vector<MmluSample> samples(static_cast<size_t>(n));
    std::map<int64_t, std::vector<int64_t>> by_shots;  // questions grouped by the examples they got
    std::vector<LoglikelihoodRequest> requests(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const auto& q = subject.test[static_cast<size_t>(i)];
      auto& sample = samples[static_cast<size_t>(i)];
      sample.subject = subject.name;
      sample.index = i;
      sample.gold = q.answer;
      int64_t shots = options.shots;
      while (true) {
        requests[static_cast<size_t>(i)] = encode_request(tokenizer, mmlu_context(subject, shots, q), letters, encode_options);
        auto& context = requests[static_cast<size_t>(i)].context;
        if (static_cast<int64_t>(context.size()) <= max_length) break;
        if (shots == 0) {
          context.erase(context.begin(), context.end() - max_length);
          sample.truncated = true;
          ++run.questions_truncated;
          break;
        }
        --shots;
      }
      if (shots < options.shots) ++run.questions_with_fewer_shots;
      sample.shots = shots;
      sample.context_tokens = static_cast<int64_t>(requests[static_cast<size_t>(i)].context.size());
      by_shots[shots].push_back(i);
    }
    for (const auto& [shots, members] : by_shots) {
      std::vector<LoglikelihoodRequest> group;
      for (auto i : members) group.push_back(std::move(requests[static_cast<size_t>(i)]));
      ScoringStats stats;
      const auto scores = score_continuations(model, group, options.batch_size, &stats,
                                              [&](int64_t rows) { progress.advance(rows); });
      run.prefix_tokens += stats.prefix_tokens;
      run.forward_tokens += stats.forward_tokens;
      for (size_t g = 0; g < members.size(); ++g) {
        auto& sample = samples[static_cast<size_t>(members[g])];
        for (int c = 0; c < 4; ++c) sample.loglikelihoods[c] = scores[g][static_cast<size_t>(c)].logprob;
        sample.pred = static_cast<int>(std::max_element(sample.loglikelihoods.begin(), sample.loglikelihoods.end()) -
                                       sample.loglikelihoods.begin());
      }
    }
    run.questions_scored += n;
    std::vector<nlohmann::json> lines;
    for (const auto& s : samples) lines.push_back(mmlu_sample_to_json(s));
    cache.store(subject.name, lines);
    run.samples.insert(run.samples.end(), samples.begin(), samples.end());
  }
  progress.finish();
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return run;
}

nlohmann::json mmlu_metrics(const std::vector<MmluSample>& samples) {
  struct Tally {
    int64_t correct = 0, total = 0;
    double acc() const { return total > 0 ? static_cast<double>(correct) / static_cast<double>(total) : 0.0; }
  };
  std::map<std::string, std::string> category_of(mmlu_subjects().begin(), mmlu_subjects().end());
  std::map<std::string, Tally> by_subject, by_category;
  Tally all;
  for (const auto& s : samples) {
    const int64_t hit = s.pred == s.gold ? 1 : 0;
    for (auto* t : {&by_subject[s.subject], &by_category[category_of[s.subject]], &all}) {
      t->correct += hit;
      t->total += 1;
    }
  }
  nlohmann::json subjects = nlohmann::json::object(), categories = nlohmann::json::object();
  double subject_sum = 0, category_sum = 0;
  std::map<std::string, int64_t> subjects_in;
  for (const auto& [name, t] : by_subject) {
    const double p = t.acc();
    const double n = static_cast<double>(t.total);
    // lm-eval's acc_stderr: the sample standard deviation of 0/1 hits over sqrt(n).
    const double stderr_ = t.total > 1 ? std::sqrt(p * (1 - p) * n / (n - 1)) / std::sqrt(n) : 0.0;
    subjects[name] = {{"acc", p}, {"acc_stderr", stderr_}, {"questions", t.total}, {"category", category_of[name]}};
    subject_sum += p;
    subjects_in[category_of[name]] += 1;
  }
  for (const auto& [name, t] : by_category) {
    categories[name] = {{"acc", t.acc()}, {"questions", t.total}, {"subjects", subjects_in[name]}};
    category_sum += t.acc();
  }
  return {{"acc", all.acc()},
          {"acc_macro_categories", by_category.empty() ? 0.0 : category_sum / static_cast<double>(by_category.size())},
          {"acc_macro_subjects", by_subject.empty() ? 0.0 : subject_sum / static_cast<double>(by_subject.size())},
          {"questions", all.total},
          {"categories", categories},
          {"subjects", subjects}};
}

}  // namespace phi
