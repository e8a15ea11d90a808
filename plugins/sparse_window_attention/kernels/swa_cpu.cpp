// CPU SparseWindowAttention: one query row at a time, keys gathered once per row and shared by
// all heads, online softmax in float32. Scratch is O(S^2 + Dh) per thread.
#include "swa_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

namespace span_deploy {

namespace {

inline float to_float(float x) { return x; }

inline float to_float(SwaHalf h) {
    const uint32_t sign = uint32_t(h.bits & 0x8000u) << 16;
    const uint32_t exp = (h.bits >> 10) & 0x1fu;
    uint32_t mant = h.bits & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);  // inf / nan
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {  // subnormal: normalise
        uint32_t e = 113;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            --e;
        }
        bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

// float -> binary16, round to nearest even (same as __float2half_rn).
inline SwaHalf to_half(float f) {
    uint32_t x;
    std::memcpy(&x, &f, sizeof x);
    const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return {uint16_t(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u))};
    if (ax >= 0x477ff000u) return {uint16_t(sign | 0x7c00u)};  // rounds past 65504
    if (ax < 0x38800000u) {                                   // below the smallest normal half
        if (ax < 0x33000000u) return {sign};                  // below half the smallest subnormal
        const uint32_t e = ax >> 23;
        const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126 - e;  // 14..24
        uint32_t h = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1);
        const uint32_t halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (h & 1u))) ++h;
        return {uint16_t(sign | h)};
    }
    uint32_t h = ((ax - 0x38000000u) >> 13);
    const uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return {uint16_t(sign | h)};
}

inline void store(float* dst, float x) { *dst = x; }
inline void store(SwaHalf* dst, float x) { *dst = to_half(x); }

// Candidate keys of row i: key rows and their bias offsets inside one head's (2S-1)^2 table.
int gather_keys(const SwaParams& p, int64_t i, int32_t* keys, int32_t* boff) {
    const int32_t S = p.window;
    const int64_t slots = int64_t(S) * S;
    const int32_t side = 2 * S - 1;
    const int64_t n = p.n;
    int count = 0;
    const int64_t pa = p.pos_a[i];
    if (pa < 0 || pa >= p.num_win_a * slots) return 0;
    const int64_t wa = pa / slots;
    const bool self_ok = i >= 1 && i <= n - 2;
    auto add_window = [&](const int32_t* win, int64_t w, int64_t s, bool from_b) {
        const int32_t sr = int32_t(s / S), sc = int32_t(s % S);
        for (int64_t t = 0; t < slots; ++t) {
            const int32_t j = win[w * slots + t];
            if (j < 0 || j >= n) continue;
            if (!from_b && j == i && !self_ok) continue;
            if (from_b) {
                const int64_t pj = p.pos_a[j];
                if (pj < 0 || pj >= p.num_win_a * slots || pj / slots == wa) continue;
            }
            const int32_t tr = int32_t(t / S), tc = int32_t(t % S);
            keys[count] = j;
            boff[count] = (tr - sr + S - 1) * side + (tc - sc + S - 1);
            ++count;
        }
    };
    add_window(p.win_a, wa, pa % slots, false);
    if (p.mode == 1) {
        const int64_t pb = p.pos_b[i];
        if (pb >= 0 && pb < p.num_win_b * slots) add_window(p.win_b, pb / slots, pb % slots, true);
    }
    return count;
}

template <typename T>
void forward_rows(const SwaParams& p, const T* q, const T* k, const T* v, T* out, int64_t row_begin,
                  int64_t row_end) {
    const int64_t slots = int64_t(p.window) * p.window;
    const int32_t H = p.num_heads, Dh = p.head_dim;
    const int64_t C = int64_t(H) * Dh;
    const int64_t bias_head = int64_t(2 * p.window - 1) * (2 * p.window - 1);
    std::vector<int32_t> keys(2 * slots), boff(2 * slots);
    std::vector<float> qh(Dh), acc(Dh);

    for (int64_t i = row_begin; i < row_end; ++i) {
        const int count = gather_keys(p, i, keys.data(), boff.data());
        for (int32_t h = 0; h < H; ++h) {
            const int64_t col = int64_t(h) * Dh;
            T* o = out + i * C + col;
            if (count == 0) {  // no candidate key: exact zeros, never NaN
                for (int32_t d = 0; d < Dh; ++d) store(o + d, 0.f);
                continue;
            }
            for (int32_t d = 0; d < Dh; ++d) qh[d] = to_float(q[i * C + col + d]);
            std::fill(acc.begin(), acc.end(), 0.f);
            float m = -std::numeric_limits<float>::infinity(), l = 0.f;
            const float* bias = p.bias + h * bias_head;
            for (int c = 0; c < count; ++c) {
                const T* kj = k + int64_t(keys[c]) * C + col;
                float dot = 0.f;
                for (int32_t d = 0; d < Dh; ++d) dot += qh[d] * to_float(kj[d]);
                const float s = p.scale * dot + bias[boff[c]];
                if (s > m) {  // new running max: rescale what was accumulated so far
                    const float corr = std::exp(m - s);
                    l *= corr;
                    for (int32_t d = 0; d < Dh; ++d) acc[d] *= corr;
                    m = s;
                }
                // a -inf score (a -inf bias entry) is a masked key: weight 0, also while m is still -inf
                const float w = s == -std::numeric_limits<float>::infinity() ? 0.f : std::exp(s - m);
                l += w;
                const T* vj = v + int64_t(keys[c]) * C + col;
                for (int32_t d = 0; d < Dh; ++d) acc[d] += w * to_float(vj[d]);
            }
            const float inv = l > 0.f ? 1.f / l : 0.f;  // every key masked: zeros
            for (int32_t d = 0; d < Dh; ++d) store(o + d, acc[d] * inv);
        }
    }
}

template <typename T>
void forward_threads(const SwaParams& p, const T* q, const T* k, const T* v, T* out, int num_threads) {
    if (num_threads <= 0) num_threads = int(std::max(1u, std::thread::hardware_concurrency()));
    // Small inputs are not worth a thread start.
    const int64_t min_rows_per_thread = 64;
    num_threads = int(std::min<int64_t>(num_threads, std::max<int64_t>(1, p.n / min_rows_per_thread)));
    if (num_threads == 1) {
        forward_rows(p, q, k, v, out, 0, p.n);
        return;
    }
    std::vector<std::thread> pool;
    pool.reserve(num_threads);
    const int64_t chunk = (p.n + num_threads - 1) / num_threads;
    for (int t = 0; t < num_threads; ++t) {
        const int64_t b = t * chunk, e = std::min(p.n, b + chunk);
        if (b < e) pool.emplace_back([=, &p] { forward_rows(p, q, k, v, out, b, e); });
    }
    for (auto& th : pool) th.join();
}

}  // namespace

void swa_forward_cpu_rows(const SwaParams& p, const float* q, const float* k, const float* v, float* out,
                          int64_t row_begin, int64_t row_end) {
    forward_rows(p, q, k, v, out, row_begin, row_end);
}

void swa_forward_cpu_rows(const SwaParams& p, const SwaHalf* q, const SwaHalf* k, const SwaHalf* v, SwaHalf* out,
                          int64_t row_begin, int64_t row_end) {
    forward_rows(p, q, k, v, out, row_begin, row_end);
}

void swa_forward_cpu(const SwaParams& p, const float* q, const float* k, const float* v, float* out,
                     int num_threads) {
    forward_threads(p, q, k, v, out, num_threads);
}

void swa_forward_cpu(const SwaParams& p, const SwaHalf* q, const SwaHalf* k, const SwaHalf* v, SwaHalf* out,
                     int num_threads) {
    forward_threads(p, q, k, v, out, num_threads);
}

}  // namespace span_deploy
