// CUDA SparseWindowAttention, reference kernel. One thread block per query row: the block
// gathers the row's candidate keys (and their bias offsets) into shared memory once, then a group
// of G lanes per head walks them with an online softmax, each lane holding DPL of the head's Dh
// dims, so loads of q/k/v rows are coalesced across the group. float32 math for both dtypes; no
// workspace.
// swa_forward_cuda dispatches to the window kernel (swa_cuda_window.cu) by default, to this one
// with SPAN_SWA_CUDA_KERNEL=reference (read once per process).
#include "swa_kernels.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace span_deploy {

namespace {

constexpr int kMaxThreads = 256;

__device__ __forceinline__ float load(const float* p) { return __ldg(p); }
__device__ __forceinline__ float load(const __half* p) { return __half2float(__ldg(p)); }
__device__ __forceinline__ void store(float* p, float x) { *p = x; }
__device__ __forceinline__ void store(__half* p, float x) { *p = __float2half_rn(x); }

// Fills keys/boff for the row's slots in slot order (A then B); rejected slots get key -1.
__device__ void gather_keys(const SwaParams& p, int64_t i, int32_t* keys, int32_t* boff) {
    const int32_t S = p.window;
    const int32_t slots = S * S;
    const int32_t side = 2 * S - 1;
    const int64_t pa = p.pos_a[i];
    const bool a_ok = pa >= 0 && pa < p.num_win_a * slots;
    const int64_t wa = a_ok ? pa / slots : -1;
    const bool self_ok = i >= 1 && i <= p.n - 2;
    int64_t pb = -1;
    if (p.mode == 1) pb = p.pos_b[i];
    const bool b_ok = a_ok && p.mode == 1 && pb >= 0 && pb < p.num_win_b * slots;

    for (int t = threadIdx.x; t < 2 * slots; t += blockDim.x) {
        const bool from_b = t >= slots;
        const int32_t slot = from_b ? t - slots : t;
        int32_t j = -1;
        int64_t s = 0;
        if (!from_b && a_ok) {
            j = p.win_a[wa * slots + slot];
            s = pa % slots;
            if (j >= p.n || (j == i && !self_ok)) j = -1;
        } else if (from_b && b_ok) {
            j = p.win_b[(pb / slots) * slots + slot];
            s = pb % slots;
            if (j >= p.n) {
                j = -1;
            } else if (j >= 0) {
                const int64_t pj = p.pos_a[j];
                if (pj < 0 || pj >= p.num_win_a * slots || pj / slots == wa) j = -1;
            }
        }
        keys[t] = j < 0 ? -1 : j;
        const int32_t sr = int32_t(s / S), sc = int32_t(s % S);
        boff[t] = (slot / S - sr + S - 1) * side + (slot % S - sc + S - 1);
    }
}

template <typename T, int G, int DPL>
__global__ void __launch_bounds__(kMaxThreads) swa_kernel(SwaParams p, const T* __restrict__ q,
                                                          const T* __restrict__ k, const T* __restrict__ v,
                                                          T* __restrict__ out) {
    extern __shared__ int32_t smem[];
    const int32_t total = 2 * p.window * p.window;
    int32_t* keys = smem;
    int32_t* boff = smem + total;
    const int64_t i = blockIdx.x;
    gather_keys(p, i, keys, boff);
    __syncthreads();

    const int32_t H = p.num_heads, Dh = p.head_dim;
    const int64_t C = int64_t(H) * Dh;
    const int32_t bias_head = (2 * p.window - 1) * (2 * p.window - 1);
    const int lane = threadIdx.x % G;
    const int group = threadIdx.x / G;
    const int groups = blockDim.x / G;

    // Every group runs the same number of head iterations so whole warps stay converged for the
    // shuffles; a group past the last head computes on head H-1 and does not store.
    for (int32_t h0 = 0; h0 < H; h0 += groups) {
        const bool active = h0 + group < H;
        const int32_t h = active ? h0 + group : H - 1;
        const int64_t col = int64_t(h) * Dh;
        float qv[DPL], acc[DPL];
#pragma unroll
        for (int e = 0; e < DPL; ++e) {
            const int d = lane + e * G;
            qv[e] = d < Dh ? load(q + i * C + col + d) : 0.f;
            acc[e] = 0.f;
        }
        float m = -INFINITY, l = 0.f;
        const float* bias = p.bias + int64_t(h) * bias_head;
        for (int32_t t = 0; t < total; ++t) {
            const int32_t j = keys[t];
            if (j < 0) continue;  // uniform across the block: same shared entry for every lane
            const T* kj = k + int64_t(j) * C + col;
            float dot = 0.f;
#pragma unroll
            for (int e = 0; e < DPL; ++e) {
                const int d = lane + e * G;
                if (d < Dh) dot += qv[e] * load(kj + d);
            }
#pragma unroll
            for (int off = G / 2; off > 0; off /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, off);
            const float s = p.scale * dot + __ldg(bias + boff[t]);
            if (s > m) {  // new running max: rescale what was accumulated so far
                const float corr = expf(m - s);
                l *= corr;
#pragma unroll
                for (int e = 0; e < DPL; ++e) acc[e] *= corr;
                m = s;
            }
            // a -inf score is a masked key: weight 0 (exp(-inf - -inf) would be NaN while m is -inf);
            // a ternary, not a branch: every lane stays on the path to the next __shfl_xor_sync
            const float w = s == -INFINITY ? 0.f : expf(s - m);
            l += w;
            const T* vj = v + int64_t(j) * C + col;
#pragma unroll
            for (int e = 0; e < DPL; ++e) {
                const int d = lane + e * G;
                if (d < Dh) acc[e] += w * load(vj + d);
            }
        }
        if (active) {
            const float inv = l > 0.f ? 1.f / l : 0.f;  // no candidate key: exact zeros
#pragma unroll
            for (int e = 0; e < DPL; ++e) {
                const int d = lane + e * G;
                if (d < Dh) store(out + i * C + col + d, acc[e] * inv);
            }
        }
    }
}

template <typename T, int G, int DPL>
cudaError_t launch(const SwaParams& p, const T* q, const T* k, const T* v, T* out, cudaStream_t stream) {
    int threads = p.num_heads * G;
    threads = ((threads + 31) / 32) * 32;  // whole warps: the shuffles use the full mask
    if (threads > kMaxThreads) threads = kMaxThreads;
    const size_t smem = size_t(4) * p.window * p.window * sizeof(int32_t);
    swa_kernel<T, G, DPL><<<unsigned(p.n), threads, smem, stream>>>(p, q, k, v, out);
    // cudaGetLastError, not cudaPeekAtLastError: a launch error must be cleared once reported, or
    // every later enqueue on this thread would fail with it too
    return cudaGetLastError();
}

// Lanes per head: G = Dh up to 32 (power of two), DPL = ceil(Dh / 32) dims per lane beyond that.
template <typename T>
cudaError_t dispatch(const SwaParams& p, const T* q, const T* k, const T* v, T* out, cudaStream_t stream) {
    const int dh = p.head_dim;
    if (dh <= 4) return launch<T, 4, 1>(p, q, k, v, out, stream);
    if (dh <= 8) return launch<T, 8, 1>(p, q, k, v, out, stream);
    if (dh <= 16) return launch<T, 16, 1>(p, q, k, v, out, stream);
    if (dh <= 32) return launch<T, 32, 1>(p, q, k, v, out, stream);
    if (dh <= 64) return launch<T, 32, 2>(p, q, k, v, out, stream);
    if (dh <= 128) return launch<T, 32, 4>(p, q, k, v, out, stream);
    if (dh <= 256) return launch<T, 32, 8>(p, q, k, v, out, stream);
    return cudaErrorInvalidValue;
}

template <typename T>
int forward(const SwaParams& p, const T* q, const T* k, const T* v, T* out, cudaStream_t stream) {
    if (!swa_check_params(p).empty() || !swa_check_cuda_limits(p).empty()) return int(cudaErrorInvalidValue);
    if (p.n == 0) return int(cudaSuccess);
    return int(dispatch(p, q, k, v, out, stream));
}

// SPAN_SWA_CUDA_KERNEL, read once per process: unset / "auto" / "window" -> the window kernel
// (which itself runs the reference kernel for a call outside its limits), "reference".
bool use_reference_kernel() {
    static const bool reference = [] {
        const char* env = std::getenv("SPAN_SWA_CUDA_KERNEL");
        if (!env || !*env || !std::strcmp(env, "auto") || !std::strcmp(env, "window")) return false;
        if (!std::strcmp(env, "reference")) return true;
        std::fprintf(stderr,
                     "span_deploy: SPAN_SWA_CUDA_KERNEL=%s is not known (known: auto, window, reference); "
                     "using auto (window)\n",
                     env);
        return false;
    }();
    return reference;
}

}  // namespace

const char* swa_cuda_kernel_name() { return use_reference_kernel() ? "reference" : "window"; }

int swa_forward_cuda_reference(const SwaParams& p, const float* q, const float* k, const float* v, float* out,
                               cudaStream_t stream) {
    return forward(p, q, k, v, out, stream);
}

int swa_forward_cuda_reference(const SwaParams& p, const SwaHalf* q, const SwaHalf* k, const SwaHalf* v,
                               SwaHalf* out, cudaStream_t stream) {
    static_assert(sizeof(SwaHalf) == sizeof(__half) && alignof(SwaHalf) == alignof(__half), "SwaHalf is __half");
    return forward(p, reinterpret_cast<const __half*>(q), reinterpret_cast<const __half*>(k),
                   reinterpret_cast<const __half*>(v), reinterpret_cast<__half*>(out), stream);
}

int swa_forward_cuda(const SwaParams& p, const float* q, const float* k, const float* v, float* out,
                     cudaStream_t stream) {
    return use_reference_kernel() ? swa_forward_cuda_reference(p, q, k, v, out, stream)
                                  : swa_forward_cuda_window(p, q, k, v, out, stream);
}

int swa_forward_cuda(const SwaParams& p, const SwaHalf* q, const SwaHalf* k, const SwaHalf* v, SwaHalf* out,
                     cudaStream_t stream) {
    return use_reference_kernel() ? swa_forward_cuda_reference(p, q, k, v, out, stream)
                                  : swa_forward_cuda_window(p, q, k, v, out, stream);
}

const char* swa_cuda_error_string(int status) { return cudaGetErrorString(cudaError_t(status)); }

}  // namespace span_deploy
