// GPU check of the SparseWindowAttention CUDA kernel against the CPU kernel (no TensorRT / ORT):
// SPAN-like window tables on sparse grids up to ~100k rows, both modes, fp32 and fp16, one
// launch replayed from a captured CUDA graph, and timings against memory-bandwidth and FP32
// FLOP floors of this device. Exit status 1 on any mismatch. Run by tools/gpu_check.sh.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "swa_kernels.h"

using span_deploy::SwaHalf;
using span_deploy::SwaParams;

#define CUDA_OK(x)                                                                              \
    do {                                                                                        \
        cudaError_t e_ = (x);                                                                   \
        if (e_ != cudaSuccess) {                                                                \
            std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            std::exit(2);                                                                       \
        }                                                                                       \
    } while (0)

namespace {

struct Windowing {
    std::vector<int32_t> win, pos;
    int64_t num_win = 0;
};

// Nodes on a rows x cols grid with the given fill (row-major ids); windows of S x S cells,
// shifted by `shift` cells; only non-empty windows are kept (like the host rulebook).
Windowing grid_windowing(const std::vector<std::pair<int, int>>& cells, int cols, int S, int shift) {
    Windowing w;
    std::map<int64_t, int64_t> ids;
    const int64_t wcols = cols / S + 2;
    std::vector<int64_t> wid(cells.size());
    for (size_t i = 0; i < cells.size(); ++i) {
        const int64_t key = int64_t((cells[i].first + shift) / S) * wcols + (cells[i].second + shift) / S;
        wid[i] = ids.emplace(key, int64_t(ids.size())).first->second;
    }
    w.num_win = int64_t(ids.size());
    w.win.assign(size_t(w.num_win) * S * S, -1);
    w.pos.resize(cells.size());
    for (size_t i = 0; i < cells.size(); ++i) {
        const int r = (cells[i].first + shift) % S, c = (cells[i].second + shift) % S;
        w.pos[i] = int32_t(wid[i] * S * S + r * S + c);
        w.win[size_t(w.pos[i])] = int32_t(i);
    }
    return w;
}

struct Case {
    const char* name;
    int rows, cols;
    double fill;
    int H, Dh, S, mode;
};

template <typename T>
T* to_device(const std::vector<T>& h) {
    T* d = nullptr;
    CUDA_OK(cudaMalloc(&d, std::max<size_t>(1, h.size()) * sizeof(T)));
    CUDA_OK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

struct Device {
    cudaDeviceProp prop{};
    double bandwidth = 0;  // bytes/s
    double fp32_flops = 0; // FLOP/s (FMA = 2)
};

int cores_per_sm(int major, int minor) {
    if (major == 7) return 64;
    if (major == 8) return minor == 0 ? 64 : 128;
    return 128;  // 8.6+, 8.9, 9.x, 10.x, 12.x
}

Device query_device() {
    Device d;
    int dev = 0;
    CUDA_OK(cudaGetDevice(&dev));
    CUDA_OK(cudaGetDeviceProperties(&d.prop, dev));
    int mem_khz = 0, sm_khz = 0;  // attributes: the matching cudaDeviceProp fields are gone in CUDA 13
    CUDA_OK(cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, dev));
    CUDA_OK(cudaDeviceGetAttribute(&sm_khz, cudaDevAttrClockRate, dev));
    d.bandwidth = 2.0 * mem_khz * 1e3 * d.prop.memoryBusWidth / 8.0;  // DDR
    d.fp32_flops = 2.0 * sm_khz * 1e3 * d.prop.multiProcessorCount * cores_per_sm(d.prop.major, d.prop.minor);
    return d;
}

float half_to_float(SwaHalf h) {
    __half x;
    static_assert(sizeof x == sizeof h, "");
    std::memcpy(&x, &h, sizeof h);
    return __half2float(x);
}

SwaHalf float_to_half(float f) {
    const __half x = __float2half_rn(f);
    SwaHalf h;
    std::memcpy(&h, &x, sizeof h);
    return h;
}

struct Result {
    std::string name;
    int64_t n = 0, pairs = 0;
    double ms = 0, floor_mem_ms = 0, floor_flop_ms = 0, rel = 0, tol = 0;
    bool ok = false;
};

template <typename T>
Result run_case(const Case& cs, bool fp16, const Device& dev, std::mt19937& rng) {
    std::uniform_real_distribution<double> u(0, 1);
    std::vector<std::pair<int, int>> cells;
    for (int r = 0; r < cs.rows; ++r)
        for (int c = 0; c < cs.cols; ++c)
            if (u(rng) < cs.fill) cells.emplace_back(r, c);
    const Windowing a = grid_windowing(cells, cs.cols, cs.S, 0);
    const Windowing b = grid_windowing(cells, cs.cols, cs.S, cs.S / 2);

    SwaParams p;
    p.n = int64_t(cells.size());
    p.num_win_a = a.num_win;
    p.num_win_b = b.num_win;
    p.num_heads = cs.H;
    p.head_dim = cs.Dh;
    p.window = cs.S;
    p.mode = cs.mode;
    p.scale = 1.f / std::sqrt(float(cs.Dh));
    const int64_t C = int64_t(cs.H) * cs.Dh, side = 2 * cs.S - 1;

    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<T> q(size_t(p.n * C)), k(q.size()), v(q.size()), out_cpu(q.size()), out_gpu(q.size());
    auto fill = [&](std::vector<T>& x) {
        for (auto& e : x) {
            if constexpr (std::is_same<T, float>::value) e = nd(rng);
            else e = float_to_half(nd(rng));
        }
    };
    fill(q), fill(k), fill(v);
    std::vector<float> bias(size_t(cs.H * side * side));
    for (auto& e : bias) e = 0.5f * nd(rng);

    SwaParams hp = p;
    hp.win_a = a.win.data(), hp.pos_a = a.pos.data(), hp.win_b = b.win.data(), hp.pos_b = b.pos.data();
    hp.bias = bias.data();
    span_deploy::swa_forward_cpu(hp, q.data(), k.data(), v.data(), out_cpu.data(), 0);

    // Candidate pairs, counted like the kernels do, for the FLOP floor.
    int64_t pairs = 0;
    {
        const int64_t S2 = int64_t(cs.S) * cs.S;
        for (int64_t i = 0; i < p.n; ++i) {
            const int64_t wa = a.pos[i] / S2;
            for (int64_t t = 0; t < S2; ++t) {
                const int32_t j = a.win[wa * S2 + t];
                pairs += j >= 0 && (j != i || (i >= 1 && i <= p.n - 2));
            }
            if (cs.mode == 1) {
                const int64_t wb = b.pos[i] / S2;
                for (int64_t t = 0; t < S2; ++t) {
                    const int32_t j = b.win[wb * S2 + t];
                    pairs += j >= 0 && a.pos[j] / S2 != wa;
                }
            }
        }
    }

    T *dq = to_device(q), *dk = to_device(k), *dv = to_device(v), *dout = to_device(out_gpu);
    SwaParams dp = p;
    dp.win_a = to_device(a.win), dp.pos_a = to_device(a.pos);
    dp.win_b = to_device(b.win), dp.pos_b = to_device(b.pos);
    dp.bias = to_device(bias);
    cudaStream_t stream;
    CUDA_OK(cudaStreamCreate(&stream));
    auto launch = [&] {
        const int rc = span_deploy::swa_forward_cuda(dp, dq, dk, dv, dout, stream);
        if (rc != 0) {
            std::fprintf(stderr, "%s: launch failed: %s\n", cs.name, span_deploy::swa_cuda_error_string(rc));
            std::exit(2);
        }
    };
    // Correctness from a graph-captured launch: the kernel must not allocate or synchronise.
    CUDA_OK(cudaMemsetAsync(dout, 0xff, q.size() * sizeof(T), stream));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    launch();
    CUDA_OK(cudaStreamEndCapture(stream, &graph));
    CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
    CUDA_OK(cudaGraphLaunch(exec, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    CUDA_OK(cudaMemcpy(out_gpu.data(), dout, q.size() * sizeof(T), cudaMemcpyDeviceToHost));

    double max_diff = 0, peak = 0;
    bool finite = true;
    for (size_t e = 0; e < q.size(); ++e) {
        double g, c;
        if constexpr (std::is_same<T, float>::value) g = out_gpu[e], c = out_cpu[e];
        else g = half_to_float(out_gpu[e]), c = half_to_float(out_cpu[e]);
        finite = finite && std::isfinite(g);
        max_diff = std::max(max_diff, std::fabs(g - c));
        peak = std::max(peak, std::fabs(c));
    }

    cudaEvent_t t0, t1;
    CUDA_OK(cudaEventCreate(&t0));
    CUDA_OK(cudaEventCreate(&t1));
    for (int it = 0; it < 3; ++it) launch();
    const int iters = 20;
    CUDA_OK(cudaEventRecord(t0, stream));
    for (int it = 0; it < iters; ++it) launch();
    CUDA_OK(cudaEventRecord(t1, stream));
    CUDA_OK(cudaEventSynchronize(t1));
    float ms = 0;
    CUDA_OK(cudaEventElapsedTime(&ms, t0, t1));

    Result r;
    r.name = std::string(cs.name) + (fp16 ? " fp16" : " fp32");
    r.n = p.n;
    r.pairs = pairs;
    r.ms = ms / iters;
    const double tables = double(a.win.size() + a.pos.size()) * 4 +
                          (cs.mode == 1 ? double(b.win.size() + b.pos.size()) * 4 : 0.0);
    const double bytes = 4.0 * p.n * C * sizeof(T) + tables + bias.size() * 4.0;  // q, k, v, out once
    r.floor_mem_ms = bytes / dev.bandwidth * 1e3;
    r.floor_flop_ms = 4.0 * pairs * C / dev.fp32_flops * 1e3;  // q.k and p.v, 2 FLOP each per dim
    r.rel = peak > 0 ? max_diff / peak : max_diff;
    r.tol = fp16 ? 5e-3 : 1e-5;
    r.ok = finite && r.rel <= r.tol;

    CUDA_OK(cudaGraphExecDestroy(exec));
    CUDA_OK(cudaGraphDestroy(graph));
    CUDA_OK(cudaEventDestroy(t0));
    CUDA_OK(cudaEventDestroy(t1));
    CUDA_OK(cudaStreamDestroy(stream));
    for (const void* ptr : {(const void*)dq, (const void*)dk, (const void*)dv, (const void*)dout, (const void*)dp.win_a,
                            (const void*)dp.pos_a, (const void*)dp.win_b, (const void*)dp.pos_b, (const void*)dp.bias})
        CUDA_OK(cudaFree(const_cast<void*>(ptr)));
    return r;
}

}  // namespace

int main() {
    const Device dev = query_device();
    std::printf("device: %s (sm_%d%d), %d SMs, %.0f GB/s, %.1f FP32 TFLOP/s (nominal)\n", dev.prop.name,
                dev.prop.major, dev.prop.minor, dev.prop.multiProcessorCount, dev.bandwidth / 1e9,
                dev.fp32_flops / 1e12);
    // window_size 4 -> S = 8 (64 slots); grids ~100k rows at 65% fill like tissue tiles.
    const Case cases[] = {
        {"small  H4 Dh32 S8 m0", 60, 50, 0.6, 4, 32, 8, 0},
        {"small  H3 Dh20 S4 m1", 60, 50, 0.6, 3, 20, 4, 1},
        {"small  H2 Dh96 S6 m1", 40, 40, 0.7, 2, 96, 6, 1},
        {"large  H8 Dh32 S8 m0", 400, 400, 0.65, 8, 32, 8, 0},
        {"large  H8 Dh32 S8 m1", 400, 400, 0.65, 8, 32, 8, 1},
        {"large  H4 Dh64 S8 m1", 400, 400, 0.65, 4, 64, 8, 1},
    };
    std::mt19937 rng(1234);
    std::vector<Result> results;
    for (const Case& cs : cases) {
        results.push_back(run_case<float>(cs, false, dev, rng));
        results.push_back(run_case<SwaHalf>(cs, true, dev, rng));
    }
    bool all_ok = true;
    std::printf("\n%-26s %8s %10s %9s %9s %9s %7s %10s  %s\n", "case", "N", "pairs", "ms", "mem_floor", "flop_floor",
                "x_floor", "rel_err", "ok");
    for (const Result& r : results) {
        const double floor_ms = std::max(r.floor_mem_ms, r.floor_flop_ms);
        std::printf("%-26s %8lld %10lld %9.4f %9.4f %9.4f %7.1f %10.2e  %s\n", r.name.c_str(), (long long)r.n,
                    (long long)r.pairs, r.ms, r.floor_mem_ms, r.floor_flop_ms, r.ms / floor_ms, r.rel,
                    r.ok ? "PASS" : "FAIL");
        all_ok = all_ok && r.ok;
    }
    std::printf("%s\n", all_ok ? "ALL PASS" : "FAILURES");
    return all_ok ? 0 : 1;
}
