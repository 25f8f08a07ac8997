// The registered model families: one line each. Adding a family is its file in this directory
// (a FamilySpec returned by <name>_family()) plus one line here. A family that claims some configs
// of a model_type shared with another (Phi-4-mini is model_type phi3) comes before that one.
#pragma once

#define PHI_FAMILIES(X) \
  X(phi_family)         \
  X(phi4mini_family)    \
  X(phi3_family)        \
  X(phi3small_family)

namespace phi {

struct FamilySpec;
#define PHI_DECLARE_FAMILY(function) const FamilySpec& function();
PHI_FAMILIES(PHI_DECLARE_FAMILY)
#undef PHI_DECLARE_FAMILY

}  // namespace phi
