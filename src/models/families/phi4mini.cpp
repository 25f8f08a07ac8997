// The phi4-mini family: Phi-4-mini (HF model_type phi3, Phi3ForCausalLM; docs/phi35_phi4_mini.md). The
// architecture, config keys and weight names are Phi-3's (its config uses partial rotary 0.75, GQA
// and tied embeddings, which the phi3 reader already handles); what differs is the o200k tokenizer
// (a byte-level BPE tokenizer.json with o200k_base's pre-tokenizer pattern) and the chat format
// (no newline after the role tags). A phi3 config.json is Phi-4-mini's when its vocabulary is
// o200k-sized: no Phi-3 vocabulary comes near o200k_base's 199,998 ranks.
#include <nlohmann/json.hpp>

#include "models/families/registry.h"
#include "phi/models/family.h"

namespace phi {

namespace {

constexpr int64_t kO200kRanks = 199998;

bool claims(const nlohmann::json& config) {
  const auto it = config.find("vocab_size");
  return it != config.end() && it->is_number_integer() && it->get<int64_t>() >= kO200kRanks;
}

}  // namespace

const FamilySpec& phi4mini_family() {
  static const FamilySpec spec = [] {
    FamilySpec s = phi3_family();
    s.name = "phi4-mini";
    s.models = "Phi-4-mini";
    s.claims_hf_config = claims;
    s.chat_template = "phi4-mini";
    return s;
  }();
  return spec;
}

}  // namespace phi
