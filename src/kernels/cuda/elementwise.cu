// Fused elementwise kernels: the MLP activations (forward and backward) and the rotary embedding.
// Activations: one thread per output element, float32 math, one rounding to the storage dtype.
// x is [n, I] (gelu_new) or [n, 2I] as [a | b] halves (swiglu: silu(a) * b; gegelu: quick_gelu of a
// clamped above at `limit`, times b clamped to [-limit, limit] plus 1, as Phi-3-small). The
// backward recomputes the forward's intermediates from x (nothing else is stored).
// Rotary: one block per (b, h, t) row; NeoX halves on the first `rot` dims, the rest copied.
#include "kernels/cuda/common.cuh"

namespace phi::cuda {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;

__device__ __forceinline__ float sigmoidf(float v) { return 1.f / (1.f + __expf(-v)); }

template <typename T>
__global__ void activation_forward_kernel(Activation kind, const T* __restrict__ x, T* __restrict__ y, int64_t rows,
                                          int64_t inner, float limit) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= rows * inner) return;
  const int64_t r = i / inner, c = i % inner;
  if (kind == Activation::kGeluNew) {
    const float v = to_float(x[i]);
    const float t = tanhf(kSqrt2OverPi * (v + 0.044715f * v * v * v));
    y[i] = from_float<T>(0.5f * v * (1.f + t));
    return;
  }
  float a = to_float(x[r * 2 * inner + c]);
  float b = to_float(x[r * 2 * inner + inner + c]);
  if (kind == Activation::kSwiGlu) {
    y[i] = from_float<T>(a * sigmoidf(a) * b);
  } else {
    if (!isinf(a)) a = fminf(a, limit);
    if (!isinf(b)) b = fminf(fmaxf(b, -limit), limit);
    y[i] = from_float<T>(a * sigmoidf(1.702f * a) * (b + 1.f));
  }
}

template <typename T>
__global__ void activation_backward_kernel(Activation kind, const T* __restrict__ x, const T* __restrict__ dy,
                                           T* __restrict__ dx, int64_t rows, int64_t inner, float limit) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= rows * inner) return;
  const int64_t r = i / inner, c = i % inner;
  const float g = to_float(dy[i]);
  if (kind == Activation::kGeluNew) {
    const float v = to_float(x[i]);
    const float t = tanhf(kSqrt2OverPi * (v + 0.044715f * v * v * v));
    const float dt = (1.f - t * t) * kSqrt2OverPi * (1.f + 3.f * 0.044715f * v * v);
    dx[i] = from_float<T>(g * (0.5f * (1.f + t) + 0.5f * v * dt));
    return;
  }
  const int64_t ia = r * 2 * inner + c, ib = ia + inner;
  const float a = to_float(x[ia]), b = to_float(x[ib]);
  if (kind == Activation::kSwiGlu) {
    const float s = sigmoidf(a);
    dx[ia] = from_float<T>(g * b * s * (1.f + a * (1.f - s)));
    dx[ib] = from_float<T>(g * a * s);
  } else {
    const bool a_passes = isinf(a) || a <= limit;  // clamp passes the gradient inside its range
    const bool b_passes = isinf(b) || (b >= -limit && b <= limit);
    const float ac = isinf(a) ? a : fminf(a, limit);
    const float bc = isinf(b) ? b : fminf(fmaxf(b, -limit), limit);
    const float s = sigmoidf(1.702f * ac);
    const float qg = ac * s;
    dx[ia] = from_float<T>(a_passes ? g * (bc + 1.f) * (s + 1.702f * ac * s * (1.f - s)) : 0.f);
    dx[ib] = from_float<T>(b_passes ? g * qg : 0.f);
  }
}

template <typename T>
__global__ void rotary_kernel(const T* __restrict__ x, int64_t sb, int64_t sh, int64_t st, const float* __restrict__ cos,
                              const float* __restrict__ sin, T* __restrict__ out, int64_t H, int64_t T_, int64_t D,
                              int64_t rot, float sign) {
  const int64_t row = blockIdx.x;  // (b, h, t)
  const int64_t t = row % T_, h = (row / T_) % H, b = row / (T_ * H);
  const T* xr = x + b * sb + h * sh + t * st;
  T* orow = out + row * D;
  const float* c = cos + (b * T_ + t) * rot;
  const float* s = sin + (b * T_ + t) * rot;
  const int64_t half = rot / 2;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    const float v = to_float(xr[d]);
    if (d >= rot) {
      orow[d] = xr[d];
    } else {
      const float other = d < half ? -to_float(xr[d + half]) : to_float(xr[d - half]);
      orow[d] = from_float<T>(v * c[d] + sign * other * s[d]);
    }
  }
}

// One block per (b, h): k's row rotated (first `rot` dims, rot may be 0) and v's row copied into the
// caches at position positions[b].
template <typename T>
__global__ void kv_append_kernel(const T* __restrict__ k, int64_t k_sb, int64_t k_sh, const T* __restrict__ v,
                                 int64_t v_sb, int64_t v_sh, const float* __restrict__ cos,
                                 const float* __restrict__ sin, T* __restrict__ k_cache, T* __restrict__ v_cache,
                                 int64_t c_sb, int64_t c_sh, int64_t c_st, const int64_t* __restrict__ positions,
                                 int64_t H, int64_t D, int64_t rot) {
  const int64_t b = blockIdx.x / H, h = blockIdx.x % H;
  const T* kr = k + b * k_sb + h * k_sh;
  const T* vr = v + b * v_sb + h * v_sh;
  const int64_t at = b * c_sb + h * c_sh + positions[b] * c_st;
  const float* c = cos + b * rot;
  const float* s = sin + b * rot;
  const int64_t half = rot / 2;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    if (d >= rot) {
      k_cache[at + d] = kr[d];
    } else {
      const float other = d < half ? -to_float(kr[d + half]) : to_float(kr[d - half]);
      k_cache[at + d] = from_float<T>(to_float(kr[d]) * c[d] + other * s[d]);
    }
    v_cache[at + d] = vr[d];
  }
}

}  // namespace

int kv_append(const KvAppendParams& p, void* stream) {
  return dispatch_dtype(p.dtype, [&](auto tag) {
    using E = decltype(tag);
    if (p.B * p.H == 0) return 0;
    kv_append_kernel<E><<<static_cast<unsigned>(p.B * p.H), p.D >= 128 ? 128 : 64, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const E*>(p.k), p.k_sb, p.k_sh, static_cast<const E*>(p.v), p.v_sb, p.v_sh, p.cos, p.sin,
        static_cast<E*>(p.k_cache), static_cast<E*>(p.v_cache), p.c_sb, p.c_sh, p.c_st, p.positions, p.H, p.D, p.rot);
    return static_cast<int>(cudaGetLastError());
  });
}

int activation_forward(const ActivationForwardParams& p, void* stream) {
  return dispatch_dtype(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = p.rows * p.inner;
    if (n == 0) return 0;
    activation_forward_kernel<T><<<static_cast<unsigned>((n + 255) / 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(
        p.kind, static_cast<const T*>(p.x), static_cast<T*>(p.y), p.rows, p.inner, p.limit);
    return static_cast<int>(cudaGetLastError());
  });
}

int activation_backward(const ActivationBackwardParams& p, void* stream) {
  return dispatch_dtype(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t n = p.rows * p.inner;
    if (n == 0) return 0;
    activation_backward_kernel<T><<<static_cast<unsigned>((n + 255) / 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(
        p.kind, static_cast<const T*>(p.x), static_cast<const T*>(p.dy), static_cast<T*>(p.dx), p.rows, p.inner,
        p.limit);
    return static_cast<int>(cudaGetLastError());
  });
}

int rotary(const RotaryParams& p, void* stream) {
  return dispatch_dtype(p.dtype, [&](auto tag) {
    using E = decltype(tag);
    const int64_t rows = p.B * p.H * p.T;
    if (rows == 0) return 0;
    rotary_kernel<E><<<static_cast<unsigned>(rows), p.D >= 128 ? 128 : 64, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const E*>(p.x), p.sb, p.sh, p.st, p.cos, p.sin, static_cast<E*>(p.out), p.H, p.T, p.D, p.rot,
        p.sign);
    return static_cast<int>(cudaGetLastError());
  });
}

}  // namespace phi::cuda
