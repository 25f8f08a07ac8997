// The LEGO synthetic reasoning task (Zhang et al., arXiv 2206.04301): a chain of variable
// assignments with + and −, clauses shuffled, and the model resolves every variable.
//
// One example, chain length 4, as text:
//   " c=-b; a=+1; d=+c; b=-a? a=+1, b=-a=-1, c=-b=+1, d=+c=+1."
// The clauses ("; "-separated, as in the paper) come before "?"; the answer resolves the variables
// in chain order, each item restating its clause and then the value (the root's clause is its
// value). Variables are distinct lower-case letters drawn at random; the root is +1 or -1.
// Two properties make the task learnable by a small causal model on a CPU budget: every
// left-hand variable follows a space, so a byte-level BPE that merges " x" tells a variable being
// defined (" b") from the same variable being read ("b"); and restating the clause gives the
// lookup ("which clause defines b?") its own target, so the model is not asked for sign(clause) x
// value(parent) in one step (an XOR whose halves carry no gradient on their own).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace phi {

struct LegoExample {
  std::string prompt;   // " c=-b; a=+1; ...?"
  std::string answer;   // " a=+1, b=-a=-1, ..., z=+y=+1."
  std::vector<std::string> variables;  // in chain order
  std::vector<int> values;             // +1 / -1 per variable, chain order
};

/// Deterministic from (seed, index): the same call gives the same example.
LegoExample make_lego_example(int64_t chain_length, uint64_t seed, int64_t index);

}  // namespace phi
