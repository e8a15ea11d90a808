// Host emulation of the CUDA window kernel (../swa_cuda_window.cu), checked against the CPU
// kernel (swa_forward_cpu): the only check of the window kernel's logic that runs without a GPU.
//
// It includes part 1 of swa_cuda_window.cu (SWA_WINDOW_HOST_ONLY: the plan, the shared-memory
// layout, the query / key / mask / bias helpers and the lane -> fragment maps the kernel uses)
// and replays every block of a launch step by step, barrier phase by barrier phase, each warp
// lane by lane: the query sort, the segments, the rounds and the key-list compaction, the staging
// of Q / K / V / bias into a byte image of the kernel's dynamic shared memory (poisoned with NaN
// bytes; every access checked against its region and alignment), and per chunk the warp code of
// both paths with the shuffles done across a lane array. ldmatrix and mma.sync m16n8k16 are
// emulated from the PTX ISA's fragment layouts, written out here independently of the kernel's
// helpers, so a wrong lane -> row / column map in the kernel shows up as a wrong result. The rows
// the window kernel does not own are computed through the per-row path (the reference logic, here
// swa_forward_cpu_reference_rows), and every (row, head) must be written exactly once.
//
// What it cannot see: the hardware itself (real ldmatrix / mma semantics, if the layouts above
// are misremembered; races; barrier divergence; register limits). The GPU check
// (swa_gpu_check.cu) and compute-sanitizer cover those.
//
// Usage: swa_window_tiling_check [--seed N] [--cases N]; prints one line per failure and
// "swa_window_tiling_check: N cases OK", exit status 0 / 1.
#define SWA_WINDOW_HOST_ONLY 1
#include "../swa_cuda_window.cu"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>
#include "swa_test_rng.h"

using namespace span_deploy;
using namespace span_deploy::swa_window;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "swa_window_tiling_check: FAILED: %s\n", what.c_str());
    std::exit(1);
}

using span_deploy_test::Rng;  // swa_test_rng.h

// ---------------------------------------------------------------- binary16
float h2f(uint16_t b) {
    const uint32_t sign = uint32_t(b & 0x8000u) << 16;
    const int e = (b >> 10) & 31;
    const uint32_t m = b & 1023u;
    float v;
    if (e == 31) v = m ? std::numeric_limits<float>::quiet_NaN() : kInf;
    else if (e == 0) v = std::ldexp(float(m), -24);
    else v = std::ldexp(float(m | 1024u), e - 25);
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    bits |= sign;
    std::memcpy(&v, &bits, 4);
    return v;
}

uint16_t f2h(float f) {  // round to nearest even, like __float2half_rn
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
    if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00u);
    if (ax < 0x38800000u) {
        if (ax < 0x33000000u) return sign;
        const uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u, shift = 126 - e;
        uint32_t h = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1u))) ++h;
        return uint16_t(sign | h);
    }
    uint32_t h = (ax - 0x38000000u) >> 13;
    const uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return uint16_t(sign | h);
}

// ---------------------------------------------------------------- shared-memory image
// The kernel's dynamic shared memory as bytes, poisoned with 0xff (NaN as binary16 and float32);
// every access names its region, which must contain it.
struct Region {
    const char* name;
    int off, size;
};

struct SmemImage {
    std::vector<uint8_t> bytes;
    std::vector<Region> regions;
    void reset(const Plan& pl, int side2, int elem) {
        bytes.assign(size_t(pl.smem), 0xff);
        const int q = pl.qcap;
        regions = {{"qrow", pl.off_qrow, 4 * q},       {"qca", pl.off_qca, 4 * q},
                   {"qcb", pl.off_qcb, 4 * q},         {"qseg", pl.off_qseg, 4 * q},
                   {"qwb", pl.off_qwb, 4 * q},         {"skey", pl.off_skey, 4 * q},
                   {"segwb", pl.off_segwb, 4 * (q + 1)}, {"misc", pl.off_misc, 16},
                   {"raw", pl.off_raw, 4 * pl.rawcap}, {"krow", pl.off_krow, 4 * pl.rawcap},
                   {"kmeta", pl.off_kmeta, 4 * pl.rawcap}, {"bias", pl.off_bias, 4 * side2},
                   {"q", pl.off_q, elem * q * pl.dps}, {"k", pl.off_k, elem * pl.kc * pl.dps},
                   {"v", pl.off_v, elem * pl.kc * pl.dps}};
        if (elem == 4) regions.push_back({"pt", pl.off_pt, 4 * pl.warps * pl.kc * 16});
        // regions must not overlap and must fit
        for (size_t a = 0; a < regions.size(); ++a) {
            if (regions[a].off % 16) die(std::string("region not 16-byte aligned: ") + regions[a].name);
            if (regions[a].off + regions[a].size > pl.smem) die(std::string("region past smem: ") + regions[a].name);
            for (size_t b = a + 1; b < regions.size(); ++b)
                if (regions[a].off < regions[b].off + regions[b].size && regions[b].off < regions[a].off + regions[a].size)
                    die(std::string("regions overlap: ") + regions[a].name + " " + regions[b].name);
        }
    }
    uint8_t* at(const char* region, int64_t byte_off, int len, int align = 1) {
        for (const Region& r : regions)
            if (!std::strcmp(r.name, region)) {
                const int64_t a = int64_t(r.off) + byte_off;
                if (byte_off < 0 || byte_off + len > r.size)
                    die(std::string("shared access outside ") + region + " at byte " + std::to_string(byte_off));
                if (a % align) die(std::string("misaligned shared access in ") + region);
                return bytes.data() + a;
            }
        die(std::string("no region ") + region);
    }
    int32_t& i32(const char* region, int64_t idx) { return *reinterpret_cast<int32_t*>(at(region, 4 * idx, 4, 4)); }
    float& f32(const char* region, int64_t idx) { return *reinterpret_cast<float*>(at(region, 4 * idx, 4, 4)); }
    uint16_t& u16(const char* region, int64_t idx) { return *reinterpret_cast<uint16_t*>(at(region, 2 * idx, 2, 2)); }
};

// ---------------------------------------------------------------- spec emulation of ldmatrix / mma
// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lane L gives the row address of row L % 8 of
// matrix L / 8 (16 bytes, 16-aligned). Without .trans lane 4g + t receives, per matrix i, the pair
// (row g, cols 2t, 2t+1) (low half = col 2t); with .trans the pair (rows 2t, 2t+1; col g).
void ldmatrix_x4(SmemImage& sm, const char* region, const int64_t (&elem_off)[32], bool trans, uint32_t (&r)[32][4]) {
    uint16_t mat[4][8][8];
    for (int i = 0; i < 4; ++i)
        for (int row = 0; row < 8; ++row) {
            const uint8_t* p = sm.at(region, 2 * elem_off[8 * i + row], 16, 16);
            for (int c = 0; c < 8; ++c) std::memcpy(&mat[i][row][c], p + 2 * c, 2);
        }
    for (int lane = 0; lane < 32; ++lane) {
        const int g = lane >> 2, t = lane & 3;
        for (int i = 0; i < 4; ++i) {
            const uint16_t lo = trans ? mat[i][2 * t][g] : mat[i][g][2 * t];
            const uint16_t hi = trans ? mat[i][2 * t + 1][g] : mat[i][g][2 * t + 1];
            r[lane][i] = uint32_t(lo) | uint32_t(hi) << 16;
        }
    }
}

// mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32, from the PTX ISA's fragment layouts
// (lane 4g + t): A a0..a7 = (g, 2t..2t+1), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..) in 4 regs;
// B b0..b3 = (k 2t..2t+1, n g), (k 2t+8.., n g) in 2 regs; C / D c0..c3 = (g, 2t..2t+1), (g+8, 2t..).
void mma_16816(float (&d)[32][4], const uint32_t (&a)[32][4], const uint32_t (&b0)[32], const uint32_t (&b1)[32]) {
    float A[16][16], B[16][8], C[16][8];
    auto lo = [](uint32_t x) { return h2f(uint16_t(x & 0xffffu)); };
    auto hi = [](uint32_t x) { return h2f(uint16_t(x >> 16)); };
    for (int lane = 0; lane < 32; ++lane) {
        const int g = lane >> 2, t = lane & 3;
        A[g][2 * t] = lo(a[lane][0]), A[g][2 * t + 1] = hi(a[lane][0]);
        A[g + 8][2 * t] = lo(a[lane][1]), A[g + 8][2 * t + 1] = hi(a[lane][1]);
        A[g][2 * t + 8] = lo(a[lane][2]), A[g][2 * t + 9] = hi(a[lane][2]);
        A[g + 8][2 * t + 8] = lo(a[lane][3]), A[g + 8][2 * t + 9] = hi(a[lane][3]);
        B[2 * t][g] = lo(b0[lane]), B[2 * t + 1][g] = hi(b0[lane]);
        B[2 * t + 8][g] = lo(b1[lane]), B[2 * t + 9][g] = hi(b1[lane]);
        C[g][2 * t] = d[lane][0], C[g][2 * t + 1] = d[lane][1];
        C[g + 8][2 * t] = d[lane][2], C[g + 8][2 * t + 1] = d[lane][3];
    }
    for (int i = 0; i < 16; ++i)
        for (int j = 0; j < 8; ++j) {
            float s = C[i][j];
            for (int kk = 0; kk < 16; ++kk) s += A[i][kk] * B[kk][j];
            C[i][j] = s;
        }
    for (int lane = 0; lane < 32; ++lane) {
        const int g = lane >> 2, t = lane & 3;
        d[lane][0] = C[g][2 * t], d[lane][1] = C[g][2 * t + 1];
        d[lane][2] = C[g + 8][2 * t], d[lane][3] = C[g + 8][2 * t + 1];
    }
}

uint32_t pack_half2(float lo, float hi) { return uint32_t(f2h(lo)) | uint32_t(f2h(hi)) << 16; }

struct float4_t {
    float v[4];
};

// ---------------------------------------------------------------- the emulated launch
template <typename E>  // float or uint16_t (binary16 bits)
struct Emu {
    static constexpr bool kHalf = sizeof(E) == 2;
    const SwaParams& p;
    const Plan& pl;
    const E *q, *k, *v;
    E* out;
    bool vec;
    std::vector<int>& written;  // per (row, head)
    SmemImage sm;
    int nthreads = 0;

    Emu(const SwaParams& p_, const Plan& pl_, const E* q_, const E* k_, const E* v_, E* out_, bool vec_,
        std::vector<int>& w)
        : p(p_), pl(pl_), q(q_), k(k_), v(v_), out(out_), vec(vec_), written(w) {}

    E& tile(const char* region, int64_t idx) {
        return *reinterpret_cast<E*>(sm.at(region, int64_t(sizeof(E)) * idx, int(sizeof(E)), int(sizeof(E))));
    }
    static float widen(E x) {
        if constexpr (kHalf) return h2f(x);
        else return x;
    }
    static E narrow(float x) {
        if constexpr (kHalf) return f2h(x);
        else return x;
    }

    // stage_rows: every thread's elements (the thread order does not matter between barriers).
    void stage_rows(const char* region, int tile_rows, const char* rows_region, int rows_at, int nvalid, const E* src,
                    int64_t C, int64_t col0) {
        const int VE = 16 / int(sizeof(E));
        const int VPR = pl.dp / VE;
        const int dh = p.head_dim;
        for (int e = 0; e < tile_rows * VPR; ++e) {
            const int r = e / VPR, d0 = (e % VPR) * VE;
            E x[8];
            for (int u = 0; u < VE; ++u) x[u] = E(0);
            if (r < nvalid && d0 < dh) {
                const int64_t row = sm.i32(rows_region, rows_at + r);
                if (row < 0 || row >= p.n) die("staged row out of range");
                const int64_t at = row * C + col0 + d0;
                if (vec) {
                    if (d0 + VE > dh || at % VE) die("vector load crosses the head or is misaligned");
                    for (int u = 0; u < VE; ++u) x[u] = src[at + u];
                } else {
                    for (int u = 0; u < VE; ++u) x[u] = d0 + u < dh ? src[at + u] : E(0);
                }
            }
            uint8_t* dst = sm.at(region, int64_t(sizeof(E)) * (int64_t(r) * pl.dps + d0), 16, 16);
            std::memcpy(dst, x, 16);
        }
    }

    void build_round(int64_t wa, int round, int nseg) {
        const int S = p.window, S2 = S * S;
        const int s_begin = round * pl.spr, s_end = std::min(nseg, s_begin + pl.spr);
        const int nraw = (s_end - s_begin) * S2;
        for (int e = 0; e < nraw; ++e) {
            const int seg = s_begin + e / S2, t = e % S2;
            sm.i32("raw", e) = key_of_slot(p, seg, wa, seg == 0 ? 0 : sm.i32("segwb", seg), t);
        }
        int count = 0;
        for (int base = 0; base < nraw; base += 32) {  // warp 0's ballot compaction
            uint32_t m = 0;
            int32_t j[32];
            for (int lane = 0; lane < 32; ++lane) {
                const int e = base + lane;
                j[lane] = e < nraw ? sm.i32("raw", e) : -1;
                if (j[lane] >= 0) m |= 1u << lane;
            }
            for (int lane = 0; lane < 32; ++lane) {
                if (j[lane] < 0) continue;
                const int e = base + lane;
                const int at = count + __builtin_popcount(m & ((1u << lane) - 1u));
                const int seg = s_begin + e / S2, t = e % S2;
                sm.i32("krow", at) = j[lane];
                sm.i32("kmeta", at) = key_meta(slot_cell(t, S), seg);
            }
            count += __builtin_popcount(m);
        }
        sm.i32("misc", kMiscKeys) = count;
    }

    // ---- float16 warp (HalfWarp)
    struct HalfState {
        RowInfo ri[32][2];
        float m[32][2], l[32][2];
        std::vector<float> o;  // [lane][DT][4]
    };

    void half_chunk(HalfState& st, int r0, int c0, int kc_n, int32_t base) {
        const int KC = pl.kc, DP = pl.dp, NT = KC / 8, DT = DP / 8, dps = pl.dps;
        std::vector<float> sc(size_t(32 * NT * 4), 0.f);
        auto S = [&](int lane, int n, int e) -> float& { return sc[size_t((lane * NT + n) * 4 + e)]; };
        for (int kb = 0; kb < DP / 16; ++kb) {
            int64_t addr[32];
            uint32_t a[32][4];
            for (int lane = 0; lane < 32; ++lane)
                addr[lane] = int64_t(r0 + ldsm_q_row(lane)) * dps + kb * 16 + ldsm_q_col(lane);
            ldmatrix_x4(sm, "q", addr, false, a);
            for (int n2 = 0; n2 < KC / 16; ++n2) {
                if (!(n2 * 16 < kc_n)) continue;
                uint32_t b[32][4];
                for (int lane = 0; lane < 32; ++lane)
                    addr[lane] = int64_t(n2 * 16 + ldsm_k_row(lane)) * dps + kb * 16 + ldsm_k_col(lane);
                ldmatrix_x4(sm, "k", addr, false, b);
                for (int half = 0; half < 2; ++half) {
                    float d[32][4];
                    uint32_t b0[32], b1[32];
                    for (int lane = 0; lane < 32; ++lane) {
                        for (int e = 0; e < 4; ++e) d[lane][e] = S(lane, 2 * n2 + half, e);
                        b0[lane] = b[lane][2 * half], b1[lane] = b[lane][2 * half + 1];
                    }
                    mma_16816(d, a, b0, b1);
                    for (int lane = 0; lane < 32; ++lane)
                        for (int e = 0; e < 4; ++e) S(lane, 2 * n2 + half, e) = d[lane][e];
                }
            }
        }
        float mx[32][2];
        for (int lane = 0; lane < 32; ++lane) {
            mx[lane][0] = mx[lane][1] = -kInf;
            for (int n = 0; n < NT; ++n)
                for (int e2 = 0; e2 < 2; ++e2) {
                    const int col = n * 8 + acc_col(lane, e2);
                    const bool kin = col < kc_n;
                    const int32_t kr = kin ? sm.i32("krow", c0 + col) : -1;
                    const int32_t meta = kin ? sm.i32("kmeta", c0 + col) : 0;
                    for (int h = 0; h < 2; ++h) {
                        float x = -kInf;
                        if (kin && key_allowed(st.ri[lane][h], kr, meta))
                            x = std::fma(p.scale, S(lane, n, 2 * h + e2),
                                         sm.f32("bias", key_bias_offset(st.ri[lane][h], meta, base)));
                        S(lane, n, 2 * h + e2) = x;
                        mx[lane][h] = std::max(mx[lane][h], x);
                    }
                }
        }
        shuffle_max(mx, 1), shuffle_max(mx, 2);
        float corr[32][2];
        bool any = false;
        for (int lane = 0; lane < 32; ++lane)
            for (int h = 0; h < 2; ++h) {
                const float mn = std::max(st.m[lane][h], mx[lane][h]);
                corr[lane][h] = mn == -kInf ? 1.f : std::exp(st.m[lane][h] - mn);
                st.m[lane][h] = mn;
                float sum = 0.f;
                for (int n = 0; n < NT; ++n)
                    for (int e2 = 0; e2 < 2; ++e2) {
                        const float x = S(lane, n, 2 * h + e2);
                        const float w = x == -kInf ? 0.f : std::exp(x - mn);
                        S(lane, n, 2 * h + e2) = w;
                        sum += w;
                        any = any || w != 0.f;
                    }
                st.l[lane][h] = st.l[lane][h] * corr[lane][h] + sum;
            }
        for (int lane = 0; lane < 32; ++lane)
            for (int d = 0; d < DT; ++d)
                for (int e = 0; e < 4; ++e) st.o[size_t((lane * DT + d) * 4 + e)] *= corr[lane][e >> 1];
        if (!any) return;
        for (int kb = 0; kb < KC / 16; ++kb) {
            if (!(kb * 16 < kc_n)) continue;
            uint32_t a[32][4];
            for (int lane = 0; lane < 32; ++lane) {
                a[lane][0] = pack_half2(S(lane, 2 * kb, 0), S(lane, 2 * kb, 1));
                a[lane][1] = pack_half2(S(lane, 2 * kb, 2), S(lane, 2 * kb, 3));
                a[lane][2] = pack_half2(S(lane, 2 * kb + 1, 0), S(lane, 2 * kb + 1, 1));
                a[lane][3] = pack_half2(S(lane, 2 * kb + 1, 2), S(lane, 2 * kb + 1, 3));
            }
            for (int dn = 0; dn < DP / 16; ++dn) {
                int64_t addr[32];
                uint32_t b[32][4];
                for (int lane = 0; lane < 32; ++lane)
                    addr[lane] = int64_t(kb * 16 + ldsm_v_row(lane)) * dps + dn * 16 + ldsm_v_col(lane);
                ldmatrix_x4(sm, "v", addr, true, b);
                for (int half = 0; half < 2; ++half) {
                    float d[32][4];
                    uint32_t b0[32], b1[32];
                    for (int lane = 0; lane < 32; ++lane) {
                        for (int e = 0; e < 4; ++e) d[lane][e] = st.o[size_t((lane * DT + 2 * dn + half) * 4 + e)];
                        b0[lane] = b[lane][2 * half], b1[lane] = b[lane][2 * half + 1];
                    }
                    mma_16816(d, a, b0, b1);
                    for (int lane = 0; lane < 32; ++lane)
                        for (int e = 0; e < 4; ++e) st.o[size_t((lane * DT + 2 * dn + half) * 4 + e)] = d[lane][e];
                }
            }
        }
    }

    void half_finish(HalfState& st, int r0) {
        const int DT = pl.dp / 8;
        float lt[32][2];
        for (int lane = 0; lane < 32; ++lane) lt[lane][0] = st.l[lane][0], lt[lane][1] = st.l[lane][1];
        shuffle_sum(lt, 1), shuffle_sum(lt, 2);
        for (int lane = 0; lane < 32; ++lane)
            for (int d = 0; d < DT; ++d) {
                const int col = d * 8 + acc_col(lane, 0);
                for (int h = 0; h < 2; ++h) {
                    const float inv = lt[lane][h] > 0.f ? 1.f / lt[lane][h] : 0.f;
                    const int row = r0 + acc_row(lane, 2 * h);
                    const uint32_t x = pack_half2(st.o[size_t((lane * DT + d) * 4 + 2 * h)] * inv,
                                                  st.o[size_t((lane * DT + d) * 4 + 2 * h + 1)] * inv);
                    std::memcpy(sm.at("q", 2 * (int64_t(row) * pl.dps + col), 4, 4), &x, 4);
                }
            }
    }

    // ---- float32 warp (FloatWarp)
    struct FloatState {
        RowInfo ri[32][4];
        float m[32][4], l[32][4];
        std::vector<float> o;  // [lane][4][NU][4]
    };

    float4_t load4(const char* region, int64_t elem) {
        float4_t r;
        std::memcpy(r.v, sm.at(region, 4 * elem, 16, 16), 16);
        return r;
    }
    void float_chunk(FloatState& st, int warp, int r0, int c0, int kc_n, int32_t base) {
        const int KC = pl.kc, DP = pl.dp, NC = KC / 8, NU = DP / 32, dps = pl.dps;
        std::vector<float> sc(size_t(32 * 4 * NC), 0.f);
        auto S = [&](int lane, int a, int c) -> float& { return sc[size_t((lane * 4 + a) * NC + c)]; };
        for (int lane = 0; lane < 32; ++lane)
            for (int d = 0; d < DP; d += 4)
                for (int a = 0; a < 4; ++a) {
                    const float4_t qv = load4("q", int64_t(r0 + simt_row(lane, a)) * dps + d);
                    for (int c = 0; c < NC; ++c) {
                        const float4_t kv = load4("k", int64_t(simt_key(lane, c)) * dps + d);
                        float x = S(lane, a, c);
                        for (int u = 0; u < 4; ++u) x = std::fma(qv.v[u], kv.v[u], x);
                        S(lane, a, c) = x;
                    }
                }
        float mx[32][4];
        for (int lane = 0; lane < 32; ++lane) {
            for (int a = 0; a < 4; ++a) mx[lane][a] = -kInf;
            for (int c = 0; c < NC; ++c) {
                const int col = simt_key(lane, c);
                const bool kin = col < kc_n;
                const int32_t kr = kin ? sm.i32("krow", c0 + col) : -1;
                const int32_t meta = kin ? sm.i32("kmeta", c0 + col) : 0;
                for (int a = 0; a < 4; ++a) {
                    float x = -kInf;
                    if (kin && key_allowed(st.ri[lane][a], kr, meta))
                        x = std::fma(p.scale, S(lane, a, c), sm.f32("bias", key_bias_offset(st.ri[lane][a], meta, base)));
                    S(lane, a, c) = x;
                    mx[lane][a] = std::max(mx[lane][a], x);
                }
            }
        }
        shuffle_max(mx, 1), shuffle_max(mx, 2), shuffle_max(mx, 4);
        bool any = false;
        for (int lane = 0; lane < 32; ++lane)
            for (int a = 0; a < 4; ++a) {
                const float mn = std::max(st.m[lane][a], mx[lane][a]);
                const float corr = mn == -kInf ? 1.f : std::exp(st.m[lane][a] - mn);
                st.m[lane][a] = mn;
                float sum = 0.f;
                for (int c = 0; c < NC; ++c) {
                    const float x = S(lane, a, c);
                    const float w = x == -kInf ? 0.f : std::exp(x - mn);
                    S(lane, a, c) = w;
                    sum += w;
                    any = any || w != 0.f;
                }
                st.l[lane][a] = st.l[lane][a] * corr + sum;
                for (int u = 0; u < NU; ++u)
                    for (int e = 0; e < 4; ++e) st.o[size_t(((lane * 4 + a) * NU + u) * 4 + e)] *= corr;
            }
        if (!any) return;
        const int64_t pt0 = int64_t(warp) * KC * 16;
        for (int lane = 0; lane < 32; ++lane) {
            const int rg = lane >> 3;
            for (int c = 0; c < NC; ++c) {
                float w4[4] = {S(lane, 0, c), S(lane, 1, c), S(lane, 2, c), S(lane, 3, c)};
                std::memcpy(sm.at("pt", 4 * (pt0 + int64_t(simt_key(lane, c)) * 16 + simt_pt_pos(rg)), 16, 16), w4, 16);
            }
        }
        for (int lane = 0; lane < 32; ++lane) {
            const int rg = lane >> 3;
            for (int kk = 0; kk < kc_n; ++kk) {
                const float4_t w = load4("pt", pt0 + int64_t(kk) * 16 + simt_pt_pos(rg));
                for (int u = 0; u < NU; ++u) {
                    const float4_t x = load4("v", int64_t(kk) * dps + simt_col(lane, u));
                    for (int a = 0; a < 4; ++a)
                        for (int e = 0; e < 4; ++e) {
                            float& o = st.o[size_t(((lane * 4 + a) * NU + u) * 4 + e)];
                            o = std::fma(w.v[a], x.v[e], o);
                        }
                }
            }
        }
    }

    void float_finish(FloatState& st, int r0) {
        const int NU = pl.dp / 32;
        float lt[32][4];
        for (int lane = 0; lane < 32; ++lane)
            for (int a = 0; a < 4; ++a) lt[lane][a] = st.l[lane][a];
        shuffle_sum(lt, 1), shuffle_sum(lt, 2), shuffle_sum(lt, 4);
        for (int lane = 0; lane < 32; ++lane)
            for (int a = 0; a < 4; ++a) {
                const float inv = lt[lane][a] > 0.f ? 1.f / lt[lane][a] : 0.f;
                const int row = r0 + simt_row(lane, a);
                for (int u = 0; u < NU; ++u) {
                    float x[4];
                    for (int e = 0; e < 4; ++e) x[e] = st.o[size_t(((lane * 4 + a) * NU + u) * 4 + e)] * inv;
                    std::memcpy(sm.at("q", 4 * (int64_t(row) * pl.dps + simt_col(lane, u)), 16, 16), x, 16);
                }
            }
    }

    template <int N>
    static void shuffle_max(float (&x)[32][N], int mask) {
        float y[32][N];
        for (int lane = 0; lane < 32; ++lane)
            for (int h = 0; h < N; ++h) y[lane][h] = std::max(x[lane][h], x[lane ^ mask][h]);
        std::memcpy(x, y, sizeof y);
    }
    template <int N>
    static void shuffle_sum(float (&x)[32][N], int mask) {
        float y[32][N];
        for (int lane = 0; lane < 32; ++lane)
            for (int h = 0; h < N; ++h) y[lane][h] = x[lane][h] + x[lane ^ mask][h];
        std::memcpy(x, y, sizeof y);
    }

    void write_rows(int r0, int r1, int64_t C, int64_t col0, int h) {
        const int dh = p.head_dim;
        for (int r = r0; r < r1; ++r) {
            const int64_t row = sm.i32("qrow", r);
            if (row < 0 || row >= p.n) die("output row out of range");
            ++written[size_t(row * p.num_heads + h)];
            for (int d = 0; d < dh; ++d) out[row * C + col0 + d] = tile("q", int64_t(r) * pl.dps + d);
        }
    }

    // One block of the window kernel.
    void block(int64_t b) {
        const int S = p.window, side2 = (2 * S - 1) * (2 * S - 1);
        sm.reset(pl, side2, int(sizeof(E)));
        nthreads = pl.warps * 32;
        const int hg = int(b % pl.ngroups);
        const int64_t wq = b / pl.ngroups, wa = wq / pl.nqc;
        const int qc = int(wq % pl.nqc);
        std::vector<Query> qi(static_cast<size_t>(nthreads));
        int nq = 0;
        for (int tid = 0; tid < pl.qcap; ++tid) {
            qi[size_t(tid)] = query_of_slot(p, wa, qc * pl.qcap + tid);
            sm.i32("skey", tid) = int32_t(query_sort_key(qi[size_t(tid)]));
            nq += qi[size_t(tid)].valid;
        }
        if (nq == 0) return;
        for (int tid = 0; tid < pl.qcap; ++tid) {
            if (!qi[size_t(tid)].valid) continue;
            const uint32_t key = query_sort_key(qi[size_t(tid)]);
            int rank = 0;
            for (int u = 0; u < pl.qcap; ++u) {
                const uint32_t ku = uint32_t(sm.i32("skey", u));
                rank += ku < key || (ku == key && u < tid);
            }
            if (rank >= nq) die("query rank out of range");
            sm.i32("qrow", rank) = qi[size_t(tid)].row;
            sm.i32("qca", rank) = qi[size_t(tid)].ca;
            sm.i32("qcb", rank) = qi[size_t(tid)].cb;
            sm.i32("qwb", rank) = qi[size_t(tid)].wb;
        }
        for (int tid = 0; tid < nq; ++tid) {
            const int32_t wb = sm.i32("qwb", tid);
            int seg = -1;
            if (wb >= 0) {
                seg = 0;
                for (int u = 0; u <= tid; ++u) {
                    const int32_t w = sm.i32("qwb", u);
                    seg += w >= 0 && (u == 0 || sm.i32("qwb", u - 1) != w);
                }
                if (tid == 0 || sm.i32("qwb", tid - 1) != wb) sm.i32("segwb", seg) = wb;
            }
            sm.i32("qseg", tid) = seg;
            if (tid == nq - 1) sm.i32("misc", kMiscSegments) = 1 + (seg > 0 ? seg : 0);
        }
        const int nseg = sm.i32("misc", kMiscSegments);
        const int nrounds = (nseg + pl.spr - 1) / pl.spr;
        // every B-window of a query is a segment, and the segments are distinct
        for (int r = 0; r < nq; ++r) {
            const int32_t seg = sm.i32("qseg", r), wb = sm.i32("qwb", r);
            if ((wb < 0) != (seg < 0) || (seg >= 0 && (seg < 1 || seg >= nseg || sm.i32("segwb", seg) != wb)))
                die("query segment mismatch");
        }
        for (int s1 = 1; s1 < nseg; ++s1)
            for (int s2 = s1 + 1; s2 < nseg; ++s2)
                if (sm.i32("segwb", s1) == sm.i32("segwb", s2)) die("duplicate segment");

        const int NR = kHalf ? 2 : 4;
        std::vector<HalfState> hs;
        std::vector<FloatState> fs;
        if (kHalf) hs.resize(size_t(pl.warps));
        else fs.resize(size_t(pl.warps));
        for (int w = 0; w < pl.warps; ++w)
            for (int lane = 0; lane < 32; ++lane)
                for (int h = 0; h < NR; ++h) {
                    const int r = w * 16 + (NR == 2 ? acc_row(lane, 2 * h) : simt_row(lane, h));
                    RowInfo ri;
                    ri.valid = r < nq;
                    if (ri.valid) {
                        ri.row = sm.i32("qrow", r);
                        ri.ca = sm.i32("qca", r);
                        ri.cb = sm.i32("qcb", r);
                        ri.seg = sm.i32("qseg", r);
                        ri.noself = ri.row == 0 || int64_t(ri.row) == p.n - 1;
                    }
                    if (kHalf) hs[size_t(w)].ri[lane][h] = ri;
                    else fs[size_t(w)].ri[lane][h] = ri;
                }
        if (nrounds == 1) build_round(wa, 0, nseg);
        const int H = p.num_heads, Dh = p.head_dim;
        const int64_t C = int64_t(H) * Dh;
        const int32_t base = bias_base(S);
        const int mrows = (nq + 15) / 16 * 16;
        for (int h = hg * pl.hpb; h < std::min(H, (hg + 1) * pl.hpb); ++h) {
            const int64_t col0 = int64_t(h) * Dh;
            for (int e = 0; e < side2; ++e) sm.f32("bias", e) = p.bias[int64_t(h) * side2 + e];
            stage_rows("q", mrows, "qrow", 0, nq, q, C, col0);
            for (int w = 0; w < pl.warps; ++w) {
                if (kHalf) {
                    HalfState& st = hs[size_t(w)];
                    for (int lane = 0; lane < 32; ++lane) st.m[lane][0] = st.m[lane][1] = -kInf, st.l[lane][0] = st.l[lane][1] = 0;
                    st.o.assign(size_t(32 * (pl.dp / 8) * 4), 0.f);
                } else {
                    FloatState& st = fs[size_t(w)];
                    for (int lane = 0; lane < 32; ++lane)
                        for (int a = 0; a < 4; ++a) st.m[lane][a] = -kInf, st.l[lane][a] = 0;
                    st.o.assign(size_t(32 * 4 * (pl.dp / 32) * 4), 0.f);
                }
            }
            for (int round = 0; round < nrounds; ++round) {
                if (nrounds > 1) build_round(wa, round, nseg);
                const int nkeys = sm.i32("misc", kMiscKeys);
                for (int c0 = 0; c0 < nkeys; c0 += pl.kc) {
                    const int kc_n = std::min(pl.kc, nkeys - c0);
                    stage_rows("k", pl.kc, "krow", c0, kc_n, k, C, col0);
                    stage_rows("v", pl.kc, "krow", c0, kc_n, v, C, col0);
                    for (int w = 0; w < pl.warps; ++w) {
                        if (w * 16 >= nq) continue;
                        if (kHalf) half_chunk(hs[size_t(w)], w * 16, c0, kc_n, base);
                        else float_chunk(fs[size_t(w)], w, w * 16, c0, kc_n, base);
                    }
                }
            }
            for (int w = 0; w < pl.warps; ++w) {
                if (w * 16 >= nq) continue;
                if (kHalf) half_finish(hs[size_t(w)], w * 16);
                else float_finish(fs[size_t(w)], w * 16);
                write_rows(w * 16, std::min(w * 16 + 16, nq), C, col0, h);
            }
        }
    }

    // The per-row kernel: the rows the window kernel does not own, with the reference logic.
    void rows() {
        const int64_t slots = int64_t(p.window) * p.window;
        for (int64_t i = 0; i < p.n; ++i) {
            const int64_t pa = p.pos_a[i];
            const bool owned = pa >= 0 && pa < p.num_win_a * slots && p.win_a[pa] == i;
            if (owned) continue;
            for (int h = 0; h < p.num_heads; ++h) ++written[size_t(i * p.num_heads + h)];
            if constexpr (kHalf)
                swa_forward_cpu_reference_rows(p, reinterpret_cast<const SwaHalf*>(q), reinterpret_cast<const SwaHalf*>(k),
                                               reinterpret_cast<const SwaHalf*>(v), reinterpret_cast<SwaHalf*>(out), i,
                                               i + 1);
            else
                swa_forward_cpu_reference_rows(p, q, k, v, out, i, i + 1);
        }
    }
};

// ---------------------------------------------------------------- cases
struct Tables {
    int64_t wa = 0, wb = 0;
    std::vector<int32_t> win_a, pos_a, win_b, pos_b;
};

// Sparse grid (fill), windows of S cells, B shifted by S/2; rows optionally permuted and the
// windows shuffled.
Tables grid_tables(Rng& rng, int64_t rows, int64_t cols, double fill, int S, bool permute) {
    std::vector<std::pair<int64_t, int64_t>> cells;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
            if (rng.chance(fill)) cells.push_back({r, c});
    if (permute)
        for (size_t i = cells.size(); i > 1; --i) std::swap(cells[i - 1], cells[size_t(rng.uniform(0, int64_t(i) - 1))]);
    Tables t;
    const int64_t S2 = int64_t(S) * S;
    auto make = [&](int shift, int64_t& nw, std::vector<int32_t>& win, std::vector<int32_t>& pos) {
        const int64_t wcols = (cols + shift) / S + 1, wrows = (rows + shift) / S + 1;
        std::vector<int64_t> id(size_t(wcols * wrows), -1);
        std::vector<int64_t> order;
        for (size_t i = 0; i < cells.size(); ++i) {
            const int64_t key = ((cells[i].first + shift) / S) * wcols + (cells[i].second + shift) / S;
            if (id[size_t(key)] < 0) id[size_t(key)] = int64_t(order.size()), order.push_back(key);
        }
        nw = int64_t(order.size());
        std::vector<int64_t> perm(static_cast<size_t>(nw));
        for (int64_t w = 0; w < nw; ++w) perm[size_t(w)] = w;
        if (permute)
            for (size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[size_t(rng.uniform(0, int64_t(i) - 1))]);
        win.assign(size_t(nw * S2), -1);
        pos.assign(cells.size(), -1);
        for (size_t i = 0; i < cells.size(); ++i) {
            const int64_t key = ((cells[i].first + shift) / S) * wcols + (cells[i].second + shift) / S;
            const int64_t w = perm[size_t(id[size_t(key)])];
            const int64_t slot = ((cells[i].first + shift) % S) * S + (cells[i].second + shift) % S;
            pos[i] = int32_t(w * S2 + slot);
            win[size_t(pos[i])] = int32_t(i);
        }
    };
    make(0, t.wa, t.win_a, t.pos_a);
    make(S / 2, t.wb, t.win_b, t.pos_b);
    return t;
}

// Adversarial edits: inconsistent / out-of-range positions, duplicate and out-of-range entries.
void corrupt(Rng& rng, Tables& t, int64_t n, int S, double rate) {
    const int64_t S2 = int64_t(S) * S;
    for (auto* pr : {&t.pos_a, &t.pos_b}) {
        std::vector<int32_t>& pos = *pr;
        const int64_t nslots = int64_t(pr == &t.pos_a ? t.win_a.size() : t.win_b.size());
        for (int64_t i = 0; i < n; ++i) {
            if (!rng.chance(rate)) continue;
            switch (rng.uniform(0, 3)) {
            case 0: pos[size_t(i)] = int32_t(rng.uniform(0, std::max<int64_t>(0, nslots - 1))); break;  // elsewhere
            case 1: pos[size_t(i)] = -int32_t(rng.uniform(1, 5)); break;
            case 2: pos[size_t(i)] = int32_t(nslots + rng.uniform(0, 3)); break;
            default: pos[size_t(i)] = int32_t(std::min<int64_t>(INT32_MAX, nslots + S2 * 100)); break;
            }
        }
    }
    for (auto* wr : {&t.win_a, &t.win_b})
        for (auto& e : *wr) {
            if (!rng.chance(rate)) continue;
            switch (rng.uniform(0, 3)) {
            case 0: e = int32_t(rng.uniform(0, n - 1)); break;  // duplicate (or move) a row
            case 1: e = int32_t(n + rng.uniform(0, 3)); break;
            case 2: e = -int32_t(rng.uniform(2, 7)); break;
            default: e = -1; break;
            }
        }
}

struct Spec {
    std::string name;
    int64_t rows, cols;
    double fill;
    int H, Dh, S, mode;
    bool permute = false;
    double corrupt = 0;
    double ninf_bias = 0;  // fraction of -inf bias entries
    int64_t force_n = -1;  // N = 1, 2: cells ignored
    bool empty_windows = false;
    bool random_pos_b = false;  // every query its own B-window (many segments, rounds)
};

int g_cases = 0, g_window_cases = 0;

template <typename E>
void run(const Spec& sp, Rng& rng, bool misalign) {
    Tables t;
    int64_t n;
    if (sp.force_n >= 0) {
        n = sp.force_n;
        const int64_t S2 = int64_t(sp.S) * sp.S;
        t.wa = t.wb = 1;
        t.win_a.assign(size_t(S2), -1), t.win_b.assign(size_t(S2), -1);
        for (int64_t i = 0; i < n; ++i) {
            t.pos_a.push_back(int32_t(i % S2)), t.win_a[size_t(i % S2)] = int32_t(i);
            t.pos_b.push_back(int32_t((i + 1) % S2)), t.win_b[size_t((i + 1) % S2)] = int32_t(i);
        }
    } else {
        t = grid_tables(rng, sp.rows, sp.cols, sp.fill, sp.S, sp.permute);
        n = int64_t(t.pos_a.size());
    }
    if (sp.random_pos_b && t.wb > 0)
        for (auto& x : t.pos_b) x = int32_t(rng.uniform(0, t.wb * sp.S * sp.S - 1));
    if (sp.corrupt > 0) corrupt(rng, t, n, sp.S, sp.corrupt);
    if (sp.empty_windows) std::fill(t.win_a.begin(), t.win_a.end(), -1), std::fill(t.win_b.begin(), t.win_b.end(), -1);
    const int64_t C = int64_t(sp.H) * sp.Dh, side = 2 * sp.S - 1;
    // one extra element in front when misaligned: the kernel's scalar path
    const int64_t lead = misalign ? 1 : 0;
    std::vector<E> qb(size_t(n * C + lead)), kb(qb.size()), vb(qb.size()), o_emu(size_t(n * C)), o_cpu(size_t(n * C));
    auto fill = [&](std::vector<E>& x) {
        for (auto& e : x) {
            const float f = rng.real(-1.5f, 1.5f);
            if constexpr (sizeof(E) == 2) e = f2h(f);
            else e = f;
        }
    };
    fill(qb), fill(kb), fill(vb);
    std::vector<float> bias(size_t(sp.H * side * side));
    for (auto& x : bias) x = rng.chance(sp.ninf_bias) ? -kInf : rng.real(-1.f, 1.f);
    SwaParams p;
    p.n = n;
    p.num_win_a = t.wa;
    p.num_win_b = sp.mode == 1 ? t.wb : 0;
    p.num_heads = sp.H;
    p.head_dim = sp.Dh;
    p.window = sp.S;
    p.mode = sp.mode;
    p.scale = 1.f / std::sqrt(float(sp.Dh));
    p.win_a = t.win_a.data();
    p.pos_a = t.pos_a.data();
    p.win_b = sp.mode == 1 ? t.win_b.data() : nullptr;  // mode 0 must not read them
    p.pos_b = sp.mode == 1 ? t.pos_b.data() : nullptr;
    p.bias = bias.data();
    const E* q = qb.data() + lead;
    const E* k = kb.data() + lead;
    const E* v = vb.data() + lead;
    constexpr bool half = sizeof(E) == 2;
    if constexpr (half)
        swa_forward_cpu(p, reinterpret_cast<const SwaHalf*>(q), reinterpret_cast<const SwaHalf*>(k),
                        reinterpret_cast<const SwaHalf*>(v), reinterpret_cast<SwaHalf*>(o_cpu.data()), 1);
    else
        swa_forward_cpu(p, q, k, v, o_cpu.data(), 1);

    const Plan pl = plan_window(p, half);
    ++g_cases;
    if (!pl.ok) return;  // the reference kernel runs: nothing of the window kernel to emulate
    ++g_window_cases;
    std::vector<int> written(size_t(n * sp.H), 0);
    // poison the output: a row nobody writes shows up
    for (auto& e : o_emu) {
        if constexpr (half) e = 0x7e00;
        else e = std::numeric_limits<float>::quiet_NaN();
    }
    constexpr int VE = 16 / int(sizeof(E));
    const bool vec = !misalign && sp.Dh % VE == 0 && C % VE == 0;
    Emu<E> emu(p, pl, q, k, v, o_emu.data(), vec, written);
    for (int64_t b = 0; b < pl.blocks; ++b) emu.block(b);
    emu.rows();
    for (size_t i = 0; i < written.size(); ++i)
        if (written[i] != 1)
            die(sp.name + ": row " + std::to_string(i / size_t(sp.H)) + " head " + std::to_string(i % size_t(sp.H)) +
                " written " + std::to_string(written[i]) + " times");
    double peak = 0, err = 0;
    int64_t worst = -1;
    for (size_t e = 0; e < o_cpu.size(); ++e) {
        double c, g;
        if constexpr (half) c = h2f(o_cpu[e]), g = h2f(o_emu[e]);
        else c = o_cpu[e], g = o_emu[e];
        if (!std::isfinite(g)) die(sp.name + ": non-finite output at " + std::to_string(e));
        if (c == 0 && g != 0) {
            // a row with no key must be exact zeros: check the whole row is zero on the CPU
            const size_t r = e / size_t(C);
            bool zero_row = true;
            for (int64_t d = 0; d < C; ++d) {
                const double x = half ? double(h2f(uint16_t(o_cpu[r * size_t(C) + size_t(d)]))) : double(o_cpu[r * size_t(C) + size_t(d)]);
                zero_row = zero_row && x == 0;
            }
            if (zero_row) die(sp.name + ": row " + std::to_string(r) + " has no key but is not exactly zero");
        }
        peak = std::max(peak, std::fabs(c));
        if (std::fabs(g - c) > err) err = std::fabs(g - c), worst = int64_t(e);
    }
    const double tol = (half ? 5e-3 : 1e-5) * std::max(peak, 1e-30);
    const bool ok = err <= tol || (peak == 0 && err == 0);
    std::printf("%-34s %s N=%-6lld dp=%-3d kc=%-2d warps=%d nqc=%-2d spr=%-2d hpb=%d blocks=%-6lld smem=%-5d %s err=%.2e (tol %.2e)%s\n",
                sp.name.c_str(), half ? "fp16" : "fp32", (long long)n, pl.dp, pl.kc, pl.warps, pl.nqc, pl.spr, pl.hpb,
                (long long)pl.blocks, pl.smem, vec ? "vec" : "scalar", err, tol, ok ? "" : "  FAIL");
    if (!ok) die(sp.name + ": mismatch at element " + std::to_string(worst));
}

}  // namespace

int main(int argc, char** argv) {
    uint64_t seed = 12345;
    for (int a = 1; a < argc; ++a) {
        if (!std::strcmp(argv[a], "--seed") && a + 1 < argc) seed = std::strtoull(argv[++a], nullptr, 10);
        else {
            std::fprintf(stderr, "usage: %s [--seed N]\n", argv[0]);
            return 2;
        }
    }
    Rng rng{seed};
    std::vector<Spec> specs = {
        {"span H8 Dh64 S6 m1", 40, 40, 0.65, 8, 64, 6, 1},
        {"span H8 Dh64 S6 m0", 40, 40, 0.65, 8, 64, 6, 0},
        {"H4 Dh32 S8 m0", 30, 30, 0.6, 4, 32, 8, 0},
        {"H3 Dh20 S4 m1 (scalar)", 30, 30, 0.6, 3, 20, 4, 1},
        {"H2 Dh96 S6 m1", 24, 24, 0.7, 2, 96, 6, 1},
        {"H1 Dh1 S2 m1", 20, 20, 0.8, 1, 1, 2, 1},
        {"H3 Dh7 S3 m1 (odd C)", 20, 20, 0.7, 3, 7, 3, 1},
        {"H5 Dh8 S1 m1", 10, 10, 0.7, 5, 8, 1, 1},
        {"H2 Dh128 S6 m1", 20, 20, 0.7, 2, 128, 6, 1},
        {"H1 Dh256 S6 m1", 16, 16, 0.7, 1, 256, 6, 1},
        {"H2 Dh16 S12 m1 (rounds)", 40, 40, 0.7, 2, 16, 12, 1},
        {"H2 Dh32 S16 m1 (rounds, 4 chunks)", 40, 40, 0.7, 2, 32, 16, 1},
        {"H1 Dh16 S17 (falls back)", 20, 20, 0.7, 1, 16, 17, 1},
        {"N=1 m1", 0, 0, 0, 2, 16, 4, 1},
        {"N=1 m0", 0, 0, 0, 2, 16, 4, 0},
        {"N=2 m1", 0, 0, 0, 2, 16, 4, 1},
        {"N=2 m0", 0, 0, 0, 2, 16, 4, 0},
        {"no keys: empty windows m1", 12, 12, 0.8, 2, 32, 4, 1},
        {"no keys: all bias -inf m1", 12, 12, 0.8, 2, 32, 4, 1},
        {"random: permuted m1", 30, 30, 0.6, 4, 64, 6, 1},
        {"random: permuted m0", 30, 30, 0.6, 4, 64, 6, 0},
        {"random: own B-window each m1", 30, 30, 0.8, 2, 32, 6, 1},
        {"adversarial S6 m1", 30, 30, 0.7, 3, 32, 6, 1},
        {"adversarial S4 m0", 30, 30, 0.7, 2, 16, 4, 0},
        {"adversarial S8 m1 -inf", 30, 30, 0.7, 2, 64, 8, 1},
        {"adversarial S3 m1 permuted", 30, 30, 0.6, 2, 24, 3, 1},
    };
    for (Spec& s : specs) {
        if (s.name.rfind("N=1", 0) == 0) s.force_n = 1;
        if (s.name.rfind("N=2", 0) == 0) s.force_n = 2;
        if (s.name.find("empty windows") != std::string::npos) s.empty_windows = true;
        if (s.name.find("all bias -inf") != std::string::npos) s.ninf_bias = 1.0;
        if (s.name.rfind("random", 0) == 0) s.permute = true;
        if (s.name.find("own B-window") != std::string::npos) s.random_pos_b = true;
        if (s.name.rfind("adversarial", 0) == 0) s.corrupt = 0.08;
        if (s.name.find("-inf") != std::string::npos && s.ninf_bias == 0) s.ninf_bias = 0.1;
        if (s.name.find("permuted") != std::string::npos) s.permute = true;
    }
    for (const Spec& s : specs) {
        const bool scalar = s.name.find("scalar") != std::string::npos;
        run<float>(s, rng, scalar);
        run<uint16_t>(s, rng, scalar);
        if (!scalar && s.Dh % 8 == 0) {  // the same case through the scalar (unaligned) path
            run<float>(s, rng, true);
            run<uint16_t>(s, rng, true);
        }
    }
    std::printf("swa_window_tiling_check: %d cases OK (%d through the window kernel)\n", g_cases, g_window_cases);
    return 0;
}
