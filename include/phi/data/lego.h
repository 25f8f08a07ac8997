// The LEGO synthetic reasoning task (Zhang et al., arXiv 2206.04301): a chain of variable
// assignments with + and −, clauses shuffled, and the model resolves every variable.
//
// One example, chain length 4, as text:   "c=-b;a=+1;d=+c;b=-a?a=+1,b=-1,c=+1,d=+1."
// The clauses come before "?", the answers after it in chain order. Variables are distinct
// lower-case letters drawn at random; the first is assigned +1 or -1.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace phi {

struct LegoExample {
  std::string prompt;   // clauses and "?"
  std::string answer;   // "a=+1,b=-1,...,z=+1."
  std::vector<std::string> variables;  // in chain order
  std::vector<int> values;             // +1 / -1 per variable, chain order
};

/// Deterministic from (seed, index): the same call gives the same example.
LegoExample make_lego_example(int64_t chain_length, uint64_t seed, int64_t index);

}  // namespace phi
