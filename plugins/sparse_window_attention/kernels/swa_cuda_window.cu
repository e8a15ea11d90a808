// CUDA SparseWindowAttention, window kernel (contract: ../op.yaml, ../README.md). The reference
// kernel (one block per query row) stays in swa_cuda.cu; swa_forward_cuda picks one of the two.
//
// One thread block per (A-window wa, query chunk, head group):
//   * queries: the consistent rows of wa, i = win_a[wa, t] with pos_a[i] == wa*S^2 + t, for the
//     chunk's slots t (at most 16 per warp, up to 4 warps); sorted by their B-window so that the
//     16 rows of a warp share few B-windows;
//   * keys: one list, compacted in slot order, per segment: segment 0 = the A keys of wa (every
//     valid slot; the self rule of rows 0 and N-1 is applied per query), segment s >= 1 = the B
//     keys of the s-th distinct B-window wb of the chunk's queries (valid slots whose own A-window
//     is not wa). A query sees segment 0 and its own wb's segment only, so its keys and their
//     multiplicities are exactly the reference's. When the segments do not fit the list
//     (kRawSlots slots), they are processed in rounds; the softmax state carries over.
//   * per head: the head's (2S-1)^2 bias table and the queries' Dh columns staged in shared
//     memory; then the key list in chunks of KC keys, K and V rows staged in shared memory, and
//     an online softmax in float32 per query: float16 runs Q.K^T and P.V on tensor cores
//     (mma.sync m16n8k16, fp32 accumulation; two m16n8k8 on sm_75), float32 a SIMT path (4x4
//     register tiles, no TF32) over the same staging.
// Rows the window kernel does not own (pos_a out of range, or win_a[pos_a[i]] != i) get the
// contract's result from a second, per-row kernel that skips every consistent row, so the two
// launches cover each row exactly once. Out-of-range table entries are empty slots. No
// workspace, no allocation, no synchronisation: CUDA-graph capturable. Where p does not fit this
// kernel (S > 16, head_dim > 256 (float16) / 128 (float32), or 48 KiB of shared memory), the
// call runs the reference kernel instead (plan_window, swa_cuda_window_kernel_for).
//
// Part 1 below is plain C++ (host and device): the plan (tiling, shared-memory layout) and the
// index / mask / fragment-layout helpers. kernels/tests/swa_window_tiling_check.cpp includes this
// file with SWA_WINDOW_HOST_ONLY defined and emulates the kernel on the host with the same
// helpers, against swa_forward_cpu.
#include "swa_kernels.h"

#include <cstdint>

#if defined(__CUDACC__)
#define SWA_HD __host__ __device__ __forceinline__
#else
#define SWA_HD inline
#endif

namespace span_deploy {
namespace swa_window {

// ============================================================================================
// Part 1: plan and helpers (host + device)
// ============================================================================================

constexpr int kMaxWindow = 16;        // S: the bias table (2S-1)^2 <= 961 floats in shared memory
constexpr int kRawSlots = 384;        // slots of the segments of one round (>= S^2 for S <= 16)
constexpr int kMaxWarps = 4;          // 16 query rows per warp
constexpr int kRowsPerBlock = 128;    // per-row kernel: rows checked per block (= its threads)
constexpr int kSmemLimit = 48 * 1024; // no opt-in attribute needed (and none set while capturing)
constexpr int kHeadCols = 128;        // heads per block: max(1, kHeadCols / padded head_dim)

// Shared-memory layout and launch shape of one call; computed on the host, passed by value.
struct Plan {
    bool ok = false;
    int dp = 0;       // padded head_dim (multiple of 16 / 32), the kernel's template argument
    int kc = 0;       // keys per chunk (template argument)
    int warps = 0;    // warps per block
    int qcap = 0;     // query slots per block = 16 * warps
    int nqc = 0;      // query chunks per window = ceil(S^2 / qcap)
    int spr = 0;      // segments per round = kRawSlots / S^2
    int rawcap = 0;   // spr * S^2
    int hpb = 0;      // heads per block
    int ngroups = 0;  // head groups = ceil(H / hpb)
    int dps = 0;      // shared row stride of Q / K / V tiles, in elements
    int64_t blocks = 0;
    // byte offsets into dynamic shared memory
    int off_qrow = 0, off_qca = 0, off_qcb = 0, off_qseg = 0, off_qwb = 0, off_skey = 0, off_segwb = 0,
        off_misc = 0, off_raw = 0, off_krow = 0, off_kmeta = 0, off_bias = 0, off_q = 0, off_k = 0, off_v = 0,
        off_pt = 0, smem = 0;
};

// Index of the misc ints in shared memory.
constexpr int kMiscSegments = 0;  // number of segments (1 + distinct B-windows)
constexpr int kMiscKeys = 1;      // keys in the current round's list

SWA_HD int pad_head_dim(int dh, bool fp16) {
    if (fp16) return dh <= 16 ? 16 : dh <= 32 ? 32 : dh <= 64 ? 64 : dh <= 128 ? 128 : dh <= 256 ? 256 : 0;
    return dh <= 32 ? 32 : dh <= 64 ? 64 : dh <= 128 ? 128 : 0;
}

inline int align16(int x) { return (x + 15) / 16 * 16; }

// Layout for (warps, kc); fills the offsets and p.smem.
inline void layout(Plan& pl, int side2, int elem) {
    int o = 0;
    auto take = [&](int bytes) {
        const int at = o;
        o += align16(bytes);
        return at;
    };
    const int q = pl.qcap;
    pl.off_qrow = take(4 * q);
    pl.off_qca = take(4 * q);
    pl.off_qcb = take(4 * q);
    pl.off_qseg = take(4 * q);
    pl.off_qwb = take(4 * q);
    pl.off_skey = take(4 * q);
    pl.off_segwb = take(4 * (q + 1));
    pl.off_misc = take(4 * 4);
    pl.off_raw = take(4 * pl.rawcap);
    pl.off_krow = take(4 * pl.rawcap);
    pl.off_kmeta = take(4 * pl.rawcap);
    pl.off_bias = take(4 * side2);
    pl.off_q = take(elem * q * pl.dps);
    pl.off_k = take(elem * pl.kc * pl.dps);
    pl.off_v = take(elem * pl.kc * pl.dps);
    pl.off_pt = elem == 4 ? take(4 * pl.warps * pl.kc * 16) : o;  // float32: per-warp P^T tiles
    pl.smem = o;
}

// The plan of one call, or ok = false where the window kernel does not apply (the reference
// kernel runs instead).
inline Plan plan_window(const SwaParams& p, bool fp16) {
    Plan pl;
    const int S = p.window;
    if (S < 1 || S > kMaxWindow || p.num_heads < 1 || p.head_dim < 1) return pl;
    const int S2 = S * S, side = 2 * S - 1;
    const int dp = pad_head_dim(p.head_dim, fp16);
    if (dp == 0) return pl;
    pl.dp = dp;
    pl.dps = fp16 ? dp + 8 : dp + 4;  // 16 bytes of padding: conflict-free ldmatrix / float4 rows
    pl.spr = kRawSlots / S2;
    pl.rawcap = pl.spr * S2;
    int kcs[2] = {0, 0};
    if (fp16) {
        kcs[0] = dp <= 64 ? 64 : dp == 128 ? 32 : 16;
    } else {
        kcs[0] = dp == 128 ? 16 : 32;
        kcs[1] = dp == 128 ? 0 : 16;
    }
    const int elem = fp16 ? 2 : 4;
    int wmax = (S2 + 15) / 16;
    if (wmax > kMaxWarps) wmax = kMaxWarps;
    for (int w = wmax; w >= 1 && !pl.ok; --w) {
        for (int c = 0; c < 2 && !pl.ok; ++c) {
            if (kcs[c] == 0) continue;
            pl.warps = w;
            pl.qcap = 16 * w;
            pl.kc = kcs[c];
            layout(pl, side * side, elem);
            pl.ok = pl.smem <= kSmemLimit;
        }
    }
    if (!pl.ok) return pl;
    pl.nqc = (S2 + pl.qcap - 1) / pl.qcap;
    pl.hpb = kHeadCols / dp;
    if (pl.hpb < 1) pl.hpb = 1;
    if (pl.hpb > p.num_heads) pl.hpb = p.num_heads;
    pl.ngroups = (p.num_heads + pl.hpb - 1) / pl.hpb;
    pl.blocks = p.num_win_a * pl.nqc * pl.ngroups;
    if (p.num_win_a > int64_t(INT32_MAX) || pl.blocks > int64_t(INT32_MAX)) pl.ok = false;
    return pl;
}

// --------------------------------------------------------------------- index / mask helpers
#if defined(__CUDA_ARCH__)
#define SWA_LDG(ptr) __ldg(ptr)
#else
#define SWA_LDG(ptr) (*(ptr))
#endif

// Cell (row * (2S-1) + col) of slot t of an S x S window; the bias offset of a (query slot s,
// key slot t) pair is kBase + cell(t) - cell(s) with kBase = (S-1) * (2S-1) + (S-1).
SWA_HD int32_t slot_cell(int32_t t, int32_t S) { return (t / S) * (2 * S - 1) + t % S; }
SWA_HD int32_t bias_base(int32_t S) { return (S - 1) * (2 * S - 1) + (S - 1); }

struct Query {
    bool valid = false;
    int32_t row = -1;   // i
    int32_t ca = 0;     // cell of its A slot
    int32_t cb = 0;     // cell of its B slot (when wb >= 0)
    int32_t wb = -1;    // its B-window (mode 1, pos_b in range), else -1
};

// The query of slot `slot` of A-window wa: the row listed there, if that row's own position is
// this slot (a consistent row); otherwise none.
SWA_HD Query query_of_slot(const SwaParams& p, int64_t wa, int32_t slot) {
    Query qi;
    const int32_t S = p.window;
    const int64_t S2 = int64_t(S) * S;
    if (slot < 0 || slot >= S2) return qi;
    const int64_t pa = wa * S2 + slot;
    const int32_t i = SWA_LDG(p.win_a + pa);
    if (i < 0 || i >= p.n) return qi;
    if (int64_t(SWA_LDG(p.pos_a + i)) != pa) return qi;
    qi.valid = true;
    qi.row = i;
    qi.ca = slot_cell(slot, S);
    if (p.mode == 1) {
        const int64_t pb = SWA_LDG(p.pos_b + i);
        if (pb >= 0 && pb < p.num_win_b * S2) {
            qi.wb = int32_t(pb / S2);
            qi.cb = slot_cell(int32_t(pb % S2), S);
        }
    }
    return qi;
}

// Sort key of a query: its B-window first (-1 = none first), invalid slots last.
SWA_HD uint32_t query_sort_key(const Query& qi) { return qi.valid ? uint32_t(qi.wb + 1) : 0xffffffffu; }

// The key row of slot t of segment `seg` (0: A-window wa; else B-window wb), or -1: an empty or
// out-of-range slot, or (B) a key whose own position is outside A or inside wa.
SWA_HD int32_t key_of_slot(const SwaParams& p, int32_t seg, int64_t wa, int64_t wb, int32_t t) {
    const int64_t S2 = int64_t(p.window) * p.window;
    if (seg == 0) {
        const int32_t j = SWA_LDG(p.win_a + wa * S2 + t);
        return j >= 0 && j < p.n ? j : -1;
    }
    const int32_t j = SWA_LDG(p.win_b + wb * S2 + t);
    if (j < 0 || j >= p.n) return -1;
    const int64_t pj = SWA_LDG(p.pos_a + j);
    if (pj < 0 || pj >= p.num_win_a * S2 || pj / S2 == wa) return -1;
    return j;
}

// Key metadata: its slot's cell and its segment.
SWA_HD int32_t key_meta(int32_t cell, int32_t seg) { return cell | (seg << 16); }
SWA_HD int32_t meta_cell(int32_t m) { return m & 0xffff; }
SWA_HD int32_t meta_seg(int32_t m) { return m >> 16; }

// One query row as a thread holds it.
struct RowInfo {
    bool valid = false;
    bool noself = false;  // rows 0 and N-1 never attend to themselves
    int32_t row = -1, ca = 0, cb = 0, seg = -1;
};

// Whether query r sees key (krow, meta), and if so its bias offset in the head's table.
SWA_HD bool key_allowed(const RowInfo& r, int32_t krow, int32_t meta) {
    if (!r.valid) return false;
    const int32_t seg = meta_seg(meta);
    if (seg == 0) return !(r.noself && krow == r.row);
    return seg == r.seg;
}
SWA_HD int32_t key_bias_offset(const RowInfo& r, int32_t meta, int32_t base) {
    return base + meta_cell(meta) - (meta_seg(meta) == 0 ? r.ca : r.cb);
}

// --------------------------------------------------------------------- fragment layouts
// mma.sync m16n8k16 (row.col, f16 -> f32), lane = 4 * g + t:
//   A (16x16): a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 8+2t..), a[3] = (g+8, 8+2t..)
//   B (16x8):  b[0] = (k 2t..2t+1, n g), b[1] = (k 8+2t.., n g)
//   C (16x8):  c[0..1] = (g, 2t..2t+1), c[2..3] = (g+8, 2t..2t+1)
// ldmatrix.x4 loads four 8x8 b16 matrices; lane L gives the address of row L % 8 of matrix L / 8;
// without .trans lane (g, t) receives (row g, cols 2t, 2t+1) of each, with .trans (rows 2t, 2t+1,
// col g).
// Rows / cols each lane addresses:
//   Q (A operand, 16 query rows x 16 dims):   row = L % 16,            col = (L / 16) * 8
//   K (B operand of Q.K^T, 16 keys x 16 dims): key = (L / 16) * 8 + L % 8, col = ((L / 8) % 2) * 8
//       -> r[0], r[1] = b[0], b[1] of keys 0..7; r[2], r[3] = those of keys 8..15
//   V (B operand of P.V, .trans, 16 keys x 16 dims): key = ((L / 8) % 2) * 8 + L % 8, col = (L / 16) * 8
//       -> r[0], r[1] = b[0], b[1] of dims 0..7; r[2], r[3] = those of dims 8..15
SWA_HD int ldsm_q_row(int lane) { return lane & 15; }
SWA_HD int ldsm_q_col(int lane) { return (lane >> 4) * 8; }
SWA_HD int ldsm_k_row(int lane) { return ((lane >> 4) << 3) + (lane & 7); }
SWA_HD int ldsm_k_col(int lane) { return ((lane >> 3) & 1) * 8; }
SWA_HD int ldsm_v_row(int lane) { return (((lane >> 3) & 1) << 3) + (lane & 7); }
SWA_HD int ldsm_v_col(int lane) { return (lane >> 4) * 8; }
// Accumulator element e (0..3) of lane: row (e / 2) * 8 + g, col 2t + e % 2.
SWA_HD int acc_row(int lane, int e) { return (e >> 1) * 8 + (lane >> 2); }
SWA_HD int acc_col(int lane, int e) { return 2 * (lane & 3) + (e & 1); }

// float32 SIMT path, lane = 8 * rg + kg: rows rg + 4a (a = 0..3) of the warp's 16; Q.K^T keys
// kg + 8c (c < KC / 8); P.V columns cg * 4 + 32u (+0..3) with cg = kg. P^T tile: key-major, the
// row rg + 4a at position 4 rg + a (so a lane's 4 rows are one float4).
SWA_HD int simt_row(int lane, int a) { return (lane >> 3) + 4 * a; }
SWA_HD int simt_key(int lane, int c) { return (lane & 7) + 8 * c; }
SWA_HD int simt_col(int lane, int u) { return (lane & 7) * 4 + 32 * u; }
SWA_HD int simt_pt_pos(int row) { return (row % 4) * 4 + row / 4; }

}  // namespace swa_window
}  // namespace span_deploy

#if !defined(SWA_WINDOW_HOST_ONLY)
// ============================================================================================
// Part 2: the CUDA kernels and the entry points
// ============================================================================================
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace span_deploy {
namespace swa_window {
namespace {

struct Args {
    SwaParams p;
    Plan pl;
    bool vec;  // 16-byte loads / stores of q, k, v, out rows (alignment checked on the host)
};

// ---------------------------------------------------------------------------- PTX wrappers
__device__ __forceinline__ uint32_t smem_addr(const void* ptr) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(ptr));
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* ptr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(ptr))
                 : "memory");
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const void* ptr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(ptr))
                 : "memory");
}

// d += a (16x16, f16) * b (16x8, f16), f32 accumulators.
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    // sm_75: m16n8k16 needs sm_80; two m16n8k8 (k 0..7 with a[0], a[1], b0; k 8..15 with a[2], a[3], b1)
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5}, {%6}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(b0));
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5}, {%6}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[2]), "r"(a[3]), "r"(b1));
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// Two floats -> f16x2, the first in the low half (the lower column of a fragment pair).
__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
}

// ---------------------------------------------------------------------------- staging
template <typename T>
struct Bits;
template <>
struct Bits<float> {
    using type = unsigned int;
};
template <>
struct Bits<__half> {
    using type = unsigned short;
};

// Rows [0, tile_rows) of a shared tile (stride dps elements, DP columns): rows r < nvalid get
// src[rows[r] * C + col0 + d] for d < dh, everything else 0. Block-wide.
template <typename T, int DP>
__device__ __forceinline__ void stage_rows(T* __restrict__ dst, int dps, int tile_rows, const int32_t* rows,
                                           int nvalid, const T* __restrict__ src, int64_t C, int64_t col0, int dh,
                                           bool vec) {
    using B = typename Bits<T>::type;
    constexpr int VE = 16 / int(sizeof(T));
    constexpr int VPR = DP / VE;
    union U {
        uint4 v;
        B b[VE];
    };
    for (int e = threadIdx.x; e < tile_rows * VPR; e += blockDim.x) {
        const int r = e / VPR, d0 = (e % VPR) * VE;
        U x;
        x.v = make_uint4(0u, 0u, 0u, 0u);
        if (r < nvalid && d0 < dh) {
            const T* sp = src + int64_t(rows[r]) * C + col0 + d0;
            if (vec) {
                x.v = __ldg(reinterpret_cast<const uint4*>(sp));
            } else {
                const B* bp = reinterpret_cast<const B*>(sp);
#pragma unroll
                for (int u = 0; u < VE; ++u) x.b[u] = d0 + u < dh ? __ldg(bp + u) : B(0);
            }
        }
        *reinterpret_cast<uint4*>(dst + r * dps + d0) = x.v;
    }
}

// K and V rows of keys [c0, c0 + kc_n) of the list into the chunk tiles (KC rows, zero padded).
template <typename T, int DP, int KC>
__device__ __forceinline__ void stage_kv(T* ks, T* vs, int dps, const int32_t* krow, int kc_n, const T* k,
                                         const T* v, int64_t C, int64_t col0, int dh, bool vec) {
    stage_rows<T, DP>(ks, dps, KC, krow, kc_n, k, C, col0, dh, vec);
    stage_rows<T, DP>(vs, dps, KC, krow, kc_n, v, C, col0, dh, vec);
}

// The warp's output rows [r0, r1) of the block, from its shared rows (normalised, type T).
template <typename T>
__device__ __forceinline__ void write_rows(const T* src, int dps, int r0, int r1, const int32_t* qrow, T* out,
                                           int64_t C, int64_t col0, int dh, bool vec, int lane) {
    const int nrows = r1 - r0;
    if (nrows <= 0) return;
    if (vec) {
        constexpr int VE = 16 / int(sizeof(T));
        const int nvec = dh / VE;
        for (int e = lane; e < nrows * nvec; e += 32) {
            const int r = r0 + e / nvec, d0 = (e % nvec) * VE;
            *reinterpret_cast<uint4*>(out + int64_t(qrow[r]) * C + col0 + d0) =
                *reinterpret_cast<const uint4*>(src + r * dps + d0);
        }
    } else {
        for (int e = lane; e < nrows * dh; e += 32) {
            const int r = r0 + e / dh, d = e % dh;
            out[int64_t(qrow[r]) * C + col0 + d] = src[r * dps + d];
        }
    }
}

// ---------------------------------------------------------------------------- shared state
struct Smem {
    int32_t *qrow, *qca, *qcb, *qseg, *qwb;
    uint32_t* skey;
    int32_t *segwb, *misc, *raw, *krow, *kmeta;
    float* bias;
    unsigned char *q, *k, *v;
    float* pt;
};

__device__ __forceinline__ Smem carve(unsigned char* base, const Plan& pl) {
    Smem s;
    s.qrow = reinterpret_cast<int32_t*>(base + pl.off_qrow);
    s.qca = reinterpret_cast<int32_t*>(base + pl.off_qca);
    s.qcb = reinterpret_cast<int32_t*>(base + pl.off_qcb);
    s.qseg = reinterpret_cast<int32_t*>(base + pl.off_qseg);
    s.qwb = reinterpret_cast<int32_t*>(base + pl.off_qwb);
    s.skey = reinterpret_cast<uint32_t*>(base + pl.off_skey);
    s.segwb = reinterpret_cast<int32_t*>(base + pl.off_segwb);
    s.misc = reinterpret_cast<int32_t*>(base + pl.off_misc);
    s.raw = reinterpret_cast<int32_t*>(base + pl.off_raw);
    s.krow = reinterpret_cast<int32_t*>(base + pl.off_krow);
    s.kmeta = reinterpret_cast<int32_t*>(base + pl.off_kmeta);
    s.bias = reinterpret_cast<float*>(base + pl.off_bias);
    s.q = base + pl.off_q;
    s.k = base + pl.off_k;
    s.v = base + pl.off_v;
    s.pt = reinterpret_cast<float*>(base + pl.off_pt);
    return s;
}

// The key list of round `round` (segments [round * spr, ...)): every slot's key (block-wide),
// then compacted in slot order by warp 0 (ballot prefix: deterministic). Ends synchronised;
// misc[kMiscKeys] = list length.
__device__ __forceinline__ void build_round(const SwaParams& p, const Plan& pl, const Smem& s, int64_t wa, int round,
                                            int nseg) {
    const int32_t S = p.window, S2 = S * S;
    const int s_begin = round * pl.spr;
    const int s_end = min(nseg, s_begin + pl.spr);
    const int nraw = (s_end - s_begin) * S2;
    for (int e = threadIdx.x; e < nraw; e += blockDim.x) {
        const int seg = s_begin + e / S2, t = e % S2;
        s.raw[e] = key_of_slot(p, seg, wa, seg == 0 ? 0 : s.segwb[seg], t);
    }
    __syncthreads();
    if (threadIdx.x < 32) {
        const int lane = threadIdx.x;
        int count = 0;
        for (int base = 0; base < nraw; base += 32) {
            const int e = base + lane;
            const int32_t j = e < nraw ? s.raw[e] : -1;
            const unsigned m = __ballot_sync(0xffffffffu, j >= 0);
            if (j >= 0) {
                const int at = count + __popc(m & ((1u << lane) - 1u));
                const int seg = s_begin + e / S2, t = e % S2;
                s.krow[at] = j;
                s.kmeta[at] = key_meta(slot_cell(t, S), seg);
            }
            count += __popc(m);
        }
        if (lane == 0) s.misc[kMiscKeys] = count;
    }
    __syncthreads();
}

// ---------------------------------------------------------------------------- float16: tensor cores
template <int DP, int KC>
struct HalfWarp {
    static constexpr int NT = KC / 8;   // score tiles (n8) per chunk
    static constexpr int DT = DP / 8;   // output tiles (n8)
    RowInfo ri[2];                      // rows g and g + 8 of the warp's 16
    float m[2], l[2];
    float o[DT][4];

    __device__ __forceinline__ void reset() {
#pragma unroll
        for (int h = 0; h < 2; ++h) m[h] = -INFINITY, l[h] = 0.f;
#pragma unroll
        for (int d = 0; d < DT; ++d)
#pragma unroll
            for (int e = 0; e < 4; ++e) o[d][e] = 0.f;
    }

    // One chunk of kc_n keys (list entries c0 ...) against the warp's 16 rows (r0 = first).
    __device__ __forceinline__ void chunk(const __half* qs, const __half* ks, const __half* vs, int dps, int r0,
                                          const int32_t* krow, const int32_t* kmeta, int c0, int kc_n,
                                          const float* bias, int32_t base, float scale, int lane) {
        float sc[NT][4];
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) sc[n][e] = 0.f;
        // S = Q K^T
#pragma unroll
        for (int kb = 0; kb < DP / 16; ++kb) {
            uint32_t a[4];
            ldsm_x4(a, qs + (r0 + ldsm_q_row(lane)) * dps + kb * 16 + ldsm_q_col(lane));
#pragma unroll
            for (int n2 = 0; n2 < KC / 16; ++n2) {
                if (n2 * 16 < kc_n) {  // warp-uniform
                    uint32_t b[4];
                    ldsm_x4(b, ks + (n2 * 16 + ldsm_k_row(lane)) * dps + kb * 16 + ldsm_k_col(lane));
                    mma_16816(sc[2 * n2], a, b[0], b[1]);
                    mma_16816(sc[2 * n2 + 1], a, b[2], b[3]);
                }
            }
        }
        // scale, bias, mask; running max per row
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int n = 0; n < NT; ++n) {
#pragma unroll
            for (int e2 = 0; e2 < 2; ++e2) {
                const int col = n * 8 + acc_col(lane, e2);
                const bool kin = col < kc_n;
                const int32_t kr = kin ? krow[c0 + col] : -1;
                const int32_t meta = kin ? kmeta[c0 + col] : 0;
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    float x = -INFINITY;
                    if (kin && key_allowed(ri[h], kr, meta))
                        x = fmaf(scale, sc[n][2 * h + e2], bias[key_bias_offset(ri[h], meta, base)]);
                    sc[n][2 * h + e2] = x;
                    mx[h] = fmaxf(mx[h], x);
                }
            }
        }
        float corr[2];
        bool any = false;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
            const float mn = fmaxf(m[h], mx[h]);
            // no finite score yet: nothing accumulated, keep the (zero) state as it is
            corr[h] = mn == -INFINITY ? 1.f : expf(m[h] - mn);
            m[h] = mn;
            float sum = 0.f;
#pragma unroll
            for (int n = 0; n < NT; ++n)
#pragma unroll
                for (int e2 = 0; e2 < 2; ++e2) {
                    const float x = sc[n][2 * h + e2];
                    // a -inf score (masked key, -inf bias) has weight 0, also while mn is -inf
                    const float w = x == -INFINITY ? 0.f : expf(x - mn);
                    sc[n][2 * h + e2] = w;
                    sum += w;
                    any = any || w != 0.f;
                }
            l[h] = l[h] * corr[h] + sum;
        }
#pragma unroll
        for (int d = 0; d < DT; ++d) {
            o[d][0] *= corr[0], o[d][1] *= corr[0];
            o[d][2] *= corr[1], o[d][3] *= corr[1];
        }
        if (!__any_sync(0xffffffffu, any)) return;  // every weight 0: nothing to add (warp-uniform)
        // O += P V
#pragma unroll
        for (int kb = 0; kb < KC / 16; ++kb) {
            if (kb * 16 < kc_n) {  // warp-uniform
                uint32_t a[4];
                a[0] = pack_half2(sc[2 * kb][0], sc[2 * kb][1]);
                a[1] = pack_half2(sc[2 * kb][2], sc[2 * kb][3]);
                a[2] = pack_half2(sc[2 * kb + 1][0], sc[2 * kb + 1][1]);
                a[3] = pack_half2(sc[2 * kb + 1][2], sc[2 * kb + 1][3]);
#pragma unroll
                for (int dn = 0; dn < DP / 16; ++dn) {
                    uint32_t b[4];
                    ldsm_x4_trans(b, vs + (kb * 16 + ldsm_v_row(lane)) * dps + dn * 16 + ldsm_v_col(lane));
                    mma_16816(o[2 * dn], a, b[0], b[1]);
                    mma_16816(o[2 * dn + 1], a, b[2], b[3]);
                }
            }
        }
    }

    // Normalised rows into the warp's own rows of the Q tile (as float16).
    __device__ __forceinline__ void finish(__half* qs, int dps, int r0, int lane) {
        float inv[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            float t = l[h];
            t += __shfl_xor_sync(0xffffffffu, t, 1);
            t += __shfl_xor_sync(0xffffffffu, t, 2);
            inv[h] = t > 0.f ? 1.f / t : 0.f;  // no key (or all weights 0): exact zeros
        }
#pragma unroll
        for (int d = 0; d < DT; ++d) {
            const int col = d * 8 + acc_col(lane, 0);
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = r0 + acc_row(lane, 2 * h);
                *reinterpret_cast<uint32_t*>(qs + row * dps + col) =
                    pack_half2(o[d][2 * h] * inv[h], o[d][2 * h + 1] * inv[h]);
            }
        }
    }
};

// ---------------------------------------------------------------------------- float32: SIMT
template <int DP, int KC>
struct FloatWarp {
    static constexpr int NC = KC / 8;   // keys per lane per chunk
    static constexpr int NU = DP / 32;  // float4 column groups per lane
    RowInfo ri[4];                      // rows rg + 4a
    float m[4], l[4];
    float o[4][NU][4];

    __device__ __forceinline__ void reset() {
#pragma unroll
        for (int a = 0; a < 4; ++a) {
            m[a] = -INFINITY, l[a] = 0.f;
#pragma unroll
            for (int u = 0; u < NU; ++u)
#pragma unroll
                for (int e = 0; e < 4; ++e) o[a][u][e] = 0.f;
        }
    }

    __device__ __forceinline__ void chunk(const float* qs, const float* ks, const float* vs, float* pt, int dps,
                                          int r0, const int32_t* krow, const int32_t* kmeta, int c0, int kc_n,
                                          const float* bias, int32_t base, float scale, int lane) {
        float sc[4][NC];
#pragma unroll
        for (int a = 0; a < 4; ++a)
#pragma unroll
            for (int c = 0; c < NC; ++c) sc[a][c] = 0.f;
        // S = Q K^T: 4 rows x NC keys per lane, float4 over the dims
        for (int d = 0; d < DP; d += 4) {
            float4 qv[4], kv[NC];
#pragma unroll
            for (int a = 0; a < 4; ++a)
                qv[a] = *reinterpret_cast<const float4*>(qs + (r0 + simt_row(lane, a)) * dps + d);
#pragma unroll
            for (int c = 0; c < NC; ++c) kv[c] = *reinterpret_cast<const float4*>(ks + simt_key(lane, c) * dps + d);
#pragma unroll
            for (int a = 0; a < 4; ++a)
#pragma unroll
                for (int c = 0; c < NC; ++c) {
                    float x = sc[a][c];
                    x = fmaf(qv[a].x, kv[c].x, x);
                    x = fmaf(qv[a].y, kv[c].y, x);
                    x = fmaf(qv[a].z, kv[c].z, x);
                    x = fmaf(qv[a].w, kv[c].w, x);
                    sc[a][c] = x;
                }
        }
        float mx[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
#pragma unroll
        for (int c = 0; c < NC; ++c) {
            const int col = simt_key(lane, c);
            const bool kin = col < kc_n;
            const int32_t kr = kin ? krow[c0 + col] : -1;
            const int32_t meta = kin ? kmeta[c0 + col] : 0;
#pragma unroll
            for (int a = 0; a < 4; ++a) {
                float x = -INFINITY;
                if (kin && key_allowed(ri[a], kr, meta))
                    x = fmaf(scale, sc[a][c], bias[key_bias_offset(ri[a], meta, base)]);
                sc[a][c] = x;
                mx[a] = fmaxf(mx[a], x);
            }
        }
        bool any = false;
        float corr[4];
#pragma unroll
        for (int a = 0; a < 4; ++a) {
            mx[a] = fmaxf(mx[a], __shfl_xor_sync(0xffffffffu, mx[a], 1));
            mx[a] = fmaxf(mx[a], __shfl_xor_sync(0xffffffffu, mx[a], 2));
            mx[a] = fmaxf(mx[a], __shfl_xor_sync(0xffffffffu, mx[a], 4));
            const float mn = fmaxf(m[a], mx[a]);
            corr[a] = mn == -INFINITY ? 1.f : expf(m[a] - mn);
            m[a] = mn;
            float sum = 0.f;
#pragma unroll
            for (int c = 0; c < NC; ++c) {
                const float x = sc[a][c];
                const float w = x == -INFINITY ? 0.f : expf(x - mn);
                sc[a][c] = w;
                sum += w;
                any = any || w != 0.f;
            }
            l[a] = l[a] * corr[a] + sum;
#pragma unroll
            for (int u = 0; u < NU; ++u)
#pragma unroll
                for (int e = 0; e < 4; ++e) o[a][u][e] *= corr[a];
        }
        if (!__any_sync(0xffffffffu, any)) return;  // warp-uniform
        // P^T into the warp's tile: key-major, a lane's 4 rows contiguous
        const int rg = lane >> 3;
#pragma unroll
        for (int c = 0; c < NC; ++c)
            *reinterpret_cast<float4*>(pt + simt_key(lane, c) * 16 + simt_pt_pos(rg)) =
                make_float4(sc[0][c], sc[1][c], sc[2][c], sc[3][c]);
        __syncwarp();
        // O += P V
        for (int kk = 0; kk < kc_n; ++kk) {
            const float4 w = *reinterpret_cast<const float4*>(pt + kk * 16 + simt_pt_pos(rg));
#pragma unroll
            for (int u = 0; u < NU; ++u) {
                const float4 x = *reinterpret_cast<const float4*>(vs + kk * dps + simt_col(lane, u));
                o[0][u][0] = fmaf(w.x, x.x, o[0][u][0]), o[0][u][1] = fmaf(w.x, x.y, o[0][u][1]);
                o[0][u][2] = fmaf(w.x, x.z, o[0][u][2]), o[0][u][3] = fmaf(w.x, x.w, o[0][u][3]);
                o[1][u][0] = fmaf(w.y, x.x, o[1][u][0]), o[1][u][1] = fmaf(w.y, x.y, o[1][u][1]);
                o[1][u][2] = fmaf(w.y, x.z, o[1][u][2]), o[1][u][3] = fmaf(w.y, x.w, o[1][u][3]);
                o[2][u][0] = fmaf(w.z, x.x, o[2][u][0]), o[2][u][1] = fmaf(w.z, x.y, o[2][u][1]);
                o[2][u][2] = fmaf(w.z, x.z, o[2][u][2]), o[2][u][3] = fmaf(w.z, x.w, o[2][u][3]);
                o[3][u][0] = fmaf(w.w, x.x, o[3][u][0]), o[3][u][1] = fmaf(w.w, x.y, o[3][u][1]);
                o[3][u][2] = fmaf(w.w, x.z, o[3][u][2]), o[3][u][3] = fmaf(w.w, x.w, o[3][u][3]);
            }
        }
        __syncwarp();  // the next chunk's P^T writes come after every lane's reads
    }

    __device__ __forceinline__ void finish(float* qs, int dps, int r0, int lane) {
#pragma unroll
        for (int a = 0; a < 4; ++a) {
            float t = l[a];
            t += __shfl_xor_sync(0xffffffffu, t, 1);
            t += __shfl_xor_sync(0xffffffffu, t, 2);
            t += __shfl_xor_sync(0xffffffffu, t, 4);
            const float inv = t > 0.f ? 1.f / t : 0.f;
            const int row = r0 + simt_row(lane, a);
#pragma unroll
            for (int u = 0; u < NU; ++u)
                *reinterpret_cast<float4*>(qs + row * dps + simt_col(lane, u)) =
                    make_float4(o[a][u][0] * inv, o[a][u][1] * inv, o[a][u][2] * inv, o[a][u][3] * inv);
        }
    }
};

template <typename T, int DP, int KC>
struct WarpOf;
template <int DP, int KC>
struct WarpOf<__half, DP, KC> {
    using type = HalfWarp<DP, KC>;
    static constexpr int kRows = 2;
};
template <int DP, int KC>
struct WarpOf<float, DP, KC> {
    using type = FloatWarp<DP, KC>;
    static constexpr int kRows = 4;
};

// ---------------------------------------------------------------------------- the window kernel
template <typename T, int DP, int KC>
__global__ void __launch_bounds__(kMaxWarps * 32)
    window_kernel(Args args, const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                  T* __restrict__ out) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const SwaParams& p = args.p;
    const Plan& pl = args.pl;
    const Smem s = carve(smem_raw, pl);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int32_t S = p.window;
    const int32_t side2 = (2 * S - 1) * (2 * S - 1);
    const int64_t b = blockIdx.x;
    const int hg = int(b % pl.ngroups);
    const int64_t wq = b / pl.ngroups;
    const int64_t wa = wq / pl.nqc;
    const int qc = int(wq % pl.nqc);

    // ---- the chunk's queries, sorted by (B-window, slot)
    Query qi;
    if (tid < pl.qcap) {
        qi = query_of_slot(p, wa, qc * pl.qcap + tid);
        s.skey[tid] = query_sort_key(qi);
    }
    const int nq = __syncthreads_count(qi.valid ? 1 : 0);
    if (nq == 0) return;  // block-uniform
    if (qi.valid) {
        const uint32_t key = query_sort_key(qi);
        int rank = 0;
        for (int u = 0; u < pl.qcap; ++u) {
            const uint32_t ku = s.skey[u];
            rank += ku < key || (ku == key && u < tid);
        }
        s.qrow[rank] = qi.row;
        s.qca[rank] = qi.ca;
        s.qcb[rank] = qi.cb;
        s.qwb[rank] = qi.wb;
    }
    __syncthreads();
    // ---- segments: 0 = A; 1.. = the distinct B-windows in sorted order
    if (tid < nq) {
        const int32_t wb = s.qwb[tid];
        int seg = -1;
        if (wb >= 0) {
            seg = 0;
            for (int u = 0; u <= tid; ++u) {
                const int32_t w = s.qwb[u];
                seg += w >= 0 && (u == 0 || s.qwb[u - 1] != w);
            }
            if (tid == 0 || s.qwb[tid - 1] != wb) s.segwb[seg] = wb;
        }
        s.qseg[tid] = seg;
        if (tid == nq - 1) s.misc[kMiscSegments] = 1 + (seg > 0 ? seg : 0);
    }
    __syncthreads();
    const int nseg = s.misc[kMiscSegments];
    const int nrounds = (nseg + pl.spr - 1) / pl.spr;

    // ---- this warp's rows
    using W = typename WarpOf<T, DP, KC>::type;
    constexpr int NR = WarpOf<T, DP, KC>::kRows;
    W wst;
    const int r0 = warp * 16;
    const bool active = r0 < nq;  // warp-uniform
#pragma unroll
    for (int h = 0; h < NR; ++h) {
        const int r = r0 + (NR == 2 ? acc_row(lane, 2 * h) : simt_row(lane, h));
        RowInfo& ri = wst.ri[h];
        ri.valid = r < nq;
        if (ri.valid) {
            ri.row = s.qrow[r];
            ri.ca = s.qca[r];
            ri.cb = s.qcb[r];
            ri.seg = s.qseg[r];
            ri.noself = ri.row == 0 || int64_t(ri.row) == p.n - 1;
        }
    }

    if (nrounds == 1) build_round(p, pl, s, wa, 0, nseg);

    const int32_t H = p.num_heads, Dh = p.head_dim;
    const int64_t C = int64_t(H) * Dh;
    const int32_t base = bias_base(S);
    const int dps = pl.dps;
    T* qs = reinterpret_cast<T*>(s.q);
    T* ks = reinterpret_cast<T*>(s.k);
    T* vs = reinterpret_cast<T*>(s.v);
    const int mrows = (nq + 15) / 16 * 16;
    const int h_end = min(H, (hg + 1) * pl.hpb);
    for (int h = hg * pl.hpb; h < h_end; ++h) {
        const int64_t col0 = int64_t(h) * Dh;
        __syncthreads();  // the previous head's output rows (in the Q tile) are written out
        for (int e = tid; e < side2; e += blockDim.x) s.bias[e] = __ldg(p.bias + int64_t(h) * side2 + e);
        stage_rows<T, DP>(qs, dps, mrows, s.qrow, nq, q, C, col0, Dh, args.vec);
        wst.reset();
        bool synced = false;  // a barrier since the Q tile was staged (block-uniform)
        for (int round = 0; round < nrounds; ++round) {
            if (nrounds > 1) build_round(p, pl, s, wa, round, nseg), synced = true;
            const int nkeys = s.misc[kMiscKeys];
            for (int c0 = 0; c0 < nkeys; c0 += KC) {
                synced = true;
                const int kc_n = min(KC, nkeys - c0);
                stage_kv<T, DP, KC>(ks, vs, dps, s.krow + c0, kc_n, k, v, C, col0, Dh, args.vec);
                __syncthreads();
                if (active) {
                    if constexpr (NR == 2)
                        wst.chunk(qs, ks, vs, dps, r0, s.krow, s.kmeta, c0, kc_n, s.bias, base, p.scale, lane);
                    else
                        wst.chunk(qs, ks, vs, s.pt + warp * KC * 16, dps, r0, s.krow, s.kmeta, c0, kc_n, s.bias,
                                  base, p.scale, lane);
                }
                __syncthreads();
            }
        }
        // No key at all: finish overwrites the warp's rows of the Q tile, which other threads may
        // still be staging.
        if (!synced) __syncthreads();
        if (active) {
            wst.finish(qs, dps, r0, lane);
            __syncwarp();
            write_rows<T>(qs, dps, r0, min(r0 + 16, nq), s.qrow, out, C, col0, Dh, args.vec, lane);
        }
    }
}

// ---------------------------------------------------------------------------- per-row kernel
// The rows the window kernel does not own: !(0 <= pos_a[i] < Wa*S^2 && win_a[pos_a[i]] == i).
// Per row the reference kernel's logic (a copy of swa_cuda.cu's): keys gathered into shared
// memory in slot order, 32 lanes per head, online softmax.
__device__ __forceinline__ float load1(const float* p) { return __ldg(p); }
__device__ __forceinline__ float load1(const __half* p) { return __half2float(__ldg(p)); }
__device__ __forceinline__ void store1(float* p, float x) { *p = x; }
__device__ __forceinline__ void store1(__half* p, float x) { *p = __float2half_rn(x); }

__device__ __forceinline__ bool owned_by_window(const SwaParams& p, int64_t i) {
    const int64_t slots = int64_t(p.window) * p.window;
    const int64_t pa = __ldg(p.pos_a + i);
    return pa >= 0 && pa < p.num_win_a * slots && __ldg(p.win_a + pa) == i;
}

__device__ void gather_row_keys(const SwaParams& p, int64_t i, int32_t* keys, int32_t* boff) {
    const int32_t S = p.window;
    const int32_t slots = S * S;
    const int32_t side = 2 * S - 1;
    const int64_t pa = __ldg(p.pos_a + i);
    const bool a_ok = pa >= 0 && pa < p.num_win_a * slots;
    const int64_t wa = a_ok ? pa / slots : -1;
    const bool self_ok = i >= 1 && i <= p.n - 2;
    int64_t pb = -1;
    if (p.mode == 1) pb = __ldg(p.pos_b + i);
    const bool b_ok = a_ok && p.mode == 1 && pb >= 0 && pb < p.num_win_b * slots;
    for (int t = threadIdx.x; t < 2 * slots; t += blockDim.x) {
        const bool from_b = t >= slots;
        const int32_t slot = from_b ? t - slots : t;
        int32_t j = -1;
        int64_t sq = 0;
        if (!from_b && a_ok) {
            j = __ldg(p.win_a + wa * slots + slot);
            sq = pa % slots;
            if (j >= p.n || (j == i && !self_ok)) j = -1;
        } else if (from_b && b_ok) {
            j = __ldg(p.win_b + (pb / slots) * slots + slot);
            sq = pb % slots;
            if (j >= p.n) {
                j = -1;
            } else if (j >= 0) {
                const int64_t pj = __ldg(p.pos_a + j);
                if (pj < 0 || pj >= p.num_win_a * slots || pj / slots == wa) j = -1;
            }
        }
        keys[t] = j < 0 ? -1 : j;
        const int32_t sr = int32_t(sq / S), sc = int32_t(sq % S);
        boff[t] = (slot / S - sr + S - 1) * side + (slot % S - sc + S - 1);
    }
}

template <typename T, int DPL>
__global__ void __launch_bounds__(kRowsPerBlock)
    rows_kernel(SwaParams p, const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                T* __restrict__ out) {
    constexpr int G = 32;
    extern __shared__ int32_t rsmem[];
    __shared__ int32_t list[kRowsPerBlock];
    __shared__ int32_t count;
    const int32_t total = 2 * p.window * p.window;
    int32_t* keys = rsmem;
    int32_t* boff = rsmem + total;
    if (threadIdx.x == 0) count = 0;
    __syncthreads();
    const int64_t i0 = int64_t(blockIdx.x) * kRowsPerBlock;
    const int64_t mine = i0 + threadIdx.x;
    if (mine < p.n && !owned_by_window(p, mine)) list[atomicAdd(&count, 1)] = int32_t(mine);
    __syncthreads();
    const int nrows = count;  // rows are independent: their order in the list does not matter

    const int32_t H = p.num_heads, Dh = p.head_dim;
    const int64_t C = int64_t(H) * Dh;
    const int32_t bias_head = (2 * p.window - 1) * (2 * p.window - 1);
    const int lane = threadIdx.x % G;
    const int group = threadIdx.x / G;
    const int groups = blockDim.x / G;
    for (int r = 0; r < nrows; ++r) {
        const int64_t i = list[r];
        __syncthreads();  // the previous row's keys are no longer read
        gather_row_keys(p, i, keys, boff);
        __syncthreads();
        for (int32_t h0 = 0; h0 < H; h0 += groups) {
            const bool act = h0 + group < H;
            const int32_t h = act ? h0 + group : H - 1;
            const int64_t col = int64_t(h) * Dh;
            float qv[DPL], acc[DPL];
#pragma unroll
            for (int e = 0; e < DPL; ++e) {
                const int d = lane + e * G;
                qv[e] = d < Dh ? load1(q + i * C + col + d) : 0.f;
                acc[e] = 0.f;
            }
            float m = -INFINITY, l = 0.f;
            const float* bias = p.bias + int64_t(h) * bias_head;
            for (int32_t t = 0; t < total; ++t) {
                const int32_t j = keys[t];
                if (j < 0) continue;  // block-uniform
                const T* kj = k + int64_t(j) * C + col;
                float dot = 0.f;
#pragma unroll
                for (int e = 0; e < DPL; ++e) {
                    const int d = lane + e * G;
                    if (d < Dh) dot += qv[e] * load1(kj + d);
                }
#pragma unroll
                for (int off = G / 2; off > 0; off /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, off);
                const float sc = p.scale * dot + __ldg(bias + boff[t]);
                if (sc > m) {
                    const float corr = expf(m - sc);
                    l *= corr;
#pragma unroll
                    for (int e = 0; e < DPL; ++e) acc[e] *= corr;
                    m = sc;
                }
                const float w = sc == -INFINITY ? 0.f : expf(sc - m);
                l += w;
                const T* vj = v + int64_t(j) * C + col;
#pragma unroll
                for (int e = 0; e < DPL; ++e) {
                    const int d = lane + e * G;
                    if (d < Dh) acc[e] += w * load1(vj + d);
                }
            }
            if (act) {
                const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
                for (int e = 0; e < DPL; ++e) {
                    const int d = lane + e * G;
                    if (d < Dh) store1(out + i * C + col + d, acc[e] * inv);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------- host side
template <typename T, int DP, int KC>
cudaError_t launch_window(const Args& a, const T* q, const T* k, const T* v, T* out, cudaStream_t stream) {
    window_kernel<T, DP, KC><<<unsigned(a.pl.blocks), a.pl.warps * 32, size_t(a.pl.smem), stream>>>(a, q, k, v, out);
    return cudaGetLastError();
}

template <typename T>
cudaError_t launch_rows(const SwaParams& p, const T* q, const T* k, const T* v, T* out, cudaStream_t stream) {
    const unsigned blocks = unsigned((p.n + kRowsPerBlock - 1) / kRowsPerBlock);
    const size_t smem = size_t(4) * p.window * p.window * sizeof(int32_t);
    const int dh = p.head_dim;
    if (dh <= 32) rows_kernel<T, 1><<<blocks, kRowsPerBlock, smem, stream>>>(p, q, k, v, out);
    else if (dh <= 64) rows_kernel<T, 2><<<blocks, kRowsPerBlock, smem, stream>>>(p, q, k, v, out);
    else if (dh <= 128) rows_kernel<T, 4><<<blocks, kRowsPerBlock, smem, stream>>>(p, q, k, v, out);
    else rows_kernel<T, 8><<<blocks, kRowsPerBlock, smem, stream>>>(p, q, k, v, out);
    return cudaGetLastError();
}

cudaError_t dispatch_window(const Args& a, const __half* q, const __half* k, const __half* v, __half* out,
                            cudaStream_t stream) {
    switch (a.pl.dp) {
    case 16: return launch_window<__half, 16, 64>(a, q, k, v, out, stream);
    case 32: return launch_window<__half, 32, 64>(a, q, k, v, out, stream);
    case 64: return launch_window<__half, 64, 64>(a, q, k, v, out, stream);
    case 128: return launch_window<__half, 128, 32>(a, q, k, v, out, stream);
    case 256: return launch_window<__half, 256, 16>(a, q, k, v, out, stream);
    default: return cudaErrorInvalidValue;
    }
}

cudaError_t dispatch_window(const Args& a, const float* q, const float* k, const float* v, float* out,
                            cudaStream_t stream) {
    const int key = a.pl.dp * 1000 + a.pl.kc;
    switch (key) {
    case 32032: return launch_window<float, 32, 32>(a, q, k, v, out, stream);
    case 32016: return launch_window<float, 32, 16>(a, q, k, v, out, stream);
    case 64032: return launch_window<float, 64, 32>(a, q, k, v, out, stream);
    case 64016: return launch_window<float, 64, 16>(a, q, k, v, out, stream);
    case 128016: return launch_window<float, 128, 16>(a, q, k, v, out, stream);
    default: return cudaErrorInvalidValue;
    }
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

template <typename T>
int forward_window(const SwaParams& p, const T* q, const T* k, const T* v, T* out, cudaStream_t stream) {
    if (!swa_check_params(p).empty() || !swa_check_cuda_limits(p).empty()) return int(cudaErrorInvalidValue);
    if (p.n == 0) return int(cudaSuccess);
    Args a;
    a.p = p;
    a.pl = plan_window(p, sizeof(T) == 2);
    if (!a.pl.ok) return -1;  // caller runs the reference kernel
    constexpr int VE = 16 / int(sizeof(T));
    const int64_t C = int64_t(p.num_heads) * p.head_dim;
    a.vec = p.head_dim % VE == 0 && C % VE == 0 && aligned16(q) && aligned16(k) && aligned16(v) && aligned16(out);
    cudaError_t rc = cudaSuccess;
    if (a.pl.blocks > 0) rc = dispatch_window(a, q, k, v, out, stream);
    if (rc != cudaSuccess) return int(rc);
    return int(launch_rows(p, q, k, v, out, stream));
}

}  // namespace
}  // namespace swa_window

const char* swa_cuda_window_kernel_for(const SwaParams& p, bool fp16) {
    return swa_window::plan_window(p, fp16).ok ? "window" : "reference";
}

int swa_forward_cuda_window(const SwaParams& p, const float* q, const float* k, const float* v, float* out,
                            cudaStream_t stream) {
    const int rc = swa_window::forward_window(p, q, k, v, out, stream);
    return rc == -1 ? swa_forward_cuda_reference(p, q, k, v, out, stream) : rc;
}

int swa_forward_cuda_window(const SwaParams& p, const SwaHalf* q, const SwaHalf* k, const SwaHalf* v, SwaHalf* out,
                            cudaStream_t stream) {
    static_assert(sizeof(SwaHalf) == sizeof(__half) && alignof(SwaHalf) == alignof(__half), "SwaHalf is __half");
    const int rc = swa_window::forward_window(p, reinterpret_cast<const __half*>(q), reinterpret_cast<const __half*>(k),
                                              reinterpret_cast<const __half*>(v), reinterpret_cast<__half*>(out),
                                              stream);
    return rc == -1 ? swa_forward_cuda_reference(p, q, k, v, out, stream) : rc;
}

}  // namespace span_deploy
#endif  // !SWA_WINDOW_HOST_ONLY
