// CPU SparseWindowAttention (contract: ../op.yaml, ../README.md). Two kernels, one contract:
//
// * the window kernel (default, behind swa_forward_cpu / swa_forward_cpu_rows): the rows of the
//   range are grouped by their A-window (found through the window's own slots); per group the A
//   keys (slot order) are listed once, per B-window of its queries the B keys outside the
//   A-window (slot order), and the queries sharing both run in tiles of 3 (or 4, 2, 1) through a
//   head kernel: scores = scale * q.k + bias with the dot products vectorised over head_dim and
//   reduced for 16 / 8 / 4 keys at a time, each key chunk loaded once for the whole tile (3
//   queries, or pairs); a two-pass float32 softmax (max, vectorised exp, sum); P.V accumulated
//   with FMAs in key order, each value chunk loaded once for the tile. float32 key / value rows are
//   read in place, float16 ones widened once per group into aligned scratch. ISA variants:
//   AVX-512F and AVX2 + FMA (x86; picked at run time with __builtin_cpu_supports, compiled with
//   target attributes, so no build flags), NEON (aarch64) and portable C++. Scratch is per thread
//   and kept between calls (front ends call with small row ranges).
// * the reference kernel (swa_forward_cpu_reference_rows): one query row at a time, keys gathered
//   once per row and shared by all heads, online softmax in float32, scalar loops.
//
// SPAN_SWA_CPU_KERNEL (read once per process) selects the kernel for A/B runs: unset / "auto"
// (best for this CPU), "reference", "generic", "avx2", "avx512", "neon"; a variant this CPU or
// build lacks falls back to "auto" with one line on stderr.
//
// Both kernels: a row's result depends on that row (and the tables) only, never on the row range,
// the thread count or the tile it shares (one operation order per query: the 16 / 8 / 4-key
// reductions associate alike), so any split gives bit-identical output; a query without candidate
// keys, or whose scores are all -inf, gets exact +0; out-of-range table entries are empty slots
// (never read out of bounds). The two kernels agree to float32 rounding (exp, summation order).
#include "swa_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SWA_X86 1
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_ps() through: a false -Wuninitialized in the
// header (GCC bug 105593), silenced for the header's own lines.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#else
#define SWA_X86 0
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

namespace span_deploy {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Full unrolling of the fixed-trip loops over register arrays below, so that the compiler keeps
// the arrays in registers (GCC 12 otherwise stores accumulators to the stack on every iteration).
#if defined(__clang__)
#define SWA_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define SWA_UNROLL _Pragma("GCC unroll 16")
#else
#define SWA_UNROLL
#endif

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

// =============================================================================================
// Reference kernel: one query row at a time.
// =============================================================================================

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
void reference_rows(const SwaParams& p, const T* q, const T* k, const T* v, T* out, int64_t row_begin,
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

// =============================================================================================
// Window kernel: the per-head tile kernels (one per ISA) and the window driver.
// =============================================================================================

constexpr int kTile = 4;       // queries sharing one key list in one head-kernel call
constexpr int kKeyBlock = 16;  // key lists are padded to a multiple of this (the widest block)
inline int64_t padded(int64_t n) { return (n + kKeyBlock - 1) / kKeyBlock * kKeyBlock; }

// One head of a tile: m queries that share one key list (nk >= 1 keys).
struct TileArgs {
    int m = 0;                    // queries, 1..kTile
    int nk = 0;                   // keys, >= 1
    int dh = 0;                   // head_dim
    int64_t col = 0;              // this head's first column in the key / value rows
    float scale = 1.f;
    const float* const* kp = nullptr;  // key rows (column 0), padded to a multiple of kKeyBlock
    const float* const* vp = nullptr;  // value rows (column 0), nk entries used
    const float* bias_h = nullptr;     // this head's (2S-1)^2 bias table
    const float* q[kTile] = {};        // query rows at col (float32)
    float* o[kTile] = {};              // output rows at col (float32)
    const int32_t* boff[kTile] = {};   // per query: bias offsets of the keys (padded with 0)
    float* w[kTile] = {};              // per query: scratch for the scores / weights (padded length)
};

// Kernel of one ISA: the head kernel and the float16 row conversions.
struct IsaOps {
    const char* name;
    void (*head)(const TileArgs&);
    void (*widen)(const SwaHalf*, float*, int64_t);   // binary16 -> float32, n values
    void (*narrow)(const float*, SwaHalf*, int64_t);  // float32 -> binary16, round to nearest even
};

// ---------------------------------------------------------------------------- portable C++
namespace generic {

inline float dot(const float* a, const float* b, int n) {
    float s[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};  // 8 independent sums: vectorisable
    int d = 0;
    for (; d + 8 <= n; d += 8)
        for (int u = 0; u < 8; ++u) s[u] += a[d + u] * b[d + u];
    float r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; d < n; ++d) r += a[d] * b[d];
    return r;
}

void head(const TileArgs& a) {
    const int dh = a.dh;
    float inv[kTile];
    int live[kTile];
    int nlive = 0;
    for (int t = 0; t < a.m; ++t) {
        float* s = a.w[t];
        float mx = kNegInf;
        for (int j = 0; j < a.nk; ++j) {
            const float sc = a.scale * dot(a.q[t], a.kp[j] + a.col, dh) + a.bias_h[a.boff[t][j]];
            s[j] = sc;
            if (sc > mx) mx = sc;
        }
        if (mx == kNegInf) {  // every key masked: zeros
            std::fill(a.o[t], a.o[t] + dh, 0.f);
            continue;
        }
        float l = 0.f;
        for (int j = 0; j < a.nk; ++j) {
            const float x = s[j] == kNegInf ? 0.f : std::exp(s[j] - mx);
            s[j] = x;
            l += x;
        }
        inv[nlive] = 1.f / l;
        live[nlive++] = t;
    }
    for (int u = 0; u < nlive; ++u) {
        const int t = live[u];
        float* o = a.o[t];
        const float* s = a.w[t];
        std::fill(o, o + dh, 0.f);
        for (int j = 0; j < a.nk; ++j) {
            const float x = s[j];
            const float* vr = a.vp[j] + a.col;
            for (int d = 0; d < dh; ++d) o[d] += x * vr[d];
        }
        for (int d = 0; d < dh; ++d) o[d] *= inv[u];
    }
}

void widen(const SwaHalf* src, float* dst, int64_t n) {
    for (int64_t u = 0; u < n; ++u) dst[u] = to_float(src[u]);
}

void narrow(const float* src, SwaHalf* dst, int64_t n) {
    for (int64_t u = 0; u < n; ++u) dst[u] = to_half(src[u]);
}

const IsaOps kOps = {"generic", head, widen, narrow};

}  // namespace generic

// Cephes expf on [-ln2/2, ln2/2] after n = round(x log2 e): ~1 ulp. The SIMD versions below take
// x <= 0 (x = score - max) and return exactly 0 below -87.3365 (where e^x is subnormal) and
// for -inf; NaN stays NaN.
constexpr float kExpLo = -87.33654f;
constexpr float kExpHi = 88.3762626647949f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kExpP0 = 1.9875691500e-4f;
constexpr float kExpP1 = 1.3981999507e-3f;
constexpr float kExpP2 = 8.3334519073e-3f;
constexpr float kExpP3 = 4.1665795894e-2f;
constexpr float kExpP4 = 1.6666665459e-1f;
constexpr float kExpP5 = 5.0000001201e-1f;

#if SWA_X86
// ---------------------------------------------------------------------------- AVX-512F
#define SWA_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#define SWA_AVX512_INLINE __attribute__((target("avx512f,avx2,fma,f16c"), always_inline)) inline
namespace avx512 {

// Horizontal-sum tree: r1 / r2 / r3 combine partial-sum vectors so that tree16(a0..a15) has
// lane j = sum of the lanes of a_j.
SWA_AVX512_INLINE __m512 r1(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
}
SWA_AVX512_INLINE __m512 r2(__m512 a, __m512 b) {
    const __m512d x = _mm512_castps_pd(a), y = _mm512_castps_pd(b);
    return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
}
SWA_AVX512_INLINE __m512 r3(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}
SWA_AVX512_INLINE __m512 tree16(const __m512* a) {
    const __m512 x0 = r2(r1(a[0], a[1]), r1(a[2], a[3])), x1 = r2(r1(a[4], a[5]), r1(a[6], a[7]));
    const __m512 x2 = r2(r1(a[8], a[9]), r1(a[10], a[11])), x3 = r2(r1(a[12], a[13]), r1(a[14], a[15]));
    return r3(r3(x0, x1), r3(x2, x3));
}

SWA_AVX512_INLINE __m512 exp_neg(__m512 x) {
    const __m512 lo = _mm512_set1_ps(kExpLo);
    const __mmask16 keep = _mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ);  // x >= lo, or NaN
    x = _mm512_max_ps(lo, x);                                        // (NaN x stays NaN)
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
    __m512 y = _mm512_set1_ps(kExpP0);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpP1));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpP2));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpP3));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpP4));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpP5));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
    return _mm512_maskz_mov_ps(keep, _mm512_scalef_ps(y, n));
}

inline __mmask16 tail_mask(int rem) { return rem >= 16 ? __mmask16(0xffff) : __mmask16((1u << rem) - 1u); }

// Dot products of q with 16 key rows: `full` groups of 64 columns, then a last group of NC
// chunks of 16 columns, the last chunk loaded under mask `last`.
template <int NC>
SWA_AVX512_INLINE __m512 qk16(const float* q, const float* const* kp, int64_t col, int full, __mmask16 last) {
    __m512 acc[16];
    SWA_UNROLL
    for (int j = 0; j < 16; ++j) acc[j] = _mm512_setzero_ps();
    int64_t d = 0;
    for (int g = 0; g < full; ++g, d += 64) {
        const __m512 q0 = _mm512_loadu_ps(q + d), q1 = _mm512_loadu_ps(q + d + 16);
        const __m512 q2 = _mm512_loadu_ps(q + d + 32), q3 = _mm512_loadu_ps(q + d + 48);
        SWA_UNROLL
        for (int j = 0; j < 16; ++j) {
            const float* r = kp[j] + col + d;
            __m512 x = _mm512_fmadd_ps(q0, _mm512_loadu_ps(r), acc[j]);
            x = _mm512_fmadd_ps(q1, _mm512_loadu_ps(r + 16), x);
            x = _mm512_fmadd_ps(q2, _mm512_loadu_ps(r + 32), x);
            acc[j] = _mm512_fmadd_ps(q3, _mm512_loadu_ps(r + 48), x);
        }
    }
    __m512 qv[NC];
    SWA_UNROLL
    for (int c = 0; c + 1 < NC; ++c) qv[c] = _mm512_loadu_ps(q + d + 16 * c);
    qv[NC - 1] = _mm512_maskz_loadu_ps(last, q + d + 16 * (NC - 1));
    SWA_UNROLL
    for (int j = 0; j < 16; ++j) {
        const float* r = kp[j] + col + d;
        __m512 x = acc[j];
        SWA_UNROLL
        for (int c = 0; c + 1 < NC; ++c) x = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(r + 16 * c), x);
        acc[j] = _mm512_fmadd_ps(qv[NC - 1], _mm512_maskz_loadu_ps(last, r + 16 * (NC - 1)), x);
    }
    return tree16(acc);
}

// Scores of one query (all key blocks), stored in w; returns their max.
template <int NC>
SWA_AVX512 float scores(const TileArgs& a, int t, int full, __mmask16 last) {
    const __m512 scale = _mm512_set1_ps(a.scale), ninf = _mm512_set1_ps(kNegInf);
    __m512 mx = ninf;
    for (int b = 0; b < a.nk; b += 16) {
        const __m512 dot = qk16<NC>(a.q[t], a.kp + b, a.col, full, last);
        const __m512i idx = _mm512_loadu_si512(static_cast<const void*>(a.boff[t] + b));
        __m512 s = _mm512_fmadd_ps(scale, dot, _mm512_i32gather_ps(idx, a.bias_h, 4));
        s = _mm512_mask_mov_ps(ninf, tail_mask(a.nk - b), s);  // padding keys: -inf
        _mm512_storeu_ps(a.w[t] + b, s);
        mx = _mm512_max_ps(mx, s);
    }
    return _mm512_reduce_max_ps(mx);
}

SWA_AVX512_INLINE float hmax8(__m256 v) {
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}

// tree16 for 8 vectors: lane j of the result = sum of the lanes of a_j (j < 8).
SWA_AVX512_INLINE __m256 tree8(const __m512* a) {
    const __m512 y = r3(r2(r1(a[0], a[1]), r1(a[2], a[3])), r2(r1(a[4], a[5]), r1(a[6], a[7])));
    const __m512 z = _mm512_add_ps(y, _mm512_shuffle_f32x4(y, y, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_castps512_ps256(_mm512_shuffle_f32x4(z, z, _MM_SHUFFLE(2, 0, 2, 0)));
}

// Dot products of two queries with the same 8 key rows (each key chunk loaded once for both).
template <int NC>
SWA_AVX512_INLINE void qk8x2(const float* qa, const float* qb, const float* const* kp, int64_t col, int full,
                             __mmask16 last, __m256& da, __m256& db) {
    __m512 acc[16];  // [0, 8): query a, [8, 16): query b
    SWA_UNROLL
    for (int j = 0; j < 16; ++j) acc[j] = _mm512_setzero_ps();
    int64_t d = 0;
    for (int g = 0; g < full; ++g, d += 64) {
        __m512 xa[4], xb[4];
        SWA_UNROLL
        for (int c = 0; c < 4; ++c) {
            xa[c] = _mm512_loadu_ps(qa + d + 16 * c);
            xb[c] = _mm512_loadu_ps(qb + d + 16 * c);
        }
        SWA_UNROLL
        for (int j = 0; j < 8; ++j) {
            const float* r = kp[j] + col + d;
            SWA_UNROLL
            for (int c = 0; c < 4; ++c) {
                const __m512 kv = _mm512_loadu_ps(r + 16 * c);
                acc[j] = _mm512_fmadd_ps(xa[c], kv, acc[j]);
                acc[8 + j] = _mm512_fmadd_ps(xb[c], kv, acc[8 + j]);
            }
        }
    }
    __m512 xa[NC], xb[NC];
    SWA_UNROLL
    for (int c = 0; c + 1 < NC; ++c) {
        xa[c] = _mm512_loadu_ps(qa + d + 16 * c);
        xb[c] = _mm512_loadu_ps(qb + d + 16 * c);
    }
    xa[NC - 1] = _mm512_maskz_loadu_ps(last, qa + d + 16 * (NC - 1));
    xb[NC - 1] = _mm512_maskz_loadu_ps(last, qb + d + 16 * (NC - 1));
    SWA_UNROLL
    for (int j = 0; j < 8; ++j) {
        const float* r = kp[j] + col + d;
        SWA_UNROLL
        for (int c = 0; c < NC; ++c) {
            const __m512 kv = c + 1 < NC ? _mm512_loadu_ps(r + 16 * c) : _mm512_maskz_loadu_ps(last, r + 16 * c);
            acc[j] = _mm512_fmadd_ps(xa[c], kv, acc[j]);
            acc[8 + j] = _mm512_fmadd_ps(xb[c], kv, acc[8 + j]);
        }
    }
    da = tree8(acc);
    db = tree8(acc + 8);
}

// Scores of queries t and t + 1 (8 keys at a time), stored in w; their maxima in mx.
template <int NC>
SWA_AVX512 void scores2(const TileArgs& a, int t, int full, __mmask16 last, float* mx) {
    const __m256 scale = _mm256_set1_ps(a.scale), ninf = _mm256_set1_ps(kNegInf);
    __m256 ma = ninf, mb = ninf;
    const int nk = a.nk;
    for (int b = 0; b < nk; b += 8) {
        __m256 da, db;
        qk8x2<NC>(a.q[t], a.q[t + 1], a.kp + b, a.col, full, last, da, db);
        const __m256i ia = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.boff[t] + b));
        const __m256i ib = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.boff[t + 1] + b));
        __m256 sa = _mm256_fmadd_ps(scale, da, _mm256_i32gather_ps(a.bias_h, ia, 4));
        __m256 sb = _mm256_fmadd_ps(scale, db, _mm256_i32gather_ps(a.bias_h, ib, 4));
        if (nk - b < 8) {  // padding keys: -inf
            const __mmask8 keep = __mmask8((1u << (nk - b)) - 1u);
            sa = _mm512_castps512_ps256(_mm512_mask_mov_ps(_mm512_set1_ps(kNegInf), keep, _mm512_castps256_ps512(sa)));
            sb = _mm512_castps512_ps256(_mm512_mask_mov_ps(_mm512_set1_ps(kNegInf), keep, _mm512_castps256_ps512(sb)));
        }
        _mm256_storeu_ps(a.w[t] + b, sa);
        _mm256_storeu_ps(a.w[t + 1] + b, sb);
        ma = _mm256_max_ps(ma, sa);
        mb = _mm256_max_ps(mb, sb);
    }
    const int b8 = (nk + 7) / 8 * 8;
    if (b8 < int(padded(nk))) {  // the softmax reads whole 16-key blocks
        _mm256_storeu_ps(a.w[t] + b8, ninf);
        _mm256_storeu_ps(a.w[t + 1] + b8, ninf);
    }
    mx[0] = hmax8(ma);
    mx[1] = hmax8(mb);
}

// tree16 for 4 vectors: lane j of the result = sum of the lanes of a_j (j < 4). The same
// association as tree16 / tree8, so a query's scores do not depend on the kernel that made them.
SWA_AVX512_INLINE __m128 tree4(const __m512* a) {
    const __m512 x = r2(r1(a[0], a[1]), r1(a[2], a[3]));
    const __m512 y = _mm512_add_ps(x, _mm512_shuffle_f32x4(x, x, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_castps512_ps128(_mm512_add_ps(y, _mm512_shuffle_f32x4(y, y, _MM_SHUFFLE(1, 0, 3, 2))));
}

// Dot products of three queries with the same 4 key rows (each key chunk loaded once for all).
template <int NC>
SWA_AVX512_INLINE void qk4x3(const float* const* q, const __m512* x, const float* const* kp, int64_t col, int full,
                             __mmask16 last, __m128* dots) {
    __m512 acc[12];  // query t, key j: acc[4 t + j]
    SWA_UNROLL
    for (int u = 0; u < 12; ++u) acc[u] = _mm512_setzero_ps();
    int64_t d = 0;
    for (int g = 0; g < full; ++g, d += 64) {
        __m512 x[12];  // query t, chunk c: x[4 t + c]
        SWA_UNROLL
        for (int t = 0; t < 3; ++t)
            SWA_UNROLL
            for (int c = 0; c < 4; ++c) x[4 * t + c] = _mm512_loadu_ps(q[t] + d + 16 * c);
        SWA_UNROLL
        for (int j = 0; j < 4; ++j) {
            const float* r = kp[j] + col + d;
            SWA_UNROLL
            for (int c = 0; c < 4; ++c) {
                const __m512 kv = _mm512_loadu_ps(r + 16 * c);
                SWA_UNROLL
                for (int t = 0; t < 3; ++t) acc[4 * t + j] = _mm512_fmadd_ps(x[4 * t + c], kv, acc[4 * t + j]);
            }
        }
    }
    SWA_UNROLL
    for (int j = 0; j < 4; ++j) {
        const float* r = kp[j] + col + d;
        SWA_UNROLL
        for (int c = 0; c < NC; ++c) {
            const __m512 kv = c + 1 < NC ? _mm512_loadu_ps(r + 16 * c) : _mm512_maskz_loadu_ps(last, r + 16 * c);
            SWA_UNROLL
            for (int t = 0; t < 3; ++t) acc[4 * t + j] = _mm512_fmadd_ps(x[NC * t + c], kv, acc[4 * t + j]);
        }
    }
    SWA_UNROLL
    for (int t = 0; t < 3; ++t) dots[t] = tree4(acc + 4 * t);
}

// Scores of queries t, t + 1, t + 2 (4 keys at a time), stored in w; their maxima in mx.
template <int NC>
SWA_AVX512 void scores3(const TileArgs& a, int t, int full, __mmask16 last, float* mx) {
    const __m128 scale = _mm_set1_ps(a.scale), ninf = _mm_set1_ps(kNegInf);
    __m128 m[3] = {ninf, ninf, ninf};
    const int nk = a.nk;
    const float* q[3] = {a.q[t], a.q[t + 1], a.q[t + 2]};
    // the last column group of the queries, in registers for all key blocks
    const int64_t dl = int64_t(64) * full;
    __m512 x[3 * NC];  // query u, chunk c: x[NC u + c]
    SWA_UNROLL
    for (int u = 0; u < 3; ++u)
        SWA_UNROLL
        for (int c = 0; c < NC; ++c)
            x[NC * u + c] = c + 1 < NC ? _mm512_loadu_ps(q[u] + dl + 16 * c)
                                       : _mm512_maskz_loadu_ps(last, q[u] + dl + 16 * c);
    for (int b = 0; b < nk; b += 4) {
        __m128 dots[3];
        qk4x3<NC>(q, x, a.kp + b, a.col, full, last, dots);
        const __m128i keep = _mm_cmpgt_epi32(_mm_set1_epi32(nk - b), _mm_setr_epi32(0, 1, 2, 3));
        SWA_UNROLL
        for (int u = 0; u < 3; ++u) {
            const __m128i idx = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.boff[t + u] + b));
            __m128 sc = _mm_fmadd_ps(scale, dots[u], _mm_i32gather_ps(a.bias_h, idx, 4));
            sc = _mm_blendv_ps(ninf, sc, _mm_castsi128_ps(keep));  // padding keys: -inf
            _mm_storeu_ps(a.w[t + u] + b, sc);
            m[u] = _mm_max_ps(m[u], sc);
        }
    }
    const int b4 = (nk + 3) / 4 * 4, end = int(padded(nk));  // the softmax reads whole 16-key blocks
    SWA_UNROLL
    for (int u = 0; u < 3; ++u) {
        for (int b = b4; b < end; b += 4) _mm_storeu_ps(a.w[t + u] + b, ninf);
        __m128 x = _mm_max_ps(m[u], _mm_movehl_ps(m[u], m[u]));
        x = _mm_max_ss(x, _mm_shuffle_ps(x, x, 1));
        mx[u] = _mm_cvtss_f32(x);
    }
}

// out = (sum_j w_j v_j) * inv for M queries, columns [d0, d0 + 16 G) (last chunk under mask).
template <int M, int G>
SWA_AVX512 void pv(const TileArgs& a, const int* live, const float* inv, int64_t d0, __mmask16 last) {
    __m512 acc[M * G];
    SWA_UNROLL
    for (int t = 0; t < M; ++t)
        SWA_UNROLL
        for (int g = 0; g < G; ++g) acc[t * G + g] = _mm512_setzero_ps();
    const float* w[M];
    SWA_UNROLL
    for (int t = 0; t < M; ++t) w[t] = a.w[live[t]];
    const int nk = a.nk;
    const float* const* vp = a.vp;
    const int64_t off = a.col + d0;
    for (int j = 0; j < nk; ++j) {
        const float* r = vp[j] + off;
        __m512 vv[G];
        SWA_UNROLL
        for (int g = 0; g + 1 < G; ++g) vv[g] = _mm512_loadu_ps(r + 16 * g);
        vv[G - 1] = _mm512_maskz_loadu_ps(last, r + 16 * (G - 1));
        SWA_UNROLL
        for (int t = 0; t < M; ++t) {
            const __m512 x = _mm512_set1_ps(w[t][j]);
            SWA_UNROLL
            for (int g = 0; g < G; ++g) acc[t * G + g] = _mm512_fmadd_ps(x, vv[g], acc[t * G + g]);
        }
    }
    SWA_UNROLL
    for (int t = 0; t < M; ++t) {
        float* o = a.o[live[t]] + d0;
        const __m512 iv = _mm512_set1_ps(inv[t]);
        SWA_UNROLL
        for (int g = 0; g + 1 < G; ++g) _mm512_storeu_ps(o + 16 * g, _mm512_mul_ps(acc[t * G + g], iv));
        _mm512_mask_storeu_ps(o + 16 * (G - 1), last, _mm512_mul_ps(acc[t * G + G - 1], iv));
    }
}

using PvFn = void (*)(const TileArgs&, const int*, const float*, int64_t, __mmask16);
#define SWA_PV_ROW(M) {pv<M, 1>, pv<M, 2>, pv<M, 3>, pv<M, 4>}
const PvFn kPv[kTile][4] = {SWA_PV_ROW(1), SWA_PV_ROW(2), SWA_PV_ROW(3), SWA_PV_ROW(4)};
#undef SWA_PV_ROW
using ScoresFn = float (*)(const TileArgs&, int, int, __mmask16);
const ScoresFn kScores[4] = {scores<1>, scores<2>, scores<3>, scores<4>};
using Scores2Fn = void (*)(const TileArgs&, int, int, __mmask16, float*);
const Scores2Fn kScores2[4] = {scores2<1>, scores2<2>, scores2<3>, scores2<4>};
const Scores2Fn kScores3[4] = {scores3<1>, scores3<2>, scores3<3>, scores3<4>};

SWA_AVX512 void head(const TileArgs& a) {
    const int chunks = (a.dh + 15) / 16;
    const int last_nc = chunks - 4 * ((chunks - 1) / 4);  // 1..4 chunks in the last 64-column group
    const int full = (chunks - last_nc) / 4;
    const __mmask16 last = tail_mask(a.dh - 16 * (chunks - 1));
    float inv[kTile];
    int live[kTile];
    int nlive = 0;
    float mxs[kTile];
    // Three queries together, or pairs: each key chunk is loaded once for all of them.
    if (a.m == 3)
        kScores3[last_nc - 1](a, 0, full, last, mxs);
    else
        for (int t = 0; t < a.m; t += 2) {
            if (t + 1 < a.m)
                kScores2[last_nc - 1](a, t, full, last, mxs + t);
            else
                mxs[t] = kScores[last_nc - 1](a, t, full, last);
        }
    for (int t = 0; t < a.m; ++t) {
        const float mx = mxs[t];
        if (mx == kNegInf) {  // every key masked: zeros
            std::fill(a.o[t], a.o[t] + a.dh, 0.f);
            continue;
        }
        const __m512 m = _mm512_set1_ps(mx);
        __m512 l = _mm512_setzero_ps();
        for (int b = 0; b < a.nk; b += 16) {
            const __m512 x = exp_neg(_mm512_sub_ps(_mm512_loadu_ps(a.w[t] + b), m));
            _mm512_storeu_ps(a.w[t] + b, x);
            l = _mm512_add_ps(l, x);
        }
        inv[nlive] = 1.f / _mm512_reduce_add_ps(l);
        live[nlive++] = t;
    }
    if (nlive == 0) return;
    for (int c = 0; c < chunks; c += 4) {  // 64 columns at a time
        const int g = std::min(4, chunks - c);
        kPv[nlive - 1][g - 1](a, live, inv, int64_t(16) * c, c + g == chunks ? last : __mmask16(0xffff));
    }
}

SWA_AVX512 void widen(const SwaHalf* src, float* dst, int64_t n) {
    int64_t u = 0;
    for (; u + 16 <= n; u += 16)
        _mm512_storeu_ps(dst + u, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + u))));
    for (; u < n; ++u) dst[u] = to_float(src[u]);
}

SWA_AVX512 void narrow(const float* src, SwaHalf* dst, int64_t n) {
    int64_t u = 0;
    for (; u + 16 <= n; u += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + u),
                            _mm512_cvtps_ph(_mm512_loadu_ps(src + u), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; u < n; ++u) dst[u] = to_half(src[u]);
}

const IsaOps kOps = {"avx512", head, widen, narrow};

}  // namespace avx512

// ---------------------------------------------------------------------------- AVX2 + FMA
#define SWA_AVX2 __attribute__((target("avx2,fma,f16c")))
#define SWA_AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline
namespace avx2 {

SWA_AVX2_INLINE __m256 r1(__m256 a, __m256 b) {
    return _mm256_add_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
}
SWA_AVX2_INLINE __m256 r2(__m256 a, __m256 b) {
    const __m256d x = _mm256_castps_pd(a), y = _mm256_castps_pd(b);
    return _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(x, y)), _mm256_castpd_ps(_mm256_unpackhi_pd(x, y)));
}
SWA_AVX2_INLINE __m256 r3(__m256 a, __m256 b) {
    return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}
SWA_AVX2_INLINE __m256 tree8(const __m256* a) {
    return r3(r2(r1(a[0], a[1]), r1(a[2], a[3])), r2(r1(a[4], a[5]), r1(a[6], a[7])));
}
SWA_AVX2_INLINE float hsum(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}
SWA_AVX2_INLINE float hmax(__m256 v) {
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}

SWA_AVX2_INLINE __m256 exp_neg(__m256 x) {
    const __m256 lo = _mm256_set1_ps(kExpLo);
    const __m256 keep = _mm256_cmp_ps(x, lo, _CMP_NLT_UQ);  // x >= lo, or NaN
    x = _mm256_min_ps(_mm256_set1_ps(kExpHi), _mm256_max_ps(lo, x));  // (NaN x stays NaN)
    const __m256 n =
        _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
    __m256 y = _mm256_set1_ps(kExpP0);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpP1));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpP2));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpP3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpP4));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpP5));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(e)), keep);
}

alignas(32) constexpr int32_t kMaskSrc[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
SWA_AVX2_INLINE __m256i tail_mask(int rem) {  // lanes < rem (rem 0..8)
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskSrc + 8 - rem));
}
template <bool kMasked>
SWA_AVX2_INLINE __m256 load_last(const float* p, __m256i mask) {
    if (kMasked) return _mm256_maskload_ps(p, mask);
    return _mm256_loadu_ps(p);
}

// Dot products of q with 8 key rows: `full` groups of 32 columns, then NC chunks of 8.
template <int NC, bool kMasked>
SWA_AVX2_INLINE __m256 qk8(const float* q, const float* const* kp, int64_t col, int full, __m256i last) {
    __m256 acc[8];
    SWA_UNROLL
    for (int j = 0; j < 8; ++j) acc[j] = _mm256_setzero_ps();
    int64_t d = 0;
    for (int g = 0; g < full; ++g, d += 32) {
        const __m256 q0 = _mm256_loadu_ps(q + d), q1 = _mm256_loadu_ps(q + d + 8);
        const __m256 q2 = _mm256_loadu_ps(q + d + 16), q3 = _mm256_loadu_ps(q + d + 24);
        SWA_UNROLL
        for (int j = 0; j < 8; ++j) {
            const float* r = kp[j] + col + d;
            __m256 x = _mm256_fmadd_ps(q0, _mm256_loadu_ps(r), acc[j]);
            x = _mm256_fmadd_ps(q1, _mm256_loadu_ps(r + 8), x);
            x = _mm256_fmadd_ps(q2, _mm256_loadu_ps(r + 16), x);
            acc[j] = _mm256_fmadd_ps(q3, _mm256_loadu_ps(r + 24), x);
        }
    }
    __m256 qv[NC];
    SWA_UNROLL
    for (int c = 0; c + 1 < NC; ++c) qv[c] = _mm256_loadu_ps(q + d + 8 * c);
    qv[NC - 1] = load_last<kMasked>(q + d + 8 * (NC - 1), last);
    SWA_UNROLL
    for (int j = 0; j < 8; ++j) {
        const float* r = kp[j] + col + d;
        __m256 x = acc[j];
        SWA_UNROLL
        for (int c = 0; c + 1 < NC; ++c) x = _mm256_fmadd_ps(qv[c], _mm256_loadu_ps(r + 8 * c), x);
        acc[j] = _mm256_fmadd_ps(qv[NC - 1], load_last<kMasked>(r + 8 * (NC - 1), last), x);
    }
    return tree8(acc);
}

template <int NC, bool kMasked>
SWA_AVX2 float scores(const TileArgs& a, int t, int full, __m256i last) {
    const __m256 scale = _mm256_set1_ps(a.scale), ninf = _mm256_set1_ps(kNegInf);
    __m256 mx = ninf;
    for (int b = 0; b < a.nk; b += 8) {
        const __m256 dot = qk8<NC, kMasked>(a.q[t], a.kp + b, a.col, full, last);
        const __m256i idx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.boff[t] + b));
        __m256 s = _mm256_fmadd_ps(scale, dot, _mm256_i32gather_ps(a.bias_h, idx, 4));
        if (a.nk - b < 8) s = _mm256_blendv_ps(ninf, s, _mm256_castsi256_ps(tail_mask(a.nk - b)));
        _mm256_storeu_ps(a.w[t] + b, s);
        mx = _mm256_max_ps(mx, s);
    }
    return hmax(mx);
}

template <int M, int G, bool kMasked>
SWA_AVX2 void pv(const TileArgs& a, const int* live, const float* inv, int64_t d0, __m256i last) {
    __m256 acc[M * G];
    SWA_UNROLL
    for (int t = 0; t < M; ++t)
        SWA_UNROLL
        for (int g = 0; g < G; ++g) acc[t * G + g] = _mm256_setzero_ps();
    const float* w[M];
    SWA_UNROLL
    for (int t = 0; t < M; ++t) w[t] = a.w[live[t]];
    const int nk = a.nk;
    const float* const* vp = a.vp;
    const int64_t off = a.col + d0;
    for (int j = 0; j < nk; ++j) {
        const float* r = vp[j] + off;
        __m256 vv[G];
        SWA_UNROLL
        for (int g = 0; g + 1 < G; ++g) vv[g] = _mm256_loadu_ps(r + 8 * g);
        vv[G - 1] = load_last<kMasked>(r + 8 * (G - 1), last);
        SWA_UNROLL
        for (int t = 0; t < M; ++t) {
            const __m256 x = _mm256_broadcast_ss(w[t] + j);
            SWA_UNROLL
            for (int g = 0; g < G; ++g) acc[t * G + g] = _mm256_fmadd_ps(x, vv[g], acc[t * G + g]);
        }
    }
    SWA_UNROLL
    for (int t = 0; t < M; ++t) {
        float* o = a.o[live[t]] + d0;
        const __m256 iv = _mm256_set1_ps(inv[t]);
        SWA_UNROLL
        for (int g = 0; g + 1 < G; ++g) _mm256_storeu_ps(o + 8 * g, _mm256_mul_ps(acc[t * G + g], iv));
        if (kMasked)
            _mm256_maskstore_ps(o + 8 * (G - 1), last, _mm256_mul_ps(acc[t * G + G - 1], iv));
        else
            _mm256_storeu_ps(o + 8 * (G - 1), _mm256_mul_ps(acc[t * G + G - 1], iv));
    }
}

using PvFn = void (*)(const TileArgs&, const int*, const float*, int64_t, __m256i);
#define SWA_PV_ROW(M, K) {pv<M, 1, K>, pv<M, 2, K>, pv<M, 3, K>, pv<M, 4, K>}
const PvFn kPv[2][2][4] = {{SWA_PV_ROW(1, false), SWA_PV_ROW(2, false)}, {SWA_PV_ROW(1, true), SWA_PV_ROW(2, true)}};
#undef SWA_PV_ROW
using ScoresFn = float (*)(const TileArgs&, int, int, __m256i);
const ScoresFn kScores[2][4] = {{scores<1, false>, scores<2, false>, scores<3, false>, scores<4, false>},
                                {scores<1, true>, scores<2, true>, scores<3, true>, scores<4, true>}};

SWA_AVX2 void head(const TileArgs& a) {
    const int chunks = (a.dh + 7) / 8;
    const int last_nc = chunks - 4 * ((chunks - 1) / 4);  // 1..4 chunks in the last 32-column group
    const int full = (chunks - last_nc) / 4;
    const int rem = a.dh - 8 * (chunks - 1);  // 1..8 columns in the last chunk
    const int masked = rem < 8 ? 1 : 0;
    const __m256i last = tail_mask(rem);
    float inv[kTile];
    int live[kTile];
    int nlive = 0;
    for (int t = 0; t < a.m; ++t) {
        const float mx = kScores[masked][last_nc - 1](a, t, full, last);
        if (mx == kNegInf) {  // every key masked: zeros
            std::fill(a.o[t], a.o[t] + a.dh, 0.f);
            continue;
        }
        const __m256 m = _mm256_set1_ps(mx);
        __m256 l = _mm256_setzero_ps();
        for (int b = 0; b < a.nk; b += 8) {
            const __m256 x = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(a.w[t] + b), m));
            _mm256_storeu_ps(a.w[t] + b, x);
            l = _mm256_add_ps(l, x);
        }
        inv[nlive] = 1.f / hsum(l);
        live[nlive++] = t;
    }
    for (int u = 0; u < nlive; u += 2) {  // queries in pairs: 2 x 4 accumulators + 4 value chunks
        const int mm = std::min(2, nlive - u);
        for (int c = 0; c < chunks; c += 4) {  // 32 columns at a time
            const int g = std::min(4, chunks - c);
            const bool tail = c + g == chunks && masked;
            kPv[tail ? 1 : 0][mm - 1][g - 1](a, live + u, inv + u, int64_t(8) * c, last);
        }
    }
}

SWA_AVX2 void widen(const SwaHalf* src, float* dst, int64_t n) {
    int64_t u = 0;
    for (; u + 8 <= n; u += 8)
        _mm256_storeu_ps(dst + u, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + u))));
    for (; u < n; ++u) dst[u] = to_float(src[u]);
}

SWA_AVX2 void narrow(const float* src, SwaHalf* dst, int64_t n) {
    int64_t u = 0;
    for (; u + 8 <= n; u += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + u),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + u), _MM_FROUND_TO_NEAREST_INT));
    for (; u < n; ++u) dst[u] = to_half(src[u]);
}

const IsaOps kOps = {"avx2", head, widen, narrow};

}  // namespace avx2
#endif  // SWA_X86

#if defined(__aarch64__)
// ---------------------------------------------------------------------------- NEON (aarch64)
namespace neon {

inline float32x4_t exp_neg(float32x4_t x) {
    const float32x4_t lo = vdupq_n_f32(kExpLo);
    const uint32x4_t keep = vmvnq_u32(vcltq_f32(x, lo));          // x >= lo, or NaN
    x = vminq_f32(vmaxq_f32(x, lo), vdupq_n_f32(kExpHi));          // (NaN stays NaN)
    const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, kLog2e));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(kLn2Hi));
    r = vfmsq_f32(r, n, vdupq_n_f32(kLn2Lo));
    float32x4_t y = vdupq_n_f32(kExpP0);
    y = vfmaq_f32(vdupq_n_f32(kExpP1), y, r);
    y = vfmaq_f32(vdupq_n_f32(kExpP2), y, r);
    y = vfmaq_f32(vdupq_n_f32(kExpP3), y, r);
    y = vfmaq_f32(vdupq_n_f32(kExpP4), y, r);
    y = vfmaq_f32(vdupq_n_f32(kExpP5), y, r);
    y = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.f)), y, vmulq_f32(r, r));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    y = vmulq_f32(y, vreinterpretq_f32_s32(e));
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(y), keep));
}

// Dot products of q with 4 key rows (columns in chunks of 4, a scalar tail).
inline float32x4_t qk4(const float* q, const float* const* kp, int64_t col, int dh) {
    const float *r0 = kp[0] + col, *r1 = kp[1] + col, *r2 = kp[2] + col, *r3 = kp[3] + col;
    float32x4_t a0 = vdupq_n_f32(0.f), a1 = a0, a2 = a0, a3 = a0;
    int d = 0;
    for (; d + 4 <= dh; d += 4) {
        const float32x4_t qv = vld1q_f32(q + d);
        a0 = vfmaq_f32(a0, qv, vld1q_f32(r0 + d));
        a1 = vfmaq_f32(a1, qv, vld1q_f32(r1 + d));
        a2 = vfmaq_f32(a2, qv, vld1q_f32(r2 + d));
        a3 = vfmaq_f32(a3, qv, vld1q_f32(r3 + d));
    }
    float32x4_t s = vpaddq_f32(vpaddq_f32(a0, a1), vpaddq_f32(a2, a3));
    if (d < dh) {
        float t[4] = {0.f, 0.f, 0.f, 0.f};
        for (; d < dh; ++d) {
            t[0] += q[d] * r0[d];
            t[1] += q[d] * r1[d];
            t[2] += q[d] * r2[d];
            t[3] += q[d] * r3[d];
        }
        s = vaddq_f32(s, vld1q_f32(t));
    }
    return s;
}

template <int M, int G>
void pv(const TileArgs& a, const int* live, const float* inv, int64_t d0) {
    float32x4_t acc[M * G];
    SWA_UNROLL
    for (int t = 0; t < M; ++t)
        SWA_UNROLL
        for (int g = 0; g < G; ++g) acc[t * G + g] = vdupq_n_f32(0.f);
    const float* w[M];
    SWA_UNROLL
    for (int t = 0; t < M; ++t) w[t] = a.w[live[t]];
    const int nk = a.nk;
    const float* const* vp = a.vp;
    const int64_t off = a.col + d0;
    for (int j = 0; j < nk; ++j) {
        const float* r = vp[j] + off;
        float32x4_t vv[G];
        SWA_UNROLL
        for (int g = 0; g < G; ++g) vv[g] = vld1q_f32(r + 4 * g);
        SWA_UNROLL
        for (int t = 0; t < M; ++t) {
            const float32x4_t x = vdupq_n_f32(w[t][j]);
            SWA_UNROLL
            for (int g = 0; g < G; ++g) acc[t * G + g] = vfmaq_f32(acc[t * G + g], x, vv[g]);
        }
    }
    SWA_UNROLL
    for (int t = 0; t < M; ++t) {
        float* o = a.o[live[t]] + d0;
        SWA_UNROLL
        for (int g = 0; g < G; ++g) vst1q_f32(o + 4 * g, vmulq_n_f32(acc[t * G + g], inv[t]));
    }
}

using PvFn = void (*)(const TileArgs&, const int*, const float*, int64_t);
#define SWA_PV_ROW(M) {pv<M, 1>, pv<M, 2>, pv<M, 3>, pv<M, 4>}
const PvFn kPv[kTile][4] = {SWA_PV_ROW(1), SWA_PV_ROW(2), SWA_PV_ROW(3), SWA_PV_ROW(4)};
#undef SWA_PV_ROW

void head(const TileArgs& a) {
    const int dh = a.dh;
    float inv[kTile];
    int live[kTile];
    int nlive = 0;
    const float32x4_t scale = vdupq_n_f32(a.scale), ninf = vdupq_n_f32(kNegInf);
    for (int t = 0; t < a.m; ++t) {
        float32x4_t mx = ninf;
        for (int b = 0; b < a.nk; b += 4) {
            const int32_t* bo = a.boff[t] + b;
            const float bias[4] = {a.bias_h[bo[0]], a.bias_h[bo[1]], a.bias_h[bo[2]], a.bias_h[bo[3]]};
            float32x4_t s = vfmaq_f32(vld1q_f32(bias), scale, qk4(a.q[t], a.kp + b, a.col, dh));
            if (a.nk - b < 4) {
                const uint32_t lanes[4] = {0u, 1u, 2u, 3u};
                s = vbslq_f32(vcltq_u32(vld1q_u32(lanes), vdupq_n_u32(uint32_t(a.nk - b))), s, ninf);
            }
            vst1q_f32(a.w[t] + b, s);
            mx = vmaxq_f32(mx, s);
        }
        const float m = vmaxvq_f32(mx);
        if (m == kNegInf) {  // every key masked: zeros
            std::fill(a.o[t], a.o[t] + dh, 0.f);
            continue;
        }
        const float32x4_t mv = vdupq_n_f32(m);
        float32x4_t l = vdupq_n_f32(0.f);
        for (int b = 0; b < a.nk; b += 4) {
            const float32x4_t x = exp_neg(vsubq_f32(vld1q_f32(a.w[t] + b), mv));
            vst1q_f32(a.w[t] + b, x);
            l = vaddq_f32(l, x);
        }
        inv[nlive] = 1.f / vaddvq_f32(l);
        live[nlive++] = t;
    }
    if (nlive == 0) return;
    const int dv = dh & ~3;  // columns in chunks of 4; the rest scalar
    for (int64_t d0 = 0; d0 < dv; d0 += 16) {
        const int g = int(std::min<int64_t>(4, (dv - d0) / 4));
        kPv[nlive - 1][g - 1](a, live, inv, d0);
    }
    for (int u = 0; u < nlive; ++u) {
        const float* w = a.w[live[u]];
        float* o = a.o[live[u]];
        for (int d = dv; d < dh; ++d) {
            float acc = 0.f;
            for (int j = 0; j < a.nk; ++j) acc += w[j] * a.vp[j][a.col + d];
            o[d] = acc * inv[u];
        }
    }
}

void widen(const SwaHalf* src, float* dst, int64_t n) {
    int64_t u = 0;
    for (; u + 4 <= n; u += 4) vst1q_f32(dst + u, vcvt_f32_f16(vld1_f16(reinterpret_cast<const float16_t*>(src + u))));
    for (; u < n; ++u) dst[u] = to_float(src[u]);
}

void narrow(const float* src, SwaHalf* dst, int64_t n) {
    int64_t u = 0;
    for (; u + 4 <= n; u += 4) vst1_f16(reinterpret_cast<float16_t*>(dst + u), vcvt_f16_f32(vld1q_f32(src + u)));
    for (; u < n; ++u) dst[u] = to_half(src[u]);
}

const IsaOps kOps = {"neon", head, widen, narrow};

}  // namespace neon
#endif  // __aarch64__

// ---------------------------------------------------------------------------- selection
enum class Kernel { kReference, kWindow };
struct Selection {
    Kernel kernel;
    const IsaOps* ops;  // window kernel only
    const char* name;
};

const IsaOps* best_ops() {
#if SWA_X86
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (avx2 && __builtin_cpu_supports("avx512f")) return &avx512::kOps;
    if (avx2) return &avx2::kOps;
#elif defined(__aarch64__)
    return &neon::kOps;
#endif
    return &generic::kOps;
}

const IsaOps* named_ops(const std::string& name) {
    if (name == "generic") return &generic::kOps;
#if SWA_X86
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (name == "avx2" && avx2) return &avx2::kOps;
    if (name == "avx512" && avx2 && __builtin_cpu_supports("avx512f")) return &avx512::kOps;
#endif
#if defined(__aarch64__)
    if (name == "neon") return &neon::kOps;
#endif
    return nullptr;
}

Selection select_kernel() {
    const char* env = std::getenv("SPAN_SWA_CPU_KERNEL");
    const std::string want = env ? env : "";
    if (want == "reference") return {Kernel::kReference, nullptr, "reference"};
    const IsaOps* ops = nullptr;
    if (!want.empty() && want != "auto") {
        ops = named_ops(want);
        if (!ops) {
            const IsaOps* best = best_ops();
            std::fprintf(stderr,
                         "span_deploy: SPAN_SWA_CPU_KERNEL=%s is not available here (known: auto, reference, "
                         "generic, avx2, avx512, neon); using %s\n",
                         want.c_str(), best->name);
        }
    }
    if (!ops) ops = best_ops();
    return {Kernel::kWindow, ops, ops->name};
}

const Selection& selection() {
    static const Selection s = select_kernel();
    return s;
}

// ---------------------------------------------------------------------------- window driver
// One key list: key / value row pointers (padded to a multiple of kKeyBlock with valid rows),
// each key's slot as (row * (2S-1) + col) of its window, and how many come from windowing A.
struct KeyList {
    std::vector<const float*> kp, vp;
    std::vector<int32_t> cell;
    int na = 0, nk = 0;
};

// Scratch of one thread, kept from call to call (a front end calls swa_forward_cpu_rows on small
// row ranges: no allocation, page fault or zero fill per call once it has grown).
struct Scratch {
    std::vector<uint8_t> done;
    std::vector<int32_t> members, a_rows, a_cells, b_rows, b_cells, tile_rows;
    std::vector<std::pair<int64_t, int32_t>> by_b;
    KeyList list, alone;
    std::vector<int32_t> boff;
    std::vector<float> wbuf, pack_a, pack_b, qbuf, obuf;
};

template <typename T>
class WindowRows {
    // the thread's Scratch
    std::vector<uint8_t>& done_;
    std::vector<int32_t> &members_, &a_rows_, &a_cells_, &b_rows_, &b_cells_, &tile_rows_;
    std::vector<std::pair<int64_t, int32_t>>& by_b_;
    KeyList &list_, &alone_;
    std::vector<int32_t>& boff_;
    std::vector<float> &wbuf_, &pack_a_, &pack_b_, &qbuf_, &obuf_;

public:
    WindowRows(const SwaParams& p, const IsaOps& ops, const T* q, const T* k, const T* v, T* out, Scratch& s)
        : done_(s.done), members_(s.members), a_rows_(s.a_rows), a_cells_(s.a_cells), b_rows_(s.b_rows),
          b_cells_(s.b_cells), tile_rows_(s.tile_rows), by_b_(s.by_b), list_(s.list), alone_(s.alone),
          boff_(s.boff), wbuf_(s.wbuf), pack_a_(s.pack_a), pack_b_(s.pack_b), qbuf_(s.qbuf), obuf_(s.obuf),
          p_(p), ops_(ops), q_(q), k_(k), v_(v), out_(out), S_(p.window), S2_(int64_t(p.window) * p.window),
          side_(2 * p.window - 1), C_(int64_t(p.num_heads) * p.head_dim),
          bias_head_(int64_t(2 * p.window - 1) * (2 * p.window - 1)), ld_((C_ + 15) / 16 * 16 + 16) {}

    void run(int64_t b, int64_t e) {
        b = std::max<int64_t>(b, 0);
        e = std::min<int64_t>(e, p_.n);
        if (b >= e) return;
        done_.assign(size_t(e - b), 0);
        const int64_t na_slots = p_.num_win_a * S2_;
        for (int64_t i = b; i < e; ++i) {
            if (done_[size_t(i - b)]) continue;
            done_[size_t(i - b)] = 1;
            const int64_t pa = p_.pos_a[i];
            if (pa < 0 || pa >= na_slots) {  // no window: no candidate key
                zero_row(i);
                continue;
            }
            // The rows of [b, e) in the same A-window, found through the window's own slots
            // (a row the window does not list comes in its own group when the loop reaches it).
            const int64_t wa = pa / S2_;
            members_.assign(1, int32_t(i));
            const int32_t* win = p_.win_a + wa * S2_;
            for (int64_t t = 0; t < S2_; ++t) {
                const int64_t j = win[t];
                if (j < b || j >= e || done_[size_t(j - b)]) continue;
                const int64_t pj = p_.pos_a[j];
                if (pj < wa * S2_ || pj >= (wa + 1) * S2_) continue;
                done_[size_t(j - b)] = 1;
                members_.push_back(int32_t(j));
            }
            window(wa);
        }
    }

private:
    void zero_row(int64_t i) {
        T* o = out_ + i * C_;
        for (int64_t c = 0; c < C_; ++c) store(o + c, 0.f);
    }

    // Points the list entries [at, at + n) at the key and value rows of `rows`: float32 in place
    // (the head kernels load each key chunk once per query pair and each value chunk once per
    // tile), float16 widened into `pack` (64-byte aligned rows, stride ld_ = C + 16 floats
    // rounded to 16, so that the slices of one head do not all map to the same L1 sets).
    void set_rows(KeyList& list, int at, const std::vector<int32_t>& rows, std::vector<float>& pack) {
        const int64_t n = int64_t(rows.size());
        if constexpr (sizeof(T) == sizeof(float)) {
            for (int64_t u = 0; u < n; ++u) {
                const int64_t r = int64_t(rows[size_t(u)]) * C_;
                list.kp[size_t(at + u)] = reinterpret_cast<const float*>(k_) + r;
                list.vp[size_t(at + u)] = reinterpret_cast<const float*>(v_) + r;
            }
            return;
        }
        pack.resize(size_t(2 * n * ld_ + 16));
        float* base = pack.data();
        base += (16 - (reinterpret_cast<uintptr_t>(base) / sizeof(float)) % 16) % 16;
        for (int64_t u = 0; u < n; ++u) {
            const int64_t r = int64_t(rows[size_t(u)]) * C_;
            float* kr = base + u * ld_;
            float* vr = base + (n + u) * ld_;
            ops_.widen(reinterpret_cast<const SwaHalf*>(k_) + r, kr, C_);
            ops_.widen(reinterpret_cast<const SwaHalf*>(v_) + r, vr, C_);
            list.kp[size_t(at + u)] = kr;
            list.vp[size_t(at + u)] = vr;
        }
    }

    // Valid rows of window w of `win`, in slot order, with their cells; B (from_b): only rows
    // whose own A-window is not wa.
    void window_keys(const int32_t* win, int64_t w, bool from_b, int64_t wa, std::vector<int32_t>& rows,
                     std::vector<int32_t>& cells) const {
        rows.clear();
        cells.clear();
        const int32_t* slots = win + w * S2_;
        const int64_t na_slots = p_.num_win_a * S2_;
        for (int32_t tr = 0, t = 0; tr < S_; ++tr)
            for (int32_t tc = 0; tc < S_; ++tc, ++t) {
                const int64_t j = slots[t];
                if (j < 0 || j >= p_.n) continue;
                if (from_b) {
                    const int64_t pj = p_.pos_a[j];
                    if (pj < 0 || pj >= na_slots || (pj >= wa * S2_ && pj < (wa + 1) * S2_)) continue;
                }
                rows.push_back(int32_t(j));
                cells.push_back(tr * side_ + tc);
            }
    }

    void window(int64_t wa) {
        window_keys(p_.win_a, wa, false, wa, a_rows_, a_cells_);
        const int na = int(a_rows_.size());
        // Members by B-window (-1: none), so that a run of equal B-windows shares one list.
        const int64_t nb_slots = p_.num_win_b * S2_;
        by_b_.clear();
        for (int32_t i : members_) {
            int64_t wb = -1;
            if (p_.mode == 1) {
                const int64_t pb = p_.pos_b[i];
                if (pb >= 0 && pb < nb_slots) wb = pb / S2_;
            }
            by_b_.push_back({wb, i});
        }
        std::sort(by_b_.begin(), by_b_.end());
        list_.kp.resize(size_t(padded(int64_t(na) + S2_)));
        list_.vp.resize(list_.kp.size());
        list_.cell.resize(list_.kp.size());
        set_rows(list_, 0, a_rows_, pack_a_);
        std::copy(a_cells_.begin(), a_cells_.end(), list_.cell.begin());
        list_.na = na;
        for (size_t r = 0; r < by_b_.size();) {
            size_t r_end = r;
            while (r_end < by_b_.size() && by_b_[r_end].first == by_b_[r].first) ++r_end;
            const int64_t wb = by_b_[r].first;
            int nb = 0;
            if (wb >= 0) {
                window_keys(p_.win_b, wb, true, wa, b_rows_, b_cells_);
                nb = int(b_rows_.size());
                set_rows(list_, na, b_rows_, pack_b_);
                std::copy(b_cells_.begin(), b_cells_.end(), list_.cell.begin() + na);
            }
            list_.nk = na + nb;
            pad(list_);
            // Rows 0 and N-1 never attend to themselves: such a row gets its own list.
            tile_rows_.clear();
            for (size_t u = r; u < r_end; ++u) {
                const int32_t i = by_b_[u].second;
                if ((i == 0 || i == p_.n - 1) && std::find(a_rows_.begin(), a_rows_.end(), i) != a_rows_.end()) {
                    without_self(i);
                    run_tile(alone_, &i, 1);
                    continue;
                }
                tile_rows_.push_back(i);
            }
            // Tiles of 3 (the head kernels' best), 4 as two pairs, 2, 1: 9 = 3 + 3 + 3, 5 = 3 + 2.
            for (size_t u = 0; u < tile_rows_.size();) {
                const size_t left = tile_rows_.size() - u;
                const int m = left == 4 ? 4 : left >= 3 ? 3 : int(left);
                run_tile(list_, tile_rows_.data() + u, m);
                u += size_t(m);
            }
            r = r_end;
        }
    }

    void pad(KeyList& list) const {
        if (list.nk == 0) return;
        const size_t end = size_t(padded(list.nk));
        if (list.kp.size() < end) {
            list.kp.resize(end);
            list.vp.resize(end);
            list.cell.resize(end);
        }
        for (size_t u = size_t(list.nk); u < end; ++u) {
            list.kp[u] = list.kp[0];
            list.vp[u] = list.vp[0];
            list.cell[u] = list.cell[0];
        }
    }

    // list_ without the A keys that are row i itself.
    void without_self(int32_t i) {
        alone_.kp.clear();
        alone_.vp.clear();
        alone_.cell.clear();
        alone_.na = 0;
        for (int u = 0; u < list_.nk; ++u) {
            if (u < list_.na && a_rows_[size_t(u)] == i) continue;
            alone_.kp.push_back(list_.kp[size_t(u)]);
            alone_.vp.push_back(list_.vp[size_t(u)]);
            alone_.cell.push_back(list_.cell[size_t(u)]);
            if (u < list_.na) ++alone_.na;
        }
        alone_.nk = int(alone_.kp.size());
        pad(alone_);
    }

    void run_tile(const KeyList& list, const int32_t* rows, int m) {
        if (list.nk == 0) {  // no candidate key: exact zeros
            for (int t = 0; t < m; ++t) zero_row(rows[t]);
            return;
        }
        const int64_t ld = padded(list.nk);
        boff_.resize(size_t(kTile * ld));
        wbuf_.resize(size_t(kTile * ld));
        const int32_t base = (S_ - 1) * side_ + (S_ - 1);
        TileArgs a;
        a.m = m;
        a.nk = list.nk;
        a.dh = p_.head_dim;
        a.scale = p_.scale;
        a.kp = list.kp.data();
        a.vp = list.vp.data();
        const float* qrow[kTile];
        float* orow[kTile];
        if constexpr (sizeof(T) != sizeof(float)) {
            qbuf_.resize(size_t(kTile * C_));
            obuf_.resize(size_t(kTile * C_));
        }
        for (int t = 0; t < m; ++t) {
            const int64_t i = rows[t];
            // the bias offset of key u is base + key cell - query cell (its own windowing's slot)
            const int64_t sa = p_.pos_a[i] % S2_;
            const int32_t qa = int32_t(sa / S_) * side_ + int32_t(sa % S_);
            int32_t qb = qa;
            if (list.nk > list.na) {  // B keys exist only with a valid pos_b
                const int64_t sb = p_.pos_b[i] % S2_;
                qb = int32_t(sb / S_) * side_ + int32_t(sb % S_);
            }
            int32_t* bo = boff_.data() + t * ld;
            for (int u = 0; u < list.na; ++u) bo[u] = base + list.cell[size_t(u)] - qa;
            for (int u = list.na; u < list.nk; ++u) bo[u] = base + list.cell[size_t(u)] - qb;
            for (int64_t u = list.nk; u < ld; ++u) bo[u] = 0;
            a.boff[t] = bo;
            a.w[t] = wbuf_.data() + t * ld;
            if constexpr (sizeof(T) == sizeof(float)) {
                qrow[t] = reinterpret_cast<const float*>(q_) + i * C_;
                orow[t] = reinterpret_cast<float*>(out_) + i * C_;
            } else {
                ops_.widen(reinterpret_cast<const SwaHalf*>(q_) + i * C_, qbuf_.data() + t * C_, C_);
                qrow[t] = qbuf_.data() + t * C_;
                orow[t] = obuf_.data() + t * C_;
            }
        }
        for (int32_t h = 0; h < p_.num_heads; ++h) {
            a.col = int64_t(h) * p_.head_dim;
            a.bias_h = p_.bias + h * bias_head_;
            for (int t = 0; t < m; ++t) {
                a.q[t] = qrow[t] + a.col;
                a.o[t] = orow[t] + a.col;
            }
            ops_.head(a);
        }
        if constexpr (sizeof(T) != sizeof(float))
            for (int t = 0; t < m; ++t)
                ops_.narrow(orow[t], reinterpret_cast<SwaHalf*>(out_) + int64_t(rows[t]) * C_, C_);
    }

    const SwaParams& p_;
    const IsaOps& ops_;
    const T *q_, *k_, *v_;
    T* out_;
    const int32_t S_;
    const int64_t S2_;
    const int32_t side_;
    const int64_t C_, bias_head_;
    const int64_t ld_;  // stride of the packed key / value rows (floats)

};

template <typename T>
void window_rows(const SwaParams& p, const IsaOps& ops, const T* q, const T* k, const T* v, T* out, int64_t b,
                 int64_t e) {
    static thread_local Scratch scratch;
    WindowRows<T>(p, ops, q, k, v, out, scratch).run(b, e);
}

template <typename T>
void forward_rows(const SwaParams& p, const T* q, const T* k, const T* v, T* out, int64_t row_begin,
                  int64_t row_end) {
    const Selection& s = selection();
    if (s.kernel == Kernel::kReference)
        reference_rows(p, q, k, v, out, row_begin, row_end);
    else
        window_rows(p, *s.ops, q, k, v, out, row_begin, row_end);
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

const char* swa_cpu_kernel_name() { return selection().name; }

void swa_forward_cpu_reference_rows(const SwaParams& p, const float* q, const float* k, const float* v, float* out,
                                    int64_t row_begin, int64_t row_end) {
    reference_rows(p, q, k, v, out, row_begin, row_end);
}

void swa_forward_cpu_reference_rows(const SwaParams& p, const SwaHalf* q, const SwaHalf* k, const SwaHalf* v,
                                    SwaHalf* out, int64_t row_begin, int64_t row_end) {
    reference_rows(p, q, k, v, out, row_begin, row_end);
}

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
