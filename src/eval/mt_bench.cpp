#include "phi/eval/mt_bench.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <mutex>
#include <optional>
#include <random>

#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/core/progress.h"
#include "phi/core/text_io.h"
#include "eval/chat_client.h"
#include "eval/parallel.h"
#include "phi/eval/report.h"
#include "phi/infer/chat_template.h"
#include "phi/infer/generator.h"
#include "phi/models/transformer.h"
#include "phi/tokenizer/tokenizer.h"

namespace phi {

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::vector<MtBenchQuestion> load_mt_bench_questions(const std::string& path) {
  std::vector<MtBenchQuestion> questions;
  for_each_jsonl(path, [&](const nlohmann::json& j, const std::string& where) {
    JsonReader r(j, where);
    MtBenchQuestion q;
    q.question_id = r.required<int64_t>("question_id");
    q.category = r.required<std::string>("category");
    q.turns = r.required<std::vector<std::string>>("turns");
    if (q.turns.empty()) throw Error("a question needs at least one turn", where);
    questions.push_back(std::move(q));
    return true;
  });
  return questions;
}

std::map<std::string, JudgePrompt> load_judge_prompts(const std::string& path) {
  std::map<std::string, JudgePrompt> prompts;
  for_each_jsonl(path, [&](const nlohmann::json& j, const std::string& where) {
    JsonReader r(j, where);
    JudgePrompt p;
    p.name = r.required<std::string>("name");
    p.type = r.required<std::string>("type");
    p.category = r.required<std::string>("category");
    p.system_prompt = r.required<std::string>("system_prompt");
    p.prompt_template = r.required<std::string>("prompt_template");
    p.output_format = r.required<std::string>("output_format");
    prompts[p.name] = std::move(p);
    return true;
  });
  return prompts;
}

std::map<int64_t, std::vector<std::string>> load_answer_turns(const std::string& path) {
  std::map<int64_t, std::vector<std::string>> answers;
  for_each_jsonl(path, [&](const nlohmann::json& j, const std::string& where) {
    JsonReader r(j, where);
    const auto id = r.required<int64_t>("question_id");
    const auto& choices = r.raw("choices");
    if (!choices.is_array() || choices.empty()) r.fail("choices", "must be a non-empty array");
    answers[id] = JsonReader(choices[0], where, "$.choices[0]").required<std::vector<std::string>>("turns");
    return true;
  });
  return answers;
}

double mt_bench_temperature(const std::string& category) {
  static const std::map<std::string, double> temperatures = {
      {"writing", 0.7}, {"roleplay", 0.7}, {"extraction", 0.0}, {"math", 0.0}, {"coding", 0.0},
      {"reasoning", 0.0}, {"stem", 0.1}, {"humanities", 0.1}, {"arena-hard-200", 0.0}};
  auto it = temperatures.find(category);
  return it == temperatures.end() ? 0.7 : it->second;
}

bool mt_bench_needs_reference(const std::string& category) {
  return category == "math" || category == "reasoning" || category == "coding" || category == "arena-hard-200";
}

std::string python_format(const std::string& format, const std::map<std::string, std::string>& values) {
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    const char c = format[i];
    if (c == '{' && i + 1 < format.size() && format[i + 1] == '{') {
      out += '{';
      ++i;
    } else if (c == '}' && i + 1 < format.size() && format[i + 1] == '}') {
      out += '}';
      ++i;
    } else if (c == '{') {
      const size_t end = format.find('}', i);
      if (end == std::string::npos) throw Error("unmatched '{' in a judge prompt template");
      const auto name = format.substr(i + 1, end - i - 1);
      auto it = values.find(name);
      if (it == values.end()) throw Error("the judge prompt template names an unknown field {" + name + "}");
      out += it->second;
      i = end;
    } else if (c == '}') {
      throw Error("single '}' in a judge prompt template");
    } else {
      out += c;
    }
  }
  return out;
}

nlohmann::json parse_judge_rating(const std::string& judgment) {
  // The first match of \[\[(\d+\.?\d*)\]\], else of \[(\d+\.?\d*)\] (Python's re.search).
  auto match = [&](bool doubled) -> std::optional<std::string> {
    const std::string open = doubled ? "[[" : "[", close = doubled ? "]]" : "]";
    for (size_t at = judgment.find(open); at != std::string::npos; at = judgment.find(open, at + 1)) {
      size_t p = at + open.size();
      const size_t digits = p;
      while (p < judgment.size() && std::isdigit(static_cast<unsigned char>(judgment[p]))) ++p;
      if (p == digits) continue;
      if (p < judgment.size() && judgment[p] == '.') {
        ++p;
        while (p < judgment.size() && std::isdigit(static_cast<unsigned char>(judgment[p]))) ++p;
      }
      if (judgment.compare(p, close.size(), close) == 0) return judgment.substr(digits, p - digits);
    }
    return std::nullopt;
  };
  auto found = match(true);
  if (!found) found = match(false);
  if (!found) return -1;
  if (found->find('.') != std::string::npos) return std::stod(*found);
  // ast.literal_eval of a digit string: an integer of any size; beyond int64 keep it as a float.
  try {
    return std::stoll(*found);
  } catch (const std::out_of_range&) {
    return std::stod(*found);
  }
}

std::vector<JudgeRequest> mt_bench_judge_requests(const std::vector<MtBenchQuestion>& questions,
                                                  const std::map<int64_t, std::vector<std::string>>& answers,
                                                  const std::map<std::string, JudgePrompt>& prompts,
                                                  const std::map<int64_t, std::vector<std::string>>& references,
                                                  const std::string& model) {
  auto prompt = [&](const std::string& name) -> const JudgePrompt& {
    auto it = prompts.find(name);
    if (it == prompts.end()) throw Error("the judge prompts have no '" + name + "'");
    return it->second;
  };
  std::vector<JudgeRequest> requests;
  // FastChat's order: default turn 1, math turn 1, default turn 2, math turn 2.
  for (int turn : {1, 2}) {
    for (bool math : {false, true}) {
      const auto& p = prompt(std::string(math ? "single-math-v1" : "single-v1") + (turn == 2 ? "-multi-turn" : ""));
      for (const auto& q : questions) {
        if (mt_bench_needs_reference(q.category) != math) continue;
        if (turn == 2 && q.turns.size() != 2) continue;
        auto a = answers.find(q.question_id);
        if (a == answers.end()) throw Error("no answer of " + model + " to question " + std::to_string(q.question_id));
        if (a->second.size() < static_cast<size_t>(turn)) {
          throw Error("the answer of " + model + " to question " + std::to_string(q.question_id) + " has no turn " +
                      std::to_string(turn));
        }
        std::map<std::string, std::string> values;
        if (math) {
          auto r = references.find(q.question_id);
          if (r == references.end() || r->second.size() < static_cast<size_t>(turn)) {
            throw Error("no reference answer for question " + std::to_string(q.question_id) + " (" + q.category + ")");
          }
          values["ref_answer_1"] = r->second[0];
          if (turn == 2) values["ref_answer_2"] = r->second[1];
        }
        if (turn == 2) {
          values["question_1"] = q.turns[0];
          values["question_2"] = q.turns[1];
          values["answer_1"] = a->second[0];
          values["answer_2"] = a->second[1];
        } else {
          values["question"] = q.turns[0];
          values["answer"] = a->second[0];
        }
        JudgeRequest r;
        r.question_id = q.question_id;
        r.category = q.category;
        r.model = model;
        r.turn = turn;
        r.prompt_name = p.name;
        r.system_prompt = p.system_prompt;
        r.user_prompt = python_format(p.prompt_template, values);
        requests.push_back(std::move(r));
      }
    }
  }
  return requests;
}

nlohmann::json mt_bench_judgment(const JudgeRequest& request, const std::string& judge_model,
                                 const std::string& judgment, int run) {
  return {{"question_id", request.question_id},
          {"model", request.model},
          {"judge", {judge_model, request.prompt_name}},
          {"user_prompt", request.user_prompt},
          {"judgment", judgment},
          {"score", parse_judge_rating(judgment)},
          {"turn", request.turn},
          {"tstamp", now_seconds()},
          {"run", run}};
}

nlohmann::json mt_bench_summary(const std::vector<nlohmann::json>& judgments,
                                const std::vector<MtBenchQuestion>& questions) {
  std::map<int64_t, std::string> category_of;
  for (const auto& q : questions) category_of[q.question_id] = q.category;
  struct Sum {
    double total = 0;
    int64_t n = 0;
    void add(double x) {
      total += x;
      ++n;
    }
    nlohmann::json mean() const { return n > 0 ? nlohmann::json(total / static_cast<double>(n)) : nlohmann::json(nullptr); }
  };
  struct PerModel {
    Sum turn1, turn2, all;
    std::map<std::string, Sum> categories;
    std::map<int64_t, Sum> runs;
    int64_t judgments = 0, no_score = 0;
  };
  std::map<std::string, PerModel> models;
  for (const auto& j : judgments) {
    auto& m = models[j.at("model").get<std::string>()];
    ++m.judgments;
    const auto& score = j.at("score");
    const double value = score.get<double>();
    if (value == -1) {
      ++m.no_score;
      continue;
    }
    (j.at("turn").get<int>() == 1 ? m.turn1 : m.turn2).add(value);
    m.all.add(value);
    m.categories[category_of[j.at("question_id").get<int64_t>()]].add(value);
    m.runs[j.value("run", 0)].add(value);
  }
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [name, m] : models) {
    nlohmann::json categories = nlohmann::json::object();
    for (const auto& [c, s] : m.categories) categories[c] = s.mean();
    std::vector<double> runs;
    for (const auto& [r, s] : m.runs) runs.push_back(s.total / static_cast<double>(s.n));
    nlohmann::json median = nullptr;
    if (!runs.empty()) {
      auto sorted = runs;
      std::sort(sorted.begin(), sorted.end());
      const size_t k = sorted.size();
      median = k % 2 == 1 ? sorted[k / 2] : (sorted[k / 2 - 1] + sorted[k / 2]) / 2;
    }
    out[name] = {{"turn_1", m.turn1.mean()},  {"turn_2", m.turn2.mean()}, {"average", m.all.mean()},
                 {"categories", categories}, {"judgments", m.judgments}, {"no_score", m.no_score},
                 {"runs", runs},             {"median_of_runs", median}};
  }
  return out;
}

namespace {

std::string answer_id() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  static const char* alphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
  std::string id;
  for (int i = 0; i < 22; ++i) id += alphabet[rng() % 57];
  return id;
}

std::string python_str_strip(const std::string& s) {
  const char* space = " \t\n\r\v\f";
  const auto begin = s.find_first_not_of(space);
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(space) - begin + 1);
}

}  // namespace

std::vector<nlohmann::json> generate_mt_bench_answers(const Transformer& model, const Tokenizer& tokenizer,
                                                      const ChatTemplate& chat, const std::vector<int64_t>& end_ids,
                                                      const std::vector<MtBenchQuestion>& questions,
                                                      const MtBenchGenerateOptions& options) {
  EvalCache cache(options.cache_dir, {{"task", "mt-bench generate"},
                                      {"model", options.fingerprint},
                                      {"max_new_tokens", options.max_new_tokens},
                                      {"seed", options.seed}});
  GeneratorOptions generator_options;
  generator_options.max_batch_size = options.batch_size;
  generator_options.end_token_ids = end_ids;
  Generator generator(model, tokenizer, generator_options);
  std::vector<nlohmann::json> lines(questions.size());
  std::vector<size_t> todo;
  for (size_t i = 0; i < questions.size(); ++i) {
    if (auto cached = cache.load("q" + std::to_string(questions[i].question_id)); cached && cached->size() == 1) {
      lines[i] = (*cached)[0];
    } else {
      todo.push_back(i);
    }
  }
  Progress progress("mt-bench generate", static_cast<int64_t>(questions.size()), "questions");
  progress.skip(static_cast<int64_t>(questions.size() - todo.size()));
  const size_t chunk = static_cast<size_t>(std::max<int64_t>(1, options.batch_size));
  for (size_t first = 0; first < todo.size(); first += chunk) {
    const size_t count = std::min(chunk, todo.size() - first);
    std::vector<std::vector<ChatMessage>> conversations(count);
    std::vector<std::vector<std::string>> answers(count);
    size_t max_turns = 0;
    for (size_t k = 0; k < count; ++k) max_turns = std::max(max_turns, questions[todo[first + k]].turns.size());
    for (size_t turn = 0; turn < max_turns; ++turn) {
      std::vector<GenerationRequest> requests;
      std::vector<size_t> members;
      for (size_t k = 0; k < count; ++k) {
        const auto& q = questions[todo[first + k]];
        if (turn >= q.turns.size()) continue;
        conversations[k].push_back({"user", q.turns[turn]});
        GenerationRequest r;
        EncodeOptions encode;
        encode.max_tokens = model.config().max_position_embeddings;
        r.prompt = chat.encode(tokenizer, conversations[k], true, encode);
        r.params.temperature = mt_bench_temperature(q.category);
        r.params.max_new_tokens = options.max_new_tokens;
        r.params.seed = options.seed + static_cast<uint64_t>(q.question_id) * 7919u + turn;
        requests.push_back(std::move(r));
        members.push_back(k);
      }
      // A prompt that has outgrown the context gets the room that is left (FastChat truncates too).
      for (auto& r : requests) {
        const int64_t room = model.config().max_position_embeddings - static_cast<int64_t>(r.prompt.size());
        if (room < 1) throw Error("an MT-bench conversation no longer fits the model's context");
        r.params.max_new_tokens = std::min(r.params.max_new_tokens, room);
      }
      const auto outputs = generator.generate(requests);
      for (size_t m = 0; m < members.size(); ++m) {
        const auto text = python_str_strip(outputs[m].text);
        answers[members[m]].push_back(text);
        conversations[members[m]].push_back({"assistant", text});
      }
    }
    for (size_t k = 0; k < count; ++k) {
      const auto& q = questions[todo[first + k]];
      nlohmann::json line = {{"question_id", q.question_id},
                             {"answer_id", answer_id()},
                             {"model_id", options.model_id},
                             {"choices", {{{"index", 0}, {"turns", answers[k]}}}},
                             {"tstamp", now_seconds()}};
      cache.store("q" + std::to_string(q.question_id), {line});
      lines[todo[first + k]] = line;
    }
    progress.advance(static_cast<int64_t>(count));
  }
  progress.finish();
  return lines;
}

std::vector<nlohmann::json> judge_mt_bench(const std::vector<JudgeRequest>& requests, const MtBenchJudgeOptions& options) {
  PHI_CHECK(options.runs >= 1 && options.parallel >= 1, "--judge-runs and --parallel must be >= 1");
  ChatClient client({options.url, options.judge_model, options.api_key, options.timeout_seconds, options.max_retries,
                     options.backoff_seconds});
  EvalCache cache(options.cache_dir, {{"task", "mt-bench judge"}, {"answers", options.fingerprint},
                                      {"judge_model", options.judge_model}, {"url", options.url}});
  struct Item {
    size_t request;
    int run;
  };
  std::vector<Item> items;
  for (int run = 0; run < options.runs; ++run) {
    for (size_t i = 0; i < requests.size(); ++i) items.push_back({i, run});
  }
  auto group_of = [&](const Item& item) {
    const auto& r = requests[item.request];
    return "run" + std::to_string(item.run) + "-" + r.model + "-q" + std::to_string(r.question_id) + "-t" +
           std::to_string(r.turn);
  };
  std::vector<nlohmann::json> out(items.size());
  std::vector<size_t> todo;
  for (size_t k = 0; k < items.size(); ++k) {
    if (auto cached = cache.load(group_of(items[k])); cached && cached->size() == 1) {
      out[k] = (*cached)[0];
    } else {
      todo.push_back(k);
    }
  }
  Progress progress("mt-bench judge", static_cast<int64_t>(items.size()), "judgments");
  progress.skip(static_cast<int64_t>(items.size() - todo.size()));
  std::mutex mutex;
  const auto error = parallel_for(todo.size(), options.parallel, [&](size_t t) {
    const auto& item = items[todo[t]];
    const auto& r = requests[item.request];
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    if (!r.system_prompt.empty()) {
      messages.push_back(nlohmann::ordered_json{{"role", "system"}, {"content", r.system_prompt}});
    }
    messages.push_back(nlohmann::ordered_json{{"role", "user"}, {"content", r.user_prompt}});
    try {
      const auto reply = client.complete(messages, 0.0, options.max_tokens);
      auto judgment = mt_bench_judgment(r, options.judge_model, reply, item.run);
      cache.store(group_of(item), {judgment});
      std::lock_guard<std::mutex> lock(mutex);
      out[todo[t]] = std::move(judgment);
      progress.advance();
    } catch (const std::exception& e) {
      throw Error(std::string(e.what()) + " (question " + std::to_string(r.question_id) + ", turn " +
                  std::to_string(r.turn) + ")");
    }
  });
  if (!error.empty()) {
    throw Error("judging stopped: " + error, "",
                "finished judgments are kept in the cache: rerun the same command to resume");
  }
  progress.finish();
  return out;
}

}  // namespace phi
