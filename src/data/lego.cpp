#include "phi/data/lego.h"

#include <cstdint>
#include <algorithm>
#include <numeric>
#include <random>

#include "phi/core/error.h"

namespace phi {

LegoExample make_lego_example(int64_t chain_length, uint64_t seed, int64_t index) {
  if (chain_length < 1 || chain_length > 26) {
    throw Error("LEGO chain length must be in [1, 26], got " + std::to_string(chain_length));
  }
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(index) * 0xD1B54A32D192ED03ull + 17);
  std::vector<char> letters(26);
  std::iota(letters.begin(), letters.end(), 'a');
  std::shuffle(letters.begin(), letters.end(), rng);
  LegoExample ex;
  std::vector<std::string> clauses;
  int value = (rng() & 1) ? 1 : -1;
  for (int64_t i = 0; i < chain_length; ++i) {
    const std::string var(1, letters[i]);
    const bool plus = (rng() & 1) != 0;
    if (i == 0) {
      clauses.push_back(var + "=" + (value > 0 ? "+1" : "-1"));
    } else {
      clauses.push_back(var + "=" + (plus ? "+" : "-") + ex.variables.back());
      value = plus ? value : -value;
    }
    ex.variables.push_back(var);
    ex.values.push_back(value);
  }
  const std::vector<std::string> chain_clauses = clauses;
  std::shuffle(clauses.begin(), clauses.end(), rng);
  for (size_t i = 0; i < clauses.size(); ++i) ex.prompt += (i ? "; " : " ") + clauses[i];
  ex.prompt += "?";
  // Chain order; each item restates its clause, then the value ("b=-a=-1"); the root's clause is
  // its value.
  for (size_t i = 0; i < ex.variables.size(); ++i) {
    ex.answer += (i ? ", " : " ") + chain_clauses[i];
    if (i > 0) ex.answer += std::string("=") + (ex.values[i] > 0 ? "+1" : "-1");
  }
  ex.answer += ".";
  return ex;
}

}  // namespace phi
