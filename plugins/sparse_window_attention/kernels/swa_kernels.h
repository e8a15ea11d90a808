// SparseWindowAttention kernels (op contract: ../op.yaml, explained in ../README.md), shared by
// every front end.
// Plain C++: no ONNX Runtime / TensorRT / CUDA headers, so any front end can include it.
#pragma once

#include <cstdint>
#include <string>

// Same typedef as cuda_runtime_api.h (and TensorRT's headers), so this header needs no CUDA.
typedef struct CUstream_st* cudaStream_t;

namespace span_deploy {

// IEEE binary16 storage; layout-compatible with __half and Ort::Float16_t.
struct SwaHalf {
    uint16_t bits;
};

// Attributes, sizes and the int32/fp32 tables. Table pointers live in the memory space of the
// kernel they are passed to (host for swa_forward_cpu, device for swa_forward_cuda).
struct SwaParams {
    int64_t n = 0;          // N rows
    int64_t num_win_a = 0;  // Wa
    int64_t num_win_b = 0;  // Wb (read only when mode == 1)
    int32_t num_heads = 0;  // H
    int32_t head_dim = 0;   // Dh
    int32_t window = 0;     // S (window side in cells; S*S slots per window)
    int32_t mode = 0;       // 0: keys of A; 1: A plus the keys of B outside the query's A-window
    float scale = 1.f;
    const int32_t* win_a = nullptr;  // (Wa, S*S)
    const int32_t* pos_a = nullptr;  // (N)
    const int32_t* win_b = nullptr;  // (Wb, S*S)
    const int32_t* pos_b = nullptr;  // (N)
    const float* bias = nullptr;     // (H, 2S-1, 2S-1)
};

// Attribute / size consistency; empty string when valid, else a message for the user.
std::string swa_check_params(const SwaParams& p);

// ---- input shapes (op.yaml: inputs / dims) -------------------------------------------------
// Input indices in op order.
enum SwaInput : int32_t { kSwaQ = 0, kSwaK, kSwaV, kSwaWinA, kSwaPosA, kSwaWinB, kSwaPosB, kSwaBias };
constexpr int32_t kSwaNumInputs = 8;
constexpr int32_t kSwaMaxRank = 8;  // as TensorRT's Dims::MAX_DIMS

// "q", "k", "v", "win_a", "pos_a", "win_b", "pos_b", "bias"; "?" outside [0, 8).
const char* swa_input_name(int32_t index);

// The shape of one input as a front end knows it. A dim < 0 is unknown ("any": TensorRT build
// time); the rank is always known. Only the first kSwaMaxRank dims of a larger rank are kept
// (such a shape is wrong anyway).
struct SwaShape {
    int32_t rank = 0;
    int64_t dims[kSwaMaxRank] = {};
};
SwaShape swa_shape(const int64_t* dims, int64_t rank);

// The one shape check of every front end. Reads the attributes of p (num_heads, head_dim,
// window, mode; checked first, as swa_check_params does), checks the rank and every dim of
// the nb_inputs (must be 8) shapes against the contract:
//   q, k, v (N, C)   win_a (Wa, S^2)   pos_a (N)   win_b (Wb, S^2)   pos_b (N)   bias (H, 2S-1, 2S-1)
// with N = rows of q, C = num_heads * head_dim, S = window, H = num_heads; win_b and pos_b are
// ignored (not checked) when mode == 0. Unknown dims (< 0) match anything. With N > 0, Wa (and Wb
// when mode == 1) must be >= 1: the positions index those tables.
// Fills p.n, p.num_win_a and p.num_win_b (-1 where unknown; num_win_b = 0 when mode == 0) and,
// when all three are known, also runs swa_check_params on the result.
// Returns an empty string when consistent, else a message naming the input, its shape and the
// expected shape.
std::string swa_check_shapes(SwaParams& p, const SwaShape* shapes, int32_t nb_inputs);

// Table contents (host pointers): positions inside their table, window entries in [-1, N).
// The kernels themselves treat out-of-range entries as empty slots, so they never read out of
// bounds; this check lets a front end report bad tables instead of silently skipping them.
std::string swa_check_tables_host(const SwaParams& p);

// CPU, rows [row_begin, row_end) only: for front ends that bring their own thread pool.
void swa_forward_cpu_rows(const SwaParams& p, const float* q, const float* k, const float* v, float* out,
                          int64_t row_begin, int64_t row_end);
void swa_forward_cpu_rows(const SwaParams& p, const SwaHalf* q, const SwaHalf* k, const SwaHalf* v, SwaHalf* out,
                          int64_t row_begin, int64_t row_end);

// The CPU kernel behind swa_forward_cpu / swa_forward_cpu_rows, chosen once per process from the
// CPU and the environment variable SPAN_SWA_CPU_KERNEL (unset / "auto", "reference", "generic",
// "avx2", "avx512", "neon"): "avx512", "avx2", "neon" or "generic" (the window kernel, by ISA) or
// "reference".
const char* swa_cpu_kernel_name();

// The reference CPU kernel (one query row at a time, scalar loops), rows [row_begin, row_end):
// the same contract as swa_forward_cpu_rows, whatever SPAN_SWA_CPU_KERNEL says.
void swa_forward_cpu_reference_rows(const SwaParams& p, const float* q, const float* k, const float* v, float* out,
                                    int64_t row_begin, int64_t row_end);
void swa_forward_cpu_reference_rows(const SwaParams& p, const SwaHalf* q, const SwaHalf* k, const SwaHalf* v,
                                    SwaHalf* out, int64_t row_begin, int64_t row_end);

// CPU, all rows on num_threads std::threads (<= 0: hardware concurrency).
void swa_forward_cpu(const SwaParams& p, const float* q, const float* k, const float* v, float* out,
                     int num_threads = 0);
void swa_forward_cpu(const SwaParams& p, const SwaHalf* q, const SwaHalf* k, const SwaHalf* v, SwaHalf* out,
                     int num_threads = 0);

// CUDA: enqueues on `stream` and returns the launch status (a cudaError_t value, 0 = success).
// No allocation, no synchronisation, no workspace: safe inside CUDA-graph capture.
// Limits: head_dim <= 256 and 2*S^2 slots within 48 KiB of shared memory (S <= 55).
int swa_forward_cuda(const SwaParams& p, const float* q, const float* k, const float* v, float* out,
                     cudaStream_t stream);
int swa_forward_cuda(const SwaParams& p, const SwaHalf* q, const SwaHalf* k, const SwaHalf* v, SwaHalf* out,
                     cudaStream_t stream);
// Two CUDA kernels, one contract (float32 math; out-of-range table entries are empty slots):
// * the window kernel (swa_cuda_window.cu): one block per (A-window, query chunk, head group),
//   the window's K / V rows staged in shared memory, float16 Q.K^T and P.V on tensor cores
//   (sm_75+), float32 on a SIMT path; a second launch handles the rows the A table does not list
//   at their own position. Outside its limits (window S > 16, head_dim > 256 for float16 / > 128
//   for float32, 48 KiB of shared memory) a call runs the reference kernel instead;
// * the reference kernel (swa_cuda.cu): one block per query row.
// swa_forward_cuda runs the window kernel unless SPAN_SWA_CUDA_KERNEL=reference (read once per
// process; unset / "auto" / "window": window; an unknown value: auto, with one line on stderr).
// "window" or "reference": what swa_forward_cuda runs (before the window kernel's per-call fallback).
const char* swa_cuda_kernel_name();
// The two kernels directly, whatever SPAN_SWA_CUDA_KERNEL says (same contract and status as
// swa_forward_cuda).
int swa_forward_cuda_reference(const SwaParams& p, const float* q, const float* k, const float* v, float* out,
                               cudaStream_t stream);
int swa_forward_cuda_reference(const SwaParams& p, const SwaHalf* q, const SwaHalf* k, const SwaHalf* v,
                               SwaHalf* out, cudaStream_t stream);
int swa_forward_cuda_window(const SwaParams& p, const float* q, const float* k, const float* v, float* out,
                            cudaStream_t stream);
int swa_forward_cuda_window(const SwaParams& p, const SwaHalf* q, const SwaHalf* k, const SwaHalf* v, SwaHalf* out,
                            cudaStream_t stream);
// Which kernel swa_forward_cuda_window runs for p (fp16: float16 inputs): "window", or
// "reference" where p is outside the window kernel's limits. Host only, reads no table.
const char* swa_cuda_window_kernel_for(const SwaParams& p, bool fp16);
// The CUDA-specific part of swa_check_params (empty when the CUDA kernel supports p).
std::string swa_check_cuda_limits(const SwaParams& p);
const char* swa_cuda_error_string(int status);

}  // namespace span_deploy
