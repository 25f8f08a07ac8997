#include "phi/data/textbook.h"

#include <cstdint>
#include <random>
#include <vector>

#include <fmt/format.h>

namespace phi {

namespace {

const std::vector<std::string> kNames = {"Lily", "Tom", "Ben", "Mia", "Sara", "Leo", "Ana", "Max", "Zoe", "Sam"};
const std::vector<std::string> kThings = {"apples", "books", "marbles", "pencils", "cookies", "stickers", "shells", "cards"};

template <typename T>
const T& pick(std::mt19937_64& rng, const std::vector<T>& items) {
  return items[rng() % items.size()];
}

int number(std::mt19937_64& rng, int lo, int hi) { return lo + static_cast<int>(rng() % static_cast<uint64_t>(hi - lo + 1)); }

std::string addition(std::mt19937_64& rng, int64_t lesson) {
  int a = number(rng, 1, 50), b = number(rng, 1, 50);
  const auto& name = pick(rng, kNames);
  const auto& thing = pick(rng, kThings);
  return fmt::format(
      "Lesson {}: Addition.\nTo add {} and {}, start at {} and count {} more. {} plus {} equals {}.\n"
      "For example, {} has {} {} and finds {} more. Now {} has {} {}.\nCheck: {} + {} = {}.\n",
      lesson, a, b, a, b, a, b, a + b, name, a, thing, b, name, a + b, thing, a, b, a + b);
}

std::string subtraction(std::mt19937_64& rng, int64_t lesson) {
  int a = number(rng, 10, 99), b = number(rng, 1, a);
  const auto& name = pick(rng, kNames);
  const auto& friend_name = pick(rng, kNames);
  const auto& thing = pick(rng, kThings);
  return fmt::format(
      "Lesson {}: Subtraction.\nSubtracting {} from {} leaves {}. We write {} - {} = {}.\n"
      "{} had {} {} and gave {} to {}. {} has {} {} left.\n",
      lesson, b, a, a - b, a, b, a - b, name, a, thing, b, friend_name, name, a - b, thing);
}

std::string multiplication(std::mt19937_64& rng, int64_t lesson) {
  int a = number(rng, 2, 12);
  std::string table = fmt::format("Lesson {}: The table of {}.\n", lesson, a);
  for (int k = 1; k <= 10; ++k) table += fmt::format("{} times {} is {}.\n", a, k, a * k);
  int b = number(rng, 2, 12);
  table += fmt::format("So {} groups of {} make {}.\n", b, a, a * b);
  return table;
}

std::string comparison(std::mt19937_64& rng, int64_t lesson) {
  int a = number(rng, 1, 100), b = number(rng, 1, 100);
  if (a == b) ++b;
  const char* relation = a > b ? "greater than" : "less than";
  return fmt::format(
      "Lesson {}: Comparing numbers.\n{} is {} {}, because {} {} {}. The larger number is {}. The smaller number is {}.\n",
      lesson, a, relation, b, a, a > b ? ">" : "<", b, std::max(a, b), std::min(a, b));
}

std::string python(std::mt19937_64& rng, int64_t lesson) {
  int a = number(rng, 1, 20), b = number(rng, 1, 20);
  switch (rng() % 3) {
    case 0:
      return fmt::format(
          "Lesson {}: A Python function that adds.\n\ndef add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n"
          "    return a + b\n\nprint(add({}, {}))  # prints {}\n",
          lesson, a, b, a + b);
    case 1:
      return fmt::format(
          "Lesson {}: A loop in Python.\n\ntotal = 0\nfor i in range({}):\n    total = total + i\nprint(total)  # prints {}\n",
          lesson, a, a * (a - 1) / 2);
    default:
      return fmt::format(
          "Lesson {}: Choosing the larger value.\n\ndef largest(a, b):\n    if a > b:\n        return a\n    return b\n\n"
          "print(largest({}, {}))  # prints {}\n",
          lesson, a, b, std::max(a, b));
  }
}

}  // namespace

std::string make_textbook_document(uint64_t seed, int64_t index) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull ^ (static_cast<uint64_t>(index) + 1) * 0xBF58476D1CE4E5B9ull);
  const int64_t lesson = index + 1;
  switch (rng() % 5) {
    case 0: return addition(rng, lesson);
    case 1: return subtraction(rng, lesson);
    case 2: return multiplication(rng, lesson);
    case 3: return comparison(rng, lesson);
    default: return python(rng, lesson);
  }
}

}  // namespace phi
