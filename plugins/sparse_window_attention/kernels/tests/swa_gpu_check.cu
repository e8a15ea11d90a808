// GPU check of the SparseWindowAttention CUDA kernels (no TensorRT / ORT), run by tools/gpu_check.sh:
// both CUDA kernels, the reference (swa_forward_cuda_reference, one block per row) and the window
// kernel (swa_forward_cuda_window, which falls back to the reference kernel outside its limits:
// the "ran" column says which ran), against the CPU kernel (swa_forward_cpu), float32 (max abs
// error <= 1e-5 * max |out|) and float16 (<= 5e-3 * max |out|); rows without a key must be exact
// zeros and nothing may be non-finite. Cases: SPAN-like sparse grids (8 heads x 64, S = 6, both
// modes) at 20k, 100k and 1M rows (1M: a random subset of rows compared), small and odd shapes,
// the largest window (S = 55) and head_dim (256), N = 1 and 2, no keys at all, random tables (rows
// permuted, windows shuffled, empty slots), adversarial tables (inconsistent / out-of-range
// positions, duplicate and out-of-range entries, -inf bias entries), unaligned tensors (the
// scalar load path). A launch replayed from a captured CUDA graph must equal a direct launch
// bit for bit, for both kernels. Timings: CUDA events, median of 20 launches after warm-up, at
// 20k / 100k / 1M rows of the SPAN config against the bandwidth floor (q, k, v read once, out
// written once, the tables and bias) over a device-to-device copy bandwidth measured here.
//
// Usage: swa_gpu_check [--json PATH] [--quick] [--sanitize]
//   --quick     no 1M-row dataset, timings at 20k and 100k only, 10 timed launches
//   --sanitize  small cases only, no timings (for compute-sanitizer --tool memcheck)
// Exit status: 0 all pass, 1 any mismatch, 2 a CUDA error (the JSON, if asked for, is still
// written, with "error").
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "swa_kernels.h"
#include "swa_test_rng.h"

using span_deploy::SwaHalf;
using span_deploy::SwaParams;

namespace {

// ---------------------------------------------------------------- report (stdout table + JSON)
std::string json_escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\', o += c;
        else if (static_cast<unsigned char>(c) < 0x20) o += ' ';
        else o += c;
    }
    return o;
}

std::string num(double x) {
    if (!std::isfinite(x)) return "null";
    char b[64];
    std::snprintf(b, sizeof b, "%.6g", x);
    return b;
}

struct Report {
    std::string json_path;
    std::string device_json = "{}";
    std::vector<std::string> cases, timings, graphs;
    bool graph_pass = true;
    bool any_fail = false;

    void write(const std::string& error) const {
        if (json_path.empty()) return;
        FILE* f = std::fopen(json_path.c_str(), "w");
        if (!f) {
            std::fprintf(stderr, "swa_gpu_check: cannot write %s\n", json_path.c_str());
            return;
        }
        auto list = [&](const std::vector<std::string>& v) {
            std::string s = "[";
            for (size_t i = 0; i < v.size(); ++i) s += (i ? ",\n    " : "\n    ") + v[i];
            return s + (v.empty() ? "]" : "\n  ]");
        };
        std::fprintf(f, "{\n  \"device\": %s,\n  \"cuda_kernel_default\": \"%s\",\n  \"cases\": %s,\n  \"timings\": %s,\n",
                     device_json.c_str(), span_deploy::swa_cuda_kernel_name(), list(cases).c_str(),
                     list(timings).c_str());
        std::fprintf(f, "  \"graph_replay\": {\"pass\": %s, \"cases\": %s},\n", graph_pass ? "true" : "false",
                     list(graphs).c_str());
        std::fprintf(f, "  \"pass\": %s%s%s\n}\n", (!any_fail && error.empty()) ? "true" : "false",
                     error.empty() ? "" : ",\n  \"error\": \"", error.empty() ? "" : (json_escape(error) + "\"").c_str());
        std::fclose(f);
    }
};

Report g_report;

[[noreturn]] void cuda_fail(const char* file, int line, const char* expr, const char* msg) {
    char b[1024];
    std::snprintf(b, sizeof b, "%s:%d %s: %s", file, line, expr, msg);
    std::fprintf(stderr, "swa_gpu_check: CUDA error: %s\n", b);
    g_report.write(b);
    std::exit(2);
}

#define CUDA_OK(x)                                                                        \
    do {                                                                                  \
        cudaError_t e_ = (x);                                                             \
        if (e_ != cudaSuccess) cuda_fail(__FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
    } while (0)

using span_deploy_test::Rng;  // swa_test_rng.h

// ---------------------------------------------------------------- tables
struct Tables {
    int64_t wa = 0, wb = 0;
    std::vector<int32_t> win_a, pos_a, win_b, pos_b;
};

// rows x cols grid filled with probability `fill` (row-major ids, or permuted), windows of S x S
// cells (B shifted by S/2), only non-empty windows kept (in order of appearance, or shuffled).
Tables grid_tables(Rng& rng, int64_t rows, int64_t cols, double fill, int S, bool permute) {
    std::vector<std::pair<int32_t, int32_t>> cells;
    cells.reserve(size_t(double(rows * cols) * fill * 1.05) + 16);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
            if (rng.chance(fill)) cells.push_back({int32_t(r), int32_t(c)});
    if (permute)
        for (size_t i = cells.size(); i > 1; --i) std::swap(cells[i - 1], cells[size_t(rng.uniform(0, int64_t(i) - 1))]);
    Tables t;
    const int64_t S2 = int64_t(S) * S;
    auto make = [&](int shift, int64_t& nw, std::vector<int32_t>& win, std::vector<int32_t>& pos) {
        const int64_t wcols = (cols + shift) / S + 1, wrows = (rows + shift) / S + 1;
        std::vector<int64_t> id(size_t(wcols * wrows), -1);
        nw = 0;
        for (const auto& c : cells) {
            const int64_t key = ((c.first + shift) / S) * wcols + (c.second + shift) / S;
            if (id[size_t(key)] < 0) id[size_t(key)] = nw++;
        }
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

// Adversarial edits at `rate`: positions elsewhere / negative / past the table; window entries
// duplicating another row, past N, below -1, or emptied.
void corrupt(Rng& rng, Tables& t, int64_t n, int S, double rate) {
    const int64_t S2 = int64_t(S) * S;
    for (int which = 0; which < 2; ++which) {
        std::vector<int32_t>& pos = which == 0 ? t.pos_a : t.pos_b;
        const int64_t nslots = int64_t(which == 0 ? t.win_a.size() : t.win_b.size());
        for (int64_t i = 0; i < n; ++i) {
            if (!rng.chance(rate)) continue;
            switch (rng.uniform(0, 3)) {
            case 0: pos[size_t(i)] = int32_t(rng.uniform(0, std::max<int64_t>(0, nslots - 1))); break;
            case 1: pos[size_t(i)] = -int32_t(rng.uniform(1, 5)); break;
            case 2: pos[size_t(i)] = int32_t(nslots + rng.uniform(0, 3)); break;
            default: pos[size_t(i)] = int32_t(std::min<int64_t>(INT32_MAX, nslots + S2 * 100)); break;
            }
        }
    }
    for (int which = 0; which < 2; ++which)
        for (auto& e : which == 0 ? t.win_a : t.win_b) {
            if (!rng.chance(rate)) continue;
            switch (rng.uniform(0, 3)) {
            case 0: e = int32_t(rng.uniform(0, n - 1)); break;
            case 1: e = int32_t(n + rng.uniform(0, 3)); break;
            case 2: e = -int32_t(rng.uniform(2, 7)); break;
            default: e = -1; break;
            }
        }
}

// ---------------------------------------------------------------- datasets
enum Check { kFull, kSubset };

struct Spec {
    std::string name;
    int64_t rows = 0, cols = 0;
    double fill = 0;
    int H = 1, Dh = 1, S = 1, mode = 0;
    bool permute = false;
    double corrupt = 0;
    double ninf_bias = 0;
    int64_t force_n = -1;       // N = 1, 2 in one window
    bool empty_windows = false; // every slot -1 (positions still in range)
    bool pos_out = false;       // every pos_a out of range
    bool own_b = false;         // random pos_b: many B-windows per A-window
    bool misalign = false;      // tensors one element off 16-byte alignment
    Check check = kFull;
    bool graph = false;
    bool time = false;
};

// Device fill: a hash of the index, uniform in [-1.5, 1.5].
__global__ void fill_kernel(float* x, int64_t n, uint64_t seed) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        uint64_t z = (uint64_t(i) + seed) * 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        x[i] = float(double(z >> 40) * (3.0 / 16777216.0) - 1.5);
    }
}
__global__ void to_half_kernel(const float* x, __half* y, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        y[i] = __float2half_rn(x[i]);
}

float half_to_float(SwaHalf h) {
    __half x;
    std::memcpy(&x, &h, sizeof h);
    return __half2float(x);
}

template <typename T>
T* dalloc(size_t n) {
    T* d = nullptr;
    CUDA_OK(cudaMalloc(&d, std::max<size_t>(1, n) * sizeof(T)));
    return d;
}
template <typename T>
T* to_device(const std::vector<T>& h) {
    T* d = dalloc<T>(h.size());
    if (!h.empty()) CUDA_OK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

struct Device {
    cudaDeviceProp prop{};
    double nominal_bw = 0, measured_bw = 0;  // bytes/s
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

Device query_device(bool measure, size_t copy_bytes) {
    Device d;
    int dev = 0;
    CUDA_OK(cudaGetDevice(&dev));
    CUDA_OK(cudaGetDeviceProperties(&d.prop, dev));
    int mem_khz = 0;  // an attribute: the cudaDeviceProp field is gone in CUDA 13
    CUDA_OK(cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, dev));
    d.nominal_bw = 2.0 * mem_khz * 1e3 * d.prop.memoryBusWidth / 8.0;
    if (measure) {
        void *a = nullptr, *b = nullptr;
        CUDA_OK(cudaMalloc(&a, copy_bytes));
        CUDA_OK(cudaMalloc(&b, copy_bytes));
        CUDA_OK(cudaMemset(a, 1, copy_bytes));
        cudaEvent_t e0, e1;
        CUDA_OK(cudaEventCreate(&e0));
        CUDA_OK(cudaEventCreate(&e1));
        std::vector<double> t;
        for (int it = 0; it < 12; ++it) {
            CUDA_OK(cudaEventRecord(e0));
            CUDA_OK(cudaMemcpyAsync(b, a, copy_bytes, cudaMemcpyDeviceToDevice));
            CUDA_OK(cudaEventRecord(e1));
            CUDA_OK(cudaEventSynchronize(e1));
            float ms = 0;
            CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
            if (it >= 2) t.push_back(ms);
        }
        d.measured_bw = 2.0 * double(copy_bytes) / (median(t) * 1e-3);  // read + write
        CUDA_OK(cudaEventDestroy(e0));
        CUDA_OK(cudaEventDestroy(e1));
        CUDA_OK(cudaFree(a));
        CUDA_OK(cudaFree(b));
    }
    return d;
}

struct KernelFn {
    const char* name;
    int (*f32)(const SwaParams&, const float*, const float*, const float*, float*, cudaStream_t);
    int (*f16)(const SwaParams&, const SwaHalf*, const SwaHalf*, const SwaHalf*, SwaHalf*, cudaStream_t);
};
const KernelFn kKernels[2] = {
    {"reference", span_deploy::swa_forward_cuda_reference, span_deploy::swa_forward_cuda_reference},
    {"window", span_deploy::swa_forward_cuda_window, span_deploy::swa_forward_cuda_window},
};

int call(const KernelFn& kf, const SwaParams& p, const float* q, const float* k, const float* v, float* o,
         cudaStream_t s) {
    return kf.f32(p, q, k, v, o, s);
}
int call(const KernelFn& kf, const SwaParams& p, const SwaHalf* q, const SwaHalf* k, const SwaHalf* v, SwaHalf* o,
         cudaStream_t s) {
    return kf.f16(p, q, k, v, o, s);
}

struct Options {
    bool quick = false, sanitize = false;
    int iters = 20;
};

// One dataset: host tables and bias, device copies; per dtype the q / k / v data.
struct Dataset {
    Spec sp;
    Tables t;
    int64_t n = 0, C = 0;
    std::vector<float> bias;
    SwaParams hp, dp;  // host / device table pointers
    int32_t *d_win_a = nullptr, *d_pos_a = nullptr, *d_win_b = nullptr, *d_pos_b = nullptr;
    float* d_bias = nullptr;
    std::vector<int64_t> rows_checked;  // kSubset: ranges [b, e) flattened
    double table_bytes = 0;
};

void build(Dataset& ds, Rng& rng) {
    const Spec& sp = ds.sp;
    Tables& t = ds.t;
    if (sp.force_n >= 0) {
        const int64_t S2 = int64_t(sp.S) * sp.S;
        t.wa = t.wb = 1;
        t.win_a.assign(size_t(S2), -1), t.win_b.assign(size_t(S2), -1);
        for (int64_t i = 0; i < sp.force_n; ++i) {
            t.pos_a.push_back(int32_t(i % S2)), t.win_a[size_t(i % S2)] = int32_t(i);
            t.pos_b.push_back(int32_t((i + 1) % S2)), t.win_b[size_t((i + 1) % S2)] = int32_t(i);
        }
        ds.n = sp.force_n;
    } else {
        t = grid_tables(rng, sp.rows, sp.cols, sp.fill, sp.S, sp.permute);
        ds.n = int64_t(t.pos_a.size());
    }
    if (sp.own_b && t.wb > 0)
        for (auto& x : t.pos_b) x = int32_t(rng.uniform(0, t.wb * sp.S * sp.S - 1));
    if (sp.corrupt > 0) corrupt(rng, t, ds.n, sp.S, sp.corrupt);
    if (sp.empty_windows) std::fill(t.win_a.begin(), t.win_a.end(), -1), std::fill(t.win_b.begin(), t.win_b.end(), -1);
    if (sp.pos_out)
        for (size_t i = 0; i < t.pos_a.size(); ++i) t.pos_a[i] = (i % 2) ? -1 : int32_t(t.win_a.size() + i % 7);
    ds.C = int64_t(sp.H) * sp.Dh;
    const int64_t side = 2 * sp.S - 1;
    ds.bias.resize(size_t(sp.H * side * side));
    for (auto& x : ds.bias) x = rng.chance(sp.ninf_bias) ? -std::numeric_limits<float>::infinity() : rng.real(-1.f, 1.f);
    SwaParams p;
    p.n = ds.n;
    p.num_win_a = t.wa;
    p.num_win_b = sp.mode == 1 ? t.wb : 0;
    p.num_heads = sp.H;
    p.head_dim = sp.Dh;
    p.window = sp.S;
    p.mode = sp.mode;
    p.scale = 1.f / std::sqrt(float(sp.Dh));
    ds.hp = p;
    ds.hp.win_a = t.win_a.data(), ds.hp.pos_a = t.pos_a.data(), ds.hp.bias = ds.bias.data();
    ds.dp = p;
    ds.d_win_a = to_device(t.win_a), ds.d_pos_a = to_device(t.pos_a), ds.d_bias = to_device(ds.bias);
    ds.dp.win_a = ds.d_win_a, ds.dp.pos_a = ds.d_pos_a, ds.dp.bias = ds.d_bias;
    ds.table_bytes = 4.0 * double(t.win_a.size() + t.pos_a.size() + ds.bias.size());
    if (sp.mode == 1) {  // mode 0: win_b / pos_b stay null (must not be read)
        ds.hp.win_b = t.win_b.data(), ds.hp.pos_b = t.pos_b.data();
        ds.d_win_b = to_device(t.win_b), ds.d_pos_b = to_device(t.pos_b);
        ds.dp.win_b = ds.d_win_b, ds.dp.pos_b = ds.d_pos_b;
        ds.table_bytes += 4.0 * double(t.win_b.size() + t.pos_b.size());
    }
    if (sp.check == kSubset) {  // 48 random ranges of 256 rows
        for (int r = 0; r < 48; ++r) {
            const int64_t b = rng.uniform(0, std::max<int64_t>(0, ds.n - 256));
            ds.rows_checked.push_back(b), ds.rows_checked.push_back(std::min(ds.n, b + 256));
        }
    } else {
        ds.rows_checked = {0, ds.n};
    }
}

void release(Dataset& ds) {
    for (void* ptr : {(void*)ds.d_win_a, (void*)ds.d_pos_a, (void*)ds.d_win_b, (void*)ds.d_pos_b, (void*)ds.d_bias})
        if (ptr) CUDA_OK(cudaFree(ptr));
}

// CPU kernel on the checked rows (all threads).
template <typename T>
void cpu_rows(const Dataset& ds, const T* q, const T* k, const T* v, T* out) {
    if (ds.sp.check == kFull) {
        span_deploy::swa_forward_cpu(ds.hp, q, k, v, out, 0);
        return;
    }
    std::vector<std::thread> pool;
    const size_t nr = ds.rows_checked.size() / 2;
    const unsigned nt = std::max(1u, std::min(std::thread::hardware_concurrency(), unsigned(nr)));
    for (unsigned t = 0; t < nt; ++t)
        pool.emplace_back([&, t] {
            for (size_t r = t; r < nr; r += nt)
                span_deploy::swa_forward_cpu_rows(ds.hp, q, k, v, out, ds.rows_checked[2 * r], ds.rows_checked[2 * r + 1]);
        });
    for (auto& th : pool) th.join();
}

struct Compare {
    double max_abs = 0, peak = 0, tol = 0;
    int64_t rows = 0, bad_zero_rows = 0, nonfinite = 0;
    bool pass = false;
};

template <typename T>
Compare compare(const Dataset& ds, const T* gpu, const T* cpu, bool fp16) {
    Compare c;
    auto val = [](T x) -> double {
        if constexpr (std::is_same<T, float>::value) return x;
        else return half_to_float(x);
    };
    for (size_t r = 0; r + 1 < ds.rows_checked.size(); r += 2)
        for (int64_t i = ds.rows_checked[r]; i < ds.rows_checked[r + 1]; ++i) {
            ++c.rows;
            bool zero = true, gzero = true;
            for (int64_t e = i * ds.C; e < (i + 1) * ds.C; ++e) {
                const double g = val(gpu[e]), x = val(cpu[e]);
                if (!std::isfinite(g)) ++c.nonfinite;
                c.max_abs = std::max(c.max_abs, std::fabs(g - x));
                if (!std::isfinite(g)) c.max_abs = std::numeric_limits<double>::infinity();
                c.peak = std::max(c.peak, std::fabs(x));
                zero = zero && x == 0;
                gzero = gzero && g == 0;
            }
            if (zero && !gzero) ++c.bad_zero_rows;  // no key: exact zeros
        }
    c.tol = (fp16 ? 5e-3 : 1e-5) * c.peak;
    c.pass = c.nonfinite == 0 && c.bad_zero_rows == 0 && c.max_abs <= c.tol;
    return c;
}

const char* dtype_name(bool fp16) { return fp16 ? "float16" : "float32"; }

template <typename T>
void run_dtype(Dataset& ds, const Device& dev, const Options& opt, cudaStream_t stream, uint64_t seed) {
    constexpr bool fp16 = std::is_same<T, SwaHalf>::value;
    const Spec& sp = ds.sp;
    const int64_t elems = ds.n * ds.C;
    const int64_t lead = sp.misalign ? 1 : 0;
    // device data: float32 hash, converted for float16
    float* d_f = dalloc<float>(size_t(3 * elems));
    if (elems > 0) fill_kernel<<<4096, 256, 0, stream>>>(d_f, 3 * elems, seed);
    CUDA_OK(cudaGetLastError());
    T* d_in = dalloc<T>(size_t(3 * elems + 3 * lead));
    T* dq = d_in + lead;
    T* dk = d_in + elems + 2 * lead;
    T* dv = d_in + 2 * elems + 3 * lead;
    if (elems > 0) {
        if constexpr (fp16) {
            to_half_kernel<<<4096, 256, 0, stream>>>(d_f, reinterpret_cast<__half*>(dq), elems);
            to_half_kernel<<<4096, 256, 0, stream>>>(d_f + elems, reinterpret_cast<__half*>(dk), elems);
            to_half_kernel<<<4096, 256, 0, stream>>>(d_f + 2 * elems, reinterpret_cast<__half*>(dv), elems);
            CUDA_OK(cudaGetLastError());
        } else {
            CUDA_OK(cudaMemcpyAsync(dq, d_f, size_t(elems) * 4, cudaMemcpyDeviceToDevice, stream));
            CUDA_OK(cudaMemcpyAsync(dk, d_f + elems, size_t(elems) * 4, cudaMemcpyDeviceToDevice, stream));
            CUDA_OK(cudaMemcpyAsync(dv, d_f + 2 * elems, size_t(elems) * 4, cudaMemcpyDeviceToDevice, stream));
        }
    }
    CUDA_OK(cudaStreamSynchronize(stream));
    CUDA_OK(cudaFree(d_f));
    T* d_outbuf = dalloc<T>(size_t(elems + lead));
    T* dout = d_outbuf + lead;
    T* d_out2 = dalloc<T>(size_t(elems));

    std::unique_ptr<T[]> hq(new T[size_t(std::max<int64_t>(1, elems))]), hk(new T[size_t(std::max<int64_t>(1, elems))]),
        hv(new T[size_t(std::max<int64_t>(1, elems))]), hcpu(new T[size_t(std::max<int64_t>(1, elems))]),
        hgpu(new T[size_t(std::max<int64_t>(1, elems))]), hgpu2;
    if (elems > 0) {
        CUDA_OK(cudaMemcpy(hq.get(), dq, size_t(elems) * sizeof(T), cudaMemcpyDeviceToHost));
        CUDA_OK(cudaMemcpy(hk.get(), dk, size_t(elems) * sizeof(T), cudaMemcpyDeviceToHost));
        CUDA_OK(cudaMemcpy(hv.get(), dv, size_t(elems) * sizeof(T), cudaMemcpyDeviceToHost));
    }
    const auto c0 = std::chrono::steady_clock::now();
    cpu_rows(ds, hq.get(), hk.get(), hv.get(), hcpu.get());
    const double cpu_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();

    for (const KernelFn& kf : kKernels) {
        const bool window = !std::strcmp(kf.name, "window");
        const char* ran = window ? span_deploy::swa_cuda_window_kernel_for(ds.dp, fp16) : "reference";
        auto launch = [&](T* o) {
            const int rc = call(kf, ds.dp, dq, dk, dv, o, stream);
            if (rc != 0) cuda_fail(__FILE__, __LINE__, kf.name, span_deploy::swa_cuda_error_string(rc));
        };
        // direct launch into a NaN-poisoned output: an unwritten row fails the comparison
        if (elems > 0) CUDA_OK(cudaMemsetAsync(dout, 0xff, size_t(elems) * sizeof(T), stream));
        launch(dout);
        CUDA_OK(cudaStreamSynchronize(stream));
        CUDA_OK(cudaGetLastError());
        if (elems > 0) CUDA_OK(cudaMemcpy(hgpu.get(), dout, size_t(elems) * sizeof(T), cudaMemcpyDeviceToHost));
        const Compare c = compare(ds, hgpu.get(), hcpu.get(), fp16);
        g_report.any_fail = g_report.any_fail || !c.pass;
        std::printf("%-38s %-9s %-9s %-7s m%d %9lld %9lld %10.3e %10.3e %s%s\n", sp.name.c_str(), kf.name, ran,
                    fp16 ? "fp16" : "fp32", sp.mode, (long long)ds.n, (long long)c.rows, c.max_abs, c.tol,
                    c.pass ? "PASS" : "FAIL",
                    c.pass ? ""
                           : (" (nonfinite " + std::to_string(c.nonfinite) + ", nonzero no-key rows " +
                              std::to_string(c.bad_zero_rows) + ")")
                                 .c_str());
        std::fflush(stdout);
        g_report.cases.push_back(
            "{\"name\": \"" + json_escape(sp.name) + "\", \"kernel\": \"" + kf.name + "\", \"ran\": \"" + ran +
            "\", \"dtype\": \"" + dtype_name(fp16) + "\", \"mode\": " + std::to_string(sp.mode) +
            ", \"rows\": " + std::to_string(ds.n) + ", \"rows_compared\": " + std::to_string(c.rows) +
            ", \"heads\": " + std::to_string(sp.H) + ", \"head_dim\": " + std::to_string(sp.Dh) +
            ", \"window\": " + std::to_string(sp.S) + ", \"max_abs_err\": " + num(c.max_abs) +
            ", \"peak\": " + num(c.peak) + ", \"tol\": " + num(c.tol) + ", \"nonfinite\": " +
            std::to_string(c.nonfinite) + ", \"nonzero_nokey_rows\": " + std::to_string(c.bad_zero_rows) +
            ", \"cpu_s\": " + num(cpu_s) + ", \"pass\": " + (c.pass ? "true" : "false") + "}");

        if (sp.graph && elems > 0) {  // one launch captured, replayed into a poisoned buffer
            cudaGraph_t graph;
            cudaGraphExec_t exec;
            CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
            launch(d_out2);
            CUDA_OK(cudaStreamEndCapture(stream, &graph));
            CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
            CUDA_OK(cudaMemsetAsync(d_out2, 0xff, size_t(elems) * sizeof(T), stream));
            CUDA_OK(cudaGraphLaunch(exec, stream));
            CUDA_OK(cudaGraphLaunch(exec, stream));  // twice: replay is repeatable
            CUDA_OK(cudaStreamSynchronize(stream));
            if (!hgpu2) hgpu2.reset(new T[size_t(elems)]);
            CUDA_OK(cudaMemcpy(hgpu2.get(), d_out2, size_t(elems) * sizeof(T), cudaMemcpyDeviceToHost));
            const bool same = std::memcmp(hgpu2.get(), hgpu.get(), size_t(elems) * sizeof(T)) == 0;
            g_report.graph_pass = g_report.graph_pass && same;
            g_report.any_fail = g_report.any_fail || !same;
            std::printf("%-38s %-9s %-9s %-7s graph replay == direct launch (bitwise): %s\n", sp.name.c_str(), kf.name,
                        ran, fp16 ? "fp16" : "fp32", same ? "PASS" : "FAIL");
            g_report.graphs.push_back("{\"name\": \"" + json_escape(sp.name) + "\", \"kernel\": \"" + kf.name +
                                      "\", \"ran\": \"" + ran + "\", \"dtype\": \"" + dtype_name(fp16) +
                                      "\", \"bitwise_equal\": " + (same ? "true" : "false") + "}");
            CUDA_OK(cudaGraphExecDestroy(exec));
            CUDA_OK(cudaGraphDestroy(graph));
        }

        if (sp.time && !opt.sanitize && elems > 0) {
            cudaEvent_t e0, e1;
            CUDA_OK(cudaEventCreate(&e0));
            CUDA_OK(cudaEventCreate(&e1));
            for (int it = 0; it < 3; ++it) launch(dout);
            std::vector<double> t;
            for (int it = 0; it < opt.iters; ++it) {
                CUDA_OK(cudaEventRecord(e0, stream));
                launch(dout);
                CUDA_OK(cudaEventRecord(e1, stream));
                CUDA_OK(cudaEventSynchronize(e1));
                float ms = 0;
                CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
                t.push_back(ms);
            }
            CUDA_OK(cudaEventDestroy(e0));
            CUDA_OK(cudaEventDestroy(e1));
            const double ms = median(t);
            const double bytes = 4.0 * double(elems) * sizeof(T) + ds.table_bytes;
            const double floor_ms = bytes / dev.measured_bw * 1e3;
            std::printf("%-38s %-9s %-9s %-7s m%d %9lld   time %8.4f ms  floor %8.4f ms  %5.1f%% of floor rate\n",
                        sp.name.c_str(), kf.name, ran, fp16 ? "fp16" : "fp32", sp.mode, (long long)ds.n, ms,
                        floor_ms, 100.0 * floor_ms / ms);
            g_report.timings.push_back("{\"name\": \"" + json_escape(sp.name) + "\", \"kernel\": \"" + kf.name +
                                       "\", \"ran\": \"" + ran + "\", \"dtype\": \"" + dtype_name(fp16) +
                                       "\", \"mode\": " + std::to_string(sp.mode) + ", \"rows\": " +
                                       std::to_string(ds.n) + ", \"ms\": " + num(ms) + ", \"floor_ms\": " +
                                       num(floor_ms) + ", \"fraction_of_floor\": " + num(floor_ms / ms) +
                                       ", \"bytes\": " + num(bytes) + "}");
        }
    }
    CUDA_OK(cudaFree(d_in));
    CUDA_OK(cudaFree(d_outbuf));
    CUDA_OK(cudaFree(d_out2));
}

std::vector<Spec> make_specs(const Options& opt) {
    std::vector<Spec> v;
    auto add = [&](Spec s) { v.push_back(s); return &v.back(); };
    auto grid = [](const char* name, int64_t rows, int64_t cols, double fill, int H, int Dh, int S, int mode) {
        Spec s;
        s.name = name, s.rows = rows, s.cols = cols, s.fill = fill, s.H = H, s.Dh = Dh, s.S = S, s.mode = mode;
        return s;
    };
    // small and odd shapes
    add(grid("small H8 Dh64 S6 m1", 40, 40, 0.65, 8, 64, 6, 1))->graph = true;
    add(grid("small H8 Dh64 S6 m0", 40, 40, 0.65, 8, 64, 6, 0));
    add(grid("small H4 Dh32 S8 m0", 40, 40, 0.6, 4, 32, 8, 0));
    add(grid("small H3 Dh20 S4 m1", 40, 40, 0.6, 3, 20, 4, 1));
    add(grid("small H2 Dh96 S6 m1", 30, 30, 0.7, 2, 96, 6, 1));
    add(grid("small H1 Dh1 S2 m1", 30, 30, 0.8, 1, 1, 2, 1));
    add(grid("small H3 Dh7 S3 m1 (odd C)", 30, 30, 0.7, 3, 7, 3, 1));
    add(grid("small H5 Dh8 S1 m1", 20, 20, 0.7, 5, 8, 1, 1));
    add(grid("small H2 Dh128 S6 m1", 30, 30, 0.7, 2, 128, 6, 1));
    add(grid("small H2 Dh16 S12 m1 (rounds)", 48, 48, 0.7, 2, 16, 12, 1));
    add(grid("small H2 Dh32 S16 m1 (query chunks)", 48, 48, 0.7, 2, 32, 16, 1));
    add(grid("unaligned H8 Dh64 S6 m1", 30, 30, 0.65, 8, 64, 6, 1))->misalign = true;
    // limits: head_dim 256, window 55
    add(grid("max head_dim H2 Dh256 S6 m1", 24, 24, 0.7, 2, 256, 6, 1));
    add(grid("max window H1 Dh16 S55 m1", 120, 120, 0.7, 1, 16, 55, 1));
    add(grid("max both H1 Dh256 S55 m0", 60, 60, 0.7, 1, 256, 55, 0));
    // tiny N, no keys
    for (int mode = 0; mode < 2; ++mode)
        for (int n = 1; n <= 2; ++n) {
            Spec s = grid("", 0, 0, 0, 2, 16, 4, mode);
            s.name = "N=" + std::to_string(n) + " m" + std::to_string(mode);
            s.force_n = n;
            add(s);
        }
    add(grid("no keys: empty windows m1", 20, 20, 0.8, 2, 32, 4, 1))->empty_windows = true;
    add(grid("no keys: pos_a out of range m1", 20, 20, 0.8, 2, 32, 4, 1))->pos_out = true;
    add(grid("no keys: all bias -inf m1", 20, 20, 0.8, 2, 32, 4, 1))->ninf_bias = 1.0;
    // random and adversarial tables
    add(grid("random permuted H4 Dh64 S6 m1", 40, 40, 0.6, 4, 64, 6, 1))->permute = true;
    add(grid("random permuted H4 Dh64 S6 m0", 40, 40, 0.6, 4, 64, 6, 0))->permute = true;
    add(grid("random own B-window H2 Dh32 S6 m1", 40, 40, 0.8, 2, 32, 6, 1))->own_b = true;
    {
        Spec* s = add(grid("adversarial H3 Dh32 S6 m1", 40, 40, 0.7, 3, 32, 6, 1));
        s->corrupt = 0.08, s->graph = true;
        s = add(grid("adversarial H2 Dh16 S4 m0", 40, 40, 0.7, 2, 16, 4, 0));
        s->corrupt = 0.08;
        s = add(grid("adversarial H2 Dh64 S8 m1 -inf bias", 40, 40, 0.7, 2, 64, 8, 1));
        s->corrupt = 0.08, s->ninf_bias = 0.1;
        s = add(grid("adversarial H2 Dh24 S3 m1 permuted", 40, 40, 0.6, 2, 24, 3, 1));
        s->corrupt = 0.08, s->permute = true;
    }
    if (opt.sanitize) {  // memcheck runs kernels far slower: quarter-size grids (a window or more each)
        for (Spec& s : v)
            if (s.rows > 0) s.rows = std::max<int64_t>(s.S + 4, s.rows / 2), s.cols = std::max<int64_t>(s.S + 4, s.cols / 2);
        return v;
    }
    {
        Spec* s = add(grid("adversarial span H8 Dh64 S6 m1 20k", 175, 175, 0.65, 8, 64, 6, 1));
        s->corrupt = 0.02, s->permute = true, s->graph = true;
    }
    // SPAN config (8 x 64, S = 6) at 20k, 100k, 1M rows: timings
    for (int mode = 1; mode >= 0; --mode) {
        Spec s = grid("", 175, 175, 0.65, 8, 64, 6, mode);
        s.name = "span H8 Dh64 S6 m" + std::to_string(mode) + " 20k";
        s.time = true, s.graph = mode == 1;
        add(s);
        s = grid("", 392, 392, 0.65, 8, 64, 6, mode);
        s.name = "span H8 Dh64 S6 m" + std::to_string(mode) + " 100k";
        s.time = true;
        add(s);
        if (!opt.quick) {
            s = grid("", 1240, 1240, 0.65, 8, 64, 6, mode);
            s.name = "span H8 Dh64 S6 m" + std::to_string(mode) + " 1M";
            s.time = true, s.check = kSubset;
            add(s);
        }
    }
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    Options opt;
    for (int a = 1; a < argc; ++a) {
        if (!std::strcmp(argv[a], "--json") && a + 1 < argc) g_report.json_path = argv[++a];
        else if (!std::strcmp(argv[a], "--quick")) opt.quick = true;
        else if (!std::strcmp(argv[a], "--sanitize")) opt.sanitize = true;
        else {
            std::fprintf(stderr, "usage: %s [--json PATH] [--quick] [--sanitize]\n", argv[0]);
            return 2;
        }
    }
    if (opt.quick) opt.iters = 10;
    const auto t_start = std::chrono::steady_clock::now();
    const Device dev = query_device(!opt.sanitize, size_t(opt.quick ? 256 : 1024) << 20);
    std::printf("device: %s (sm_%d%d), %d SMs, %.1f GiB; memory bandwidth: nominal %.0f GB/s, measured "
                "device-to-device copy %.0f GB/s\n",
                dev.prop.name, dev.prop.major, dev.prop.minor, dev.prop.multiProcessorCount,
                double(dev.prop.totalGlobalMem) / double(1ull << 30), dev.nominal_bw / 1e9, dev.measured_bw / 1e9);
    std::printf("SPAN_SWA_CUDA_KERNEL selection (swa_forward_cuda): %s; CPU kernel: %s\n",
                span_deploy::swa_cuda_kernel_name(), span_deploy::swa_cpu_kernel_name());
    g_report.device_json = "{\"name\": \"" + json_escape(dev.prop.name) + "\", \"sm\": " +
                           std::to_string(dev.prop.major * 10 + dev.prop.minor) + ", \"sm_count\": " +
                           std::to_string(dev.prop.multiProcessorCount) + ", \"memory_gib\": " +
                           num(double(dev.prop.totalGlobalMem) / double(1ull << 30)) +
                           ", \"bandwidth_nominal_GBps\": " + num(dev.nominal_bw / 1e9) +
                           ", \"bandwidth_measured_GBps\": " + num(dev.measured_bw / 1e9) +
                           ", \"bandwidth_method\": \"cudaMemcpyAsync device-to-device, 2 x bytes / median time\"}";

    std::printf("\n%-38s %-9s %-9s %-7s %-2s %9s %9s %10s %10s %s\n", "case", "kernel", "ran", "dtype", "md", "rows",
                "compared", "max_abs", "tol", "result");
    cudaStream_t stream;
    CUDA_OK(cudaStreamCreate(&stream));
    Rng rng{20240601};
    uint64_t seed = 1;
    for (const Spec& sp : make_specs(opt)) {
        Dataset ds;
        ds.sp = sp;
        build(ds, rng);
        run_dtype<float>(ds, dev, opt, stream, seed++);
        run_dtype<SwaHalf>(ds, dev, opt, stream, seed++);
        release(ds);
    }
    CUDA_OK(cudaStreamDestroy(stream));
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    const bool ok = !g_report.any_fail;
    std::printf("\n%zu comparisons, %zu graph replays, %zu timings in %.1f s: %s\n", g_report.cases.size(),
                g_report.graphs.size(), g_report.timings.size(), secs, ok ? "ALL PASS" : "FAILURES");
    g_report.write("");
    return ok ? 0 : 1;
}
