// Batch-1 decode's matrix-vector product on the CPU: y[n] = sum_k W[n, k] x[k] (+ b[n]) for one
// row x [.., K] and a contiguous W [N, K] in f32, bf16 or f16 (x in the same dtype). LibTorch's
// one-row matmul runs on one core here at about half the machine's bandwidth (issue 17); this one
// streams W once, four rows at a time against the same x (converted to f32 once), accumulates in
// f32, and spreads the rows over the threads (at::parallel_for). Instruction sets are chosen at run
// time: AVX-512 (16 lanes), AVX2 + FMA + F16C (8 lanes), or portable C++. Rounding: f32 sums in
// another order than ATen's, so results agree to about 1e-6 relative (f32) or one bf16 / f16 step
// of the output. ATen reference: at::linear (ops.cpp's linear); tests: tests/kernels/test_cpu_kernels.cpp.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

// GCC 12's AVX-512 headers start vectors from _mm512_undefined_*, which -Wuninitialized reports in
// every function that inlines them (a false positive: the lanes are all written).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "phi/core/error.h"
#include "phi/kernels/cpu_kernels.h"

namespace phi {

namespace {

enum class Isa { kPortable, kAvx2, kAvx512 };

Isa detect_isa() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    return Isa::kAvx2;
  }
#endif
  return Isa::kPortable;
}

Isa isa() {
  static const Isa chosen = detect_isa();
  return chosen;
}

inline float bf16_to_float(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// The weight element types, a compile-time choice so that every load inlines.
enum class Kind { kF32, kBF16, kF16 };

template <Kind kind, typename T>
inline float widen(T v) {
  if constexpr (kind == Kind::kF32) {
    return v;
  } else if constexpr (kind == Kind::kBF16) {
    return bf16_to_float(v);
  } else {
    return static_cast<float>(c10::Half(v, c10::Half::from_bits()));
  }
}

// Rows [begin, end) of W against x (f32), into y (f32).
template <Kind kind, typename T>
void rows_portable(const T* w, const float* x, float* y, int64_t K, int64_t begin, int64_t end) {
  for (int64_t n = begin; n < end; ++n) {
    const T* row = w + n * K;
    float sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += widen<kind>(row[k]) * x[k];
    y[n] = sum;
  }
}

#if defined(__x86_64__)

// ---- AVX-512: 16 lanes; four rows share each load of x; the tail is a masked load. ----

// 16 elements widened to f32; `m` masks the tail (all set: a plain load).
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512 load16_f32(const float* p, __mmask16 m) {
  return m == 0xFFFF ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m, p);
}
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m256i load16_u16(const uint16_t* p, __mmask16 m) {
  return m == 0xFFFF ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)) : _mm256_maskz_loadu_epi16(m, p);
}
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512 load16_bf16(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(load16_u16(p, m)), 16));
}
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512 load16_f16(const uint16_t* p, __mmask16 m) {
  return _mm512_cvtph_ps(load16_u16(p, m));
}

template <Kind kind, typename T>
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512 load16(const T* p, __mmask16 m) {
  if constexpr (kind == Kind::kF32) {
    return load16_f32(p, m);
  } else if constexpr (kind == Kind::kBF16) {
    return load16_bf16(p, m);
  } else {
    return load16_f16(p, m);
  }
}

template <Kind kind, typename T>
__attribute__((target("avx512f,avx512bw,avx512vl"))) void rows_avx512(const T* w, const float* x, float* y, int64_t K,
                                                                      int64_t begin, int64_t end) {
  // Unmasked 32-element steps (two accumulators a row, to keep the FMA pipes busy), then masked
  // 16-element steps for the tail.
  const int64_t K32 = K / 32 * 32;
  const __mmask16 all = 0xFFFF;
  auto tail_mask = [&](int64_t k) { return K - k >= 16 ? all : __mmask16((1u << (K - k)) - 1); };
  int64_t n = begin;
  for (; n + 4 <= end; n += 4) {
    const T* r[4] = {w + n * K, w + (n + 1) * K, w + (n + 2) * K, w + (n + 3) * K};
    __m512 a[4][2];
    for (auto& row : a) row[0] = row[1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K32; k += 32) {
      const __m512 x0 = _mm512_loadu_ps(x + k), x1 = _mm512_loadu_ps(x + k + 16);
      for (int i = 0; i < 4; ++i) {
        // The same place in the next four rows: out of cache, the prefetcher alone leaves the
        // loads waiting (a prefetch never faults, past the end included).
        _mm_prefetch(reinterpret_cast<const char*>(r[i] + k + 4 * K), _MM_HINT_T0);
        a[i][0] = _mm512_fmadd_ps(load16<kind>(r[i] + k, all), x0, a[i][0]);
        a[i][1] = _mm512_fmadd_ps(load16<kind>(r[i] + k + 16, all), x1, a[i][1]);
      }
    }
    for (int64_t k = K32; k < K; k += 16) {
      const __mmask16 m = tail_mask(k);
      const __m512 xv = _mm512_maskz_loadu_ps(m, x + k);
      for (int i = 0; i < 4; ++i) a[i][0] = _mm512_fmadd_ps(load16<kind>(r[i] + k, m), xv, a[i][0]);
    }
    for (int i = 0; i < 4; ++i) y[n + i] = _mm512_reduce_add_ps(_mm512_add_ps(a[i][0], a[i][1]));
  }
  for (; n < end; ++n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    const T* r = w + n * K;
    for (int64_t k = 0; k < K32; k += 32) {
      a0 = _mm512_fmadd_ps(load16<kind>(r + k, all), _mm512_loadu_ps(x + k), a0);
      a1 = _mm512_fmadd_ps(load16<kind>(r + k + 16, all), _mm512_loadu_ps(x + k + 16), a1);
    }
    for (int64_t k = K32; k < K; k += 16) {
      const __mmask16 m = tail_mask(k);
      a0 = _mm512_fmadd_ps(load16<kind>(r + k, m), _mm512_maskz_loadu_ps(m, x + k), a0);
    }
    y[n] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
  }
}

// ---- AVX2 + FMA + F16C: 8 lanes; the tail (K % 8) in scalar code. ----

__attribute__((target("avx2,fma,f16c"))) inline __m256 load8_f32(const float* p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,fma,f16c"))) inline __m256 load8_bf16(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
__attribute__((target("avx2,fma,f16c"))) inline __m256 load8_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
__attribute__((target("avx2,fma,f16c"))) inline float sum8(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

template <Kind kind, typename T>
__attribute__((target("avx2,fma,f16c"))) inline __m256 load8(const T* p) {
  if constexpr (kind == Kind::kF32) {
    return load8_f32(p);
  } else if constexpr (kind == Kind::kBF16) {
    return load8_bf16(p);
  } else {
    return load8_f16(p);
  }
}

template <Kind kind, typename T>
__attribute__((target("avx2,fma,f16c"))) void rows_avx2(const T* w, const float* x, float* y, int64_t K, int64_t begin,
                                                        int64_t end) {
  const int64_t K8 = K / 8 * 8;
  int64_t n = begin;
  for (; n + 4 <= end; n += 4) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    const T* r0 = w + n * K;
    const T* r1 = r0 + K;
    const T* r2 = r1 + K;
    const T* r3 = r2 + K;
    for (int64_t k = 0; k < K8; k += 8) {
      const __m256 xv = _mm256_loadu_ps(x + k);
      a0 = _mm256_fmadd_ps(load8<kind>(r0 + k), xv, a0);
      a1 = _mm256_fmadd_ps(load8<kind>(r1 + k), xv, a1);
      a2 = _mm256_fmadd_ps(load8<kind>(r2 + k), xv, a2);
      a3 = _mm256_fmadd_ps(load8<kind>(r3 + k), xv, a3);
    }
    float s[4] = {sum8(a0), sum8(a1), sum8(a2), sum8(a3)};
    for (int64_t k = K8; k < K; ++k) {
      s[0] += widen<kind>(r0[k]) * x[k];
      s[1] += widen<kind>(r1[k]) * x[k];
      s[2] += widen<kind>(r2[k]) * x[k];
      s[3] += widen<kind>(r3[k]) * x[k];
    }
    std::memcpy(y + n, s, sizeof s);
  }
  for (; n < end; ++n) {
    __m256 a = _mm256_setzero_ps();
    const T* r = w + n * K;
    for (int64_t k = 0; k < K8; k += 8) a = _mm256_fmadd_ps(load8<kind>(r + k), _mm256_loadu_ps(x + k), a);
    float s = sum8(a);
    for (int64_t k = K8; k < K; ++k) s += widen<kind>(r[k]) * x[k];
    y[n] = s;
  }
}

#endif  // __x86_64__

// y (f32, N) = W x for rows [begin, end), with instruction set `with`.
template <Kind kind, typename T>
void rows_of(Isa with, const T* w, const float* x, float* y, int64_t K, int64_t begin, int64_t end) {
#if defined(__x86_64__)
  if (with == Isa::kAvx512) return rows_avx512<kind>(w, x, y, K, begin, end);
  if (with == Isa::kAvx2) return rows_avx2<kind>(w, x, y, K, begin, end);
#endif
  rows_portable<kind>(w, x, y, K, begin, end);
}

void rows(Isa with, at::ScalarType dtype, const void* w, const float* x, float* y, int64_t K, int64_t begin,
          int64_t end) {
  const auto* wh = static_cast<const uint16_t*>(w);
  if (dtype == at::kFloat) return rows_of<Kind::kF32>(with, static_cast<const float*>(w), x, y, K, begin, end);
  if (dtype == at::kBFloat16) return rows_of<Kind::kBF16>(with, wh, x, y, K, begin, end);
  rows_of<Kind::kF16>(with, wh, x, y, K, begin, end);
}

}  // namespace

const char* gemv_cpu_isa() {
  switch (isa()) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kPortable:
      break;
  }
  return "portable";
}

std::vector<std::string> gemv_cpu_isas() {
  std::vector<std::string> out = {"portable"};
  if (isa() == Isa::kAvx2 || isa() == Isa::kAvx512) out.push_back("avx2");  // AVX-512 CPUs have AVX2 + FMA + F16C
  if (isa() == Isa::kAvx512) out.push_back("avx512");
  return out;
}

bool gemv_cpu_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (!x.device().is_cpu() || !w.device().is_cpu() || w.dim() != 2 || !w.is_contiguous() || !x.is_contiguous()) {
    return false;
  }
  const auto t = w.scalar_type();
  if ((t != at::kFloat && t != at::kBFloat16 && t != at::kHalf) || x.scalar_type() != t) return false;
  if (b.defined() && (!b.device().is_cpu() || b.scalar_type() != t || b.numel() != w.size(0))) return false;
  const int64_t K = w.size(1);
  return K > 0 && x.dim() >= 1 && x.numel() == K && x.size(-1) == K;
}

at::Tensor gemv_cpu(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return gemv_cpu_with(x, w, b, gemv_cpu_isa());
}

at::Tensor gemv_cpu_with(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, const std::string& isa_name) {
  const auto available = gemv_cpu_isas();
  PHI_CHECK(std::find(available.begin(), available.end(), isa_name) != available.end(), "gemv_cpu: instruction set \"",
            isa_name, "\" is not one this CPU runs (", gemv_cpu_isa(), " at most)");
  const Isa with = isa_name == "avx512" ? Isa::kAvx512 : isa_name == "avx2" ? Isa::kAvx2 : Isa::kPortable;
  PHI_CHECK(gemv_cpu_applies(x, w, b),
            "gemv_cpu: needs one row x [.., K] and a contiguous f32 / bf16 / f16 W [N, K] "
            "of x's dtype on the CPU, got x ",
            x.sizes(), " ", x.scalar_type(), ", W ", w.sizes(), " ", w.scalar_type());
  const int64_t N = w.size(0), K = w.size(1);
  const auto xf = x.to(at::kFloat).contiguous();
  auto yf = at::empty({N}, x.options().dtype(at::kFloat));
  const auto* xp = xf.data_ptr<float>();
  auto* yp = yf.data_ptr<float>();
  const void* wp = w.data_ptr();
  const auto dtype = w.scalar_type();
  // About 64 KiB of W per task: small enough to spread a 3072-row matrix over many threads.
  const int64_t grain = std::max<int64_t>(4, (int64_t{64} << 10) / std::max<int64_t>(1, K * w.element_size()) / 4 * 4);
  at::parallel_for(0, N, grain, [&](int64_t begin, int64_t end) { rows(with, dtype, wp, xp, yp, K, begin, end); });
  if (b.defined()) yf.add_(b.to(at::kFloat));
  auto sizes = x.sizes().vec();
  sizes.back() = N;
  return yf.to(x.scalar_type()).view(sizes);
}

}  // namespace phi
