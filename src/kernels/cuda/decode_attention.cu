// Decode attention over a KV cache, split along the key axis (flash-decoding).
// Grid (B * Hq * Tq, splits), 128 threads. A block owns one query row and one key chunk: it walks
// the chunk in tiles of 128 keys, one key per thread for the q.k dot product (16-byte loads of the
// key row), keeps a running max and sum (online softmax) in float32, and accumulates p * V with one
// thread per head dimension (coalesced rows of V). Each split writes its unnormalised output with
// its max and sum; a combine kernel rescales and sums the splits. GQA: query head h reads kv head
// h / (Hq / Hkv). Paged caches: each thread resolves its key's row through the page table and the
// tile's rows are kept in shared memory for the P V pass. Causal among the Tq new queries: query t sits at key_lengths[b] - Tq + t; with a
// sliding window it sees only the last `window` keys up to itself (chunks before them are skipped).
// Limits: D <= 128 and a multiple of 8; bf16 / f16 / float32.
#include <cfloat>

#include "kernels/cuda/common.cuh"

namespace phi::cuda {
namespace {

constexpr int kThreads = 128;

template <typename T>
__global__ void decode_split_kernel(AttentionShape s, const T* __restrict__ q, const T* __restrict__ k,
                                    const T* __restrict__ v, const int64_t* __restrict__ key_lengths,
                                    PageTable paging, float scale, int64_t splits, float* __restrict__ o_partial, float* __restrict__ m_partial,
                                    float* __restrict__ l_partial) {
  __shared__ float q_s[256];
  __shared__ float p_s[kThreads];
  __shared__ int64_t row_s[kThreads];  // the tile's key rows (paged: through the page table)
  __shared__ float scratch[33];
  const int64_t row = blockIdx.x;  // (b, h, t)
  const int64_t t = row % s.Tq, h = (row / s.Tq) % s.Hq, b = row / (s.Tq * s.Hq);
  const int64_t split = blockIdx.y;
  const int64_t kvh = h / (s.Hq / s.Hkv);
  const int64_t len = key_lengths ? key_lengths[b] : s.Tk;
  const int64_t visible = len - s.Tq + t + 1;  // keys [first, visible)
  const int64_t first = s.window > 0 ? max(static_cast<int64_t>(0), visible - s.window) : 0;
  const int64_t chunk = (s.Tk + splits - 1) / splits;
  const int64_t begin = max(split * chunk, first);
  const int64_t end = min(split * chunk + chunk, visible);  // this split's keys only
  const T* qr = q + b * s.q_sb + h * s.q_sh + t * s.q_st;
  for (int64_t d = threadIdx.x; d < s.D; d += blockDim.x) q_s[d] = to_float(qr[d]) * scale;
  __syncthreads();
  const int32_t* page_row = paging.pages ? paging.pages + b * paging.stride : nullptr;
  const T* kb = k + b * s.k_sb + kvh * s.k_sh;
  const T* vb = v + b * s.v_sb + kvh * s.v_sh;
  float m = -FLT_MAX, l = 0.f, acc = 0.f;  // acc: this thread's output dimension (threadIdx.x < D)
  bool any = false;
  for (int64_t tile = begin; tile < end; tile += kThreads) {
    const int64_t j = tile + threadIdx.x;
    float score = -FLT_MAX;
    if (j < end) {
      const int64_t key_row =
          page_row ? static_cast<int64_t>(page_row[j / paging.page_size]) * paging.page_size + j % paging.page_size : j;
      row_s[threadIdx.x] = key_row;
      const T* kr = kb + key_row * s.k_st;
      float dot = 0.f;
      for (int64_t d = 0; d < s.D; d += 8) {
        const uint4 packed = *reinterpret_cast<const uint4*>(kr + d);
        const T* e = reinterpret_cast<const T*>(&packed);
        if constexpr (sizeof(T) == 2) {
#pragma unroll
          for (int i = 0; i < 8; ++i) dot += to_float(e[i]) * q_s[d + i];
        } else {
#pragma unroll
          for (int i = 0; i < 4; ++i) dot += to_float(e[i]) * q_s[d + i];
          const uint4 packed2 = *reinterpret_cast<const uint4*>(kr + d + 4);
          const T* e2 = reinterpret_cast<const T*>(&packed2);
#pragma unroll
          for (int i = 0; i < 4; ++i) dot += to_float(e2[i]) * q_s[d + 4 + i];
        }
      }
      score = dot;
    }
    // Tile max over the block.
    float tile_max = warp_max(score);
    __syncthreads();
    if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = tile_max;
    __syncthreads();
    tile_max = fmaxf(fmaxf(scratch[0], scratch[1]), fmaxf(scratch[2], scratch[3]));
    const float m_new = fmaxf(m, tile_max);
    const float p = j < end ? __expf(score - m_new) : 0.f;
    p_s[threadIdx.x] = p;
    const float tile_sum = block_sum(p, scratch);  // also orders the p_s writes before the reads below
    const float alpha = any ? __expf(m - m_new) : 0.f;
    l = l * alpha + tile_sum;
    m = m_new;
    any = true;
    if (threadIdx.x < s.D) {
      float part = 0.f;
      const int64_t n = end - tile < kThreads ? end - tile : static_cast<int64_t>(kThreads);
      for (int64_t i = 0; i < n; ++i) part += p_s[i] * to_float(vb[row_s[i] * s.v_st + threadIdx.x]);
      acc = acc * alpha + part;
    }
    __syncthreads();
  }
  const int64_t slot = split * (s.B * s.Hq * s.Tq) + row;
  if (threadIdx.x < s.D) o_partial[slot * s.D + threadIdx.x] = any ? acc : 0.f;
  if (threadIdx.x == 0) {
    m_partial[slot] = any ? m : -FLT_MAX;
    l_partial[slot] = any ? l : 0.f;
  }
}

template <typename T>
__global__ void decode_combine_kernel(AttentionShape s, int64_t splits, const float* __restrict__ o_partial,
                                      const float* __restrict__ m_partial, const float* __restrict__ l_partial,
                                      T* __restrict__ o) {
  const int64_t row = blockIdx.x;
  const int64_t rows = s.B * s.Hq * s.Tq;
  float m = -FLT_MAX;
  for (int64_t i = 0; i < splits; ++i) m = fmaxf(m, m_partial[i * rows + row]);
  float l = 0.f;
  for (int64_t i = 0; i < splits; ++i) {
    const float li = l_partial[i * rows + row];
    if (li > 0.f) l += li * __expf(m_partial[i * rows + row] - m);
  }
  for (int64_t d = threadIdx.x; d < s.D; d += blockDim.x) {
    float out = 0.f;
    for (int64_t i = 0; i < splits; ++i) {
      const float li = l_partial[i * rows + row];
      if (li > 0.f) out += o_partial[(i * rows + row) * s.D + d] * __expf(m_partial[i * rows + row] - m);
    }
    o[row * s.D + d] = from_float<T>(l > 0.f ? out / l : 0.f);
  }
}

}  // namespace

int decode_attention(const DecodeAttentionParams& p, void* stream) {
  const AttentionShape& s = p.shape;
  if (p.paging.pages != nullptr && p.paging.page_size <= 0) return static_cast<int>(cudaErrorInvalidValue);
  if (s.D > kDecodeMaxHeadDim || s.D % 8 != 0) return static_cast<int>(cudaErrorInvalidValue);
  return dispatch_dtype(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    auto st = static_cast<cudaStream_t>(stream);
    const int64_t rows = s.B * s.Hq * s.Tq;
    if (rows == 0) return 0;
    dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(p.splits));
    decode_split_kernel<T><<<grid, kThreads, 0, st>>>(s, static_cast<const T*>(p.q), static_cast<const T*>(p.k),
                                                      static_cast<const T*>(p.v), p.key_lengths, p.paging, p.scale,
                                                      p.splits, p.o_partial, p.m_partial, p.l_partial);
    int code = static_cast<int>(cudaGetLastError());
    if (code != 0) return code;
    decode_combine_kernel<T><<<static_cast<unsigned>(rows), 128, 0, st>>>(s, p.splits, p.o_partial, p.m_partial,
                                                                          p.l_partial, static_cast<T*>(p.o));
    return static_cast<int>(cudaGetLastError());
  });
}

}  // namespace phi::cuda
