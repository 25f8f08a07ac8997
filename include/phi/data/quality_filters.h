// Heuristic document filters with datatrove's defaults and its reason names, so that decisions are
// comparable with it (docs/data.md). Words are the text split on whitespace (Python's str.split);
// characters are Unicode code points. Needs ICU for the character classes (as text_norm.h).
#pragma once

#include <string>
#include <vector>

namespace phi {

/// The Gopher quality rules (Rae et al. 2021) as datatrove's GopherQualityFilter applies them;
/// a negative or zero limit turns its rule off.
struct GopherQualityOptions {
  int64_t min_doc_words = 50;
  int64_t max_doc_words = 100000;
  double min_avg_word_length = 3;
  double max_avg_word_length = 10;
  double max_symbol_word_ratio = 0.1;
  double max_bullet_lines_ratio = 0.9;
  double max_ellipsis_lines_ratio = 0.3;
  double max_non_alpha_words_ratio = 0.8;  // the least fraction of words with a letter
  int64_t min_stop_words = 2;
  std::vector<std::string> stop_words = {"the", "be", "to", "of", "and", "that", "have", "with"};
};

/// "" when the document passes, else why it is dropped ("gopher_short_doc", "gopher_long_doc",
/// "gopher_below_avg_threshold", "gopher_above_avg_threshold", "gopher_too_many_hashes",
/// "gopher_too_many_ellipsis", "gopher_too_many_bullets", "gopher_too_many_end_ellipsis",
/// "gopher_below_alpha_threshold", "gopher_enough_stop_words").
std::string gopher_quality(const std::string& text, const GopherQualityOptions& options = {});

/// The C4 rules (Raffel et al. 2020) as datatrove's C4QualityFilter applies them with its defaults
/// (lines split as str.splitlines); a negative or zero limit, or false, turns a rule off.
struct C4QualityOptions {
  bool remove_citations = true;
  bool filter_no_terminal_punct = true;
  int64_t min_num_sentences = 5;
  int64_t min_words_per_line = 3;
  int64_t max_word_length = 1000;
  bool filter_lorem_ipsum = true;
  bool filter_javascript = true;
  bool filter_curly_bracket = true;
  bool filter_policy = true;
};

/// "" when the document passes, and then `text` holds its kept lines (joined by \n, stripped);
/// else why it is dropped ("lorem_ipsum", "curly_bracket", "too_few_sentences").
std::string c4_quality(std::string& text, const C4QualityOptions& options = {});

/// Sentences in one line, by the rule the C4 filter counts with (datatrove uses NLTK's Punkt
/// model, which is data we do not ship): a boundary is a run of . ! ? (with closing quotes or
/// brackets) followed by whitespace and a character that is not lower case.
int64_t count_sentences(const std::string& line);

}  // namespace phi
