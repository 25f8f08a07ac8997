// Fused residual add + RMSNorm / LayerNorm, forward and backward.
// Forward: one block per row. Pass 1 forms h = x + residual (rounded to the storage dtype, as the
// unfused `x + a` would), writes it, and accumulates sum(h) and sum(h^2) in float32; LayerNorm
// takes a second pass over h for the centred variance. Pass 2 writes y: RMSNorm rounds h * rstd to
// the storage dtype before the weight multiply (Phi3RMSNorm); LayerNorm applies weight and bias in
// float32 and rounds once (at::layer_norm).
// Backward: one block per row gives dh = rstd * (g - xhat * mean(g * xhat) [- mean(g)]) + dh_in with
// g = dy * weight; a column kernel sums dy * xhat (and dy) over row chunks into float32 partials.
// Layout: rows x cols row-major. Limits: cols < 2^31.
#include "kernels/cuda/common.cuh"

namespace phi::cuda {
namespace {

template <typename T>
__global__ void add_norm_forward_kernel(bool rms, const T* __restrict__ x, const T* __restrict__ residual,
                                        const T* __restrict__ weight, const T* __restrict__ bias, T* __restrict__ h,
                                        T* __restrict__ y, float* __restrict__ mean_out, float* __restrict__ rstd_out,
                                        int64_t cols, float eps) {
  __shared__ float scratch[33];
  const int64_t row = blockIdx.x;
  const T* xr = x + row * cols;
  const T* rr = residual ? residual + row * cols : nullptr;
  T* hr = h + row * cols;
  T* yr = y + row * cols;
  float sum = 0.f, sumsq = 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float v = to_float(xr[c]);
    if (rr) v = to_float(from_float<T>(v + to_float(rr[c])));
    hr[c] = from_float<T>(v);
    sum += v;
    sumsq += v * v;
  }
  float mean = 0.f, rstd;
  if (rms) {
    sumsq = block_sum(sumsq, scratch);
    rstd = rsqrtf(sumsq / static_cast<float>(cols) + eps);
  } else {
    mean = block_sum(sum, scratch) / static_cast<float>(cols);
    float var = 0.f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float d = to_float(hr[c]) - mean;
      var += d * d;
    }
    var = block_sum(var, scratch) / static_cast<float>(cols);
    rstd = rsqrtf(var + eps);
  }
  if (threadIdx.x == 0) {
    if (mean_out) mean_out[row] = mean;
    rstd_out[row] = rstd;
  }
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float v = to_float(hr[c]);
    if (rms) {
      yr[c] = from_float<T>(to_float(weight[c]) * to_float(from_float<T>(v * rstd)));
    } else {
      float out = (v - mean) * rstd * to_float(weight[c]);
      if (bias) out += to_float(bias[c]);
      yr[c] = from_float<T>(out);
    }
  }
}

template <typename T>
__global__ void add_norm_backward_rows(bool rms, const T* __restrict__ dy, const T* __restrict__ dh_in,
                                       const T* __restrict__ h, const T* __restrict__ weight,
                                       const float* __restrict__ mean, const float* __restrict__ rstd,
                                       T* __restrict__ dh, int64_t cols) {
  __shared__ float scratch[33];
  const int64_t row = blockIdx.x;
  const float mu = rms ? 0.f : mean[row];
  const float rs = rstd[row];
  const T* dyr = dy + row * cols;
  const T* hr = h + row * cols;
  float sum_gx = 0.f, sum_g = 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float g = to_float(dyr[c]) * to_float(weight[c]);
    const float xhat = (to_float(hr[c]) - mu) * rs;
    sum_gx += g * xhat;
    sum_g += g;
  }
  sum_gx = block_sum(sum_gx, scratch) / static_cast<float>(cols);
  sum_g = rms ? 0.f : block_sum(sum_g, scratch) / static_cast<float>(cols);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float g = to_float(dyr[c]) * to_float(weight[c]);
    const float xhat = (to_float(hr[c]) - mu) * rs;
    float out = rs * (g - xhat * sum_gx - sum_g);
    if (dh_in) out += to_float(dh_in[row * cols + c]);
    dh[row * cols + c] = from_float<T>(out);
  }
}

template <typename T>
__global__ void add_norm_backward_columns(bool rms, const T* __restrict__ dy, const T* __restrict__ h,
                                          const float* __restrict__ mean, const float* __restrict__ rstd,
                                          float* __restrict__ dweight_partial, float* __restrict__ dbias_partial,
                                          int64_t rows, int64_t cols, int64_t rows_per_split) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= cols) return;
  const int64_t split = blockIdx.y;
  const int64_t begin = split * rows_per_split;
  const int64_t end = begin + rows_per_split < rows ? begin + rows_per_split : rows;
  float dw = 0.f, db = 0.f;
  for (int64_t r = begin; r < end; ++r) {
    const float d = to_float(dy[r * cols + c]);
    const float xhat = (to_float(h[r * cols + c]) - (rms ? 0.f : mean[r])) * rstd[r];
    dw += d * xhat;
    db += d;
  }
  dweight_partial[split * cols + c] = dw;
  if (dbias_partial) dbias_partial[split * cols + c] = db;
}

int threads_for(int64_t cols) { return cols >= 2048 ? 512 : (cols >= 512 ? 256 : 128); }

}  // namespace

int add_norm_forward(const AddNormForwardParams& p, void* stream) {
  return dispatch_dtype(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    add_norm_forward_kernel<T><<<static_cast<unsigned>(p.rows), threads_for(p.cols), 0, static_cast<cudaStream_t>(stream)>>>(
        p.rms, static_cast<const T*>(p.x), static_cast<const T*>(p.residual), static_cast<const T*>(p.weight),
        static_cast<const T*>(p.bias), static_cast<T*>(p.h), static_cast<T*>(p.y), p.mean, p.rstd, p.cols, p.eps);
    return static_cast<int>(cudaGetLastError());
  });
}

int add_norm_backward(const AddNormBackwardParams& p, void* stream) {
  return dispatch_dtype(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    auto s = static_cast<cudaStream_t>(stream);
    add_norm_backward_rows<T><<<static_cast<unsigned>(p.rows), threads_for(p.cols), 0, s>>>(
        p.rms, static_cast<const T*>(p.dy), static_cast<const T*>(p.dh_in), static_cast<const T*>(p.h),
        static_cast<const T*>(p.weight), p.mean, p.rstd, static_cast<T*>(p.dh), p.cols);
    int code = static_cast<int>(cudaGetLastError());
    if (code != 0) return code;
    const int64_t per_split = (p.rows + p.splits - 1) / p.splits;
    dim3 grid(static_cast<unsigned>((p.cols + 255) / 256), static_cast<unsigned>(p.splits));
    add_norm_backward_columns<T><<<grid, 256, 0, s>>>(p.rms, static_cast<const T*>(p.dy), static_cast<const T*>(p.h),
                                                      p.mean, p.rstd, p.dweight_partial, p.dbias_partial, p.rows,
                                                      p.cols, per_split);
    return static_cast<int>(cudaGetLastError());
  });
}

const char* error_string(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

}  // namespace phi::cuda
