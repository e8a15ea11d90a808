// Host-side validation shared by the front ends (see swa_kernels.h).
#include "swa_kernels.h"

#include <string>

namespace span_deploy {

namespace {
constexpr int kCudaMaxHeadDim = 256;                 // 8 dims per lane, 32 lanes per head
constexpr int64_t kCudaMaxSharedBytes = 48 * 1024;   // static limit without opt-in attributes
}  // namespace

std::string swa_check_params(const SwaParams& p) {
    if (p.num_heads <= 0 || p.head_dim <= 0) return "num_heads and head_dim must be positive";
    if (p.window <= 0) return "window (S) must be positive";
    if (p.mode != 0 && p.mode != 1) return "mode must be 0 or 1, got " + std::to_string(p.mode);
    if (p.n < 0 || p.num_win_a < 0 || p.num_win_b < 0) return "negative table size";
    if (p.n > INT32_MAX) return "N must fit int32 (the window tables hold int32 row ids)";
    return {};
}

std::string swa_check_cuda_limits(const SwaParams& p) {
    if (p.head_dim > kCudaMaxHeadDim)
        return "CUDA kernel supports head_dim <= " + std::to_string(kCudaMaxHeadDim) + ", got " +
               std::to_string(p.head_dim);
    const int64_t slots = int64_t(p.window) * p.window;
    if (2 * slots * 2 * int64_t(sizeof(int32_t)) > kCudaMaxSharedBytes)
        return "CUDA kernel supports window (S) <= 55, got " + std::to_string(p.window);
    return {};
}

std::string swa_check_tables_host(const SwaParams& p) {
    const int64_t slots = int64_t(p.window) * p.window;
    auto check = [&](const char* name, const int32_t* win, const int32_t* pos, int64_t num_win) -> std::string {
        for (int64_t i = 0; i < p.n; ++i)
            if (pos[i] < 0 || pos[i] >= num_win * slots)
                return std::string(name) + ": pos[" + std::to_string(i) + "] = " + std::to_string(pos[i]) +
                       " is outside its window table (" + std::to_string(num_win) + " windows of " +
                       std::to_string(slots) + " slots)";
        for (int64_t t = 0; t < num_win * slots; ++t)
            if (win[t] < -1 || win[t] >= p.n)
                return std::string(name) + ": window entry " + std::to_string(t) + " = " + std::to_string(win[t]) +
                       " is not -1 or a row in [0, " + std::to_string(p.n) + ")";
        return {};
    };
    std::string err = check("windowing A", p.win_a, p.pos_a, p.num_win_a);
    if (err.empty() && p.mode == 1) err = check("windowing B", p.win_b, p.pos_b, p.num_win_b);
    return err;
}

}  // namespace span_deploy
