// A small synthetic "textbook" corpus the project generates itself (for the quickstart and tests):
// short lessons on arithmetic, comparisons, word problems and tiny Python functions, written from
// templates with numbers and names drawn from a seeded generator. Every statement in it is true,
// so a model trained on it can be checked (e.g. "7 plus 5 equals 12").
#pragma once

#include <cstdint>
#include <string>

namespace phi {

/// Document `index` of the corpus for `seed` (deterministic).
std::string make_textbook_document(uint64_t seed, int64_t index);

}  // namespace phi
