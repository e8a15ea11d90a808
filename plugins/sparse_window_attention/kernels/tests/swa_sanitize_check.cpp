// Sanitizer check of the host-side kernel code: built by CMake as build/bin/swa_sanitize_check with
// -fsanitize=address,undefined -fno-sanitize-recover=all, the kernel sources (swa_cpu.cpp,
// swa_params.cpp, swa_shapes.cpp) compiled into this executable with the same flags. Run by
// tests/op/test_sanitizers.py.
//
// It drives swa_forward_cpu (1 and several threads), swa_forward_cpu_rows (sub-ranges),
// swa_check_tables_host, swa_check_shapes and swa_check_params with
//   (a) seeded random cases: valid tables and tables with out-of-range / negative entries (the
//       kernel treats them as empty slots; swa_check_tables_host must report them), float32 and
//       float16, compared with a naive double-precision reference of the op contract
//       (../../README.md, Semantics) written here independently of the kernel;
//   (b) edge cases: N = 0 and 1, empty windows, the self-loop rule, -inf bias entries, every
//       float16 bit pattern through the kernel's conversions;
//   (c) a wrong shape of every input, wrong attributes.
// Every buffer is allocated with its exact size, so ASan sees any read or write past a table or a
// tensor; mode-0 cases pass null win_b / pos_b (they must not be read).
// Prints "swa_sanitize_check: N cases OK" and exits 0 on success; any failed check prints a
// message and exits 1; a sanitizer report aborts the process (non-zero).
#include "swa_kernels.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>
#include "swa_test_rng.h"

using namespace span_deploy;

namespace {

[[noreturn]] void fail(const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
void fail(const char* fmt, ...) {
    std::fprintf(stderr, "swa_sanitize_check: FAILED: ");
    va_list ap;
    va_start(ap, fmt);
    std::vfprintf(stderr, fmt, ap);
    va_end(ap);
    std::fprintf(stderr, "\n");
    std::exit(1);
}

std::string g_case;  // description of the running case, for failure messages

using span_deploy_test::Rng;  // swa_test_rng.h

// ---------------------------------------------------------------- float16 (independent of the kernel)
float half_to_float(uint16_t b) {
    const int e = (b >> 10) & 31, m = b & 1023;
    float v;
    if (e == 31)
        v = m ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
    else if (e == 0)
        v = std::ldexp(float(m), -24);
    else
        v = std::ldexp(float(m + 1024), e - 25);
    return (b & 0x8000) ? -v : v;
}

// Bits of a value that float16 represents exactly (checked).
uint16_t half_bits_exact(float x) {
    const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
    const float a = std::fabs(x);
    uint16_t bits = sign;
    if (a != 0.f) {
        int e = 0;
        std::frexp(a, &e);  // a in [2^(e-1), 2^e)
        const int biased = e - 1 + 15;
        if (biased >= 1)
            bits = uint16_t(sign | (biased << 10) | int(std::ldexp(a, -(e - 1)) * 1024.f - 1024.f));
        else
            bits = uint16_t(sign | int(std::ldexp(a, 24)));
    }
    if (half_to_float(bits) != x) fail("test bug: %g is not exactly representable in float16", double(x));
    return bits;
}

// ---------------------------------------------------------------- a case and its reference
struct Case {
    int64_t n = 0, wa = 0, wb = 0;
    int32_t H = 1, Dh = 1, S = 2, mode = 0;
    float scale = 1.f;
    std::vector<int32_t> win_a, pos_a, win_b, pos_b;
    std::vector<float> bias;
    std::vector<float> q, k, v;  // the values the kernel sees (float16 inputs: already exact halves)
};

SwaParams params(const Case& c) {
    SwaParams p;
    p.n = c.n;
    p.num_win_a = c.wa;
    p.num_win_b = c.mode == 1 ? c.wb : 0;
    p.num_heads = c.H;
    p.head_dim = c.Dh;
    p.window = c.S;
    p.mode = c.mode;
    p.scale = c.scale;
    p.win_a = c.win_a.data();
    p.pos_a = c.pos_a.data();
    // mode 0: win_b / pos_b are neither read nor checked; null makes a read crash (ASan SEGV).
    p.win_b = c.mode == 1 ? c.win_b.data() : nullptr;
    p.pos_b = c.mode == 1 ? c.pos_b.data() : nullptr;
    p.bias = c.bias.data();
    return p;
}

// The contract, brute force, in double. Out-of-range table entries are empty slots (as the kernel
// documents): a row whose pos_a is outside table A has no key at all, a pos_b outside table B adds
// no B key, a window entry outside [0, N) is skipped, and so is a B key whose own pos_a is outside
// table A (its A-window is unknown). A key whose score is -inf gets weight 0 (as the PyTorch
// reference, export/span_export/model/attention.py); no key with a finite score: zeros.
// `empty` marks the (row, head) pairs without any candidate key (the kernel must give exact +0).
void reference(const Case& c, std::vector<double>& out, std::vector<char>& empty) {
    const int64_t n = c.n, S2 = int64_t(c.S) * c.S, C = int64_t(c.H) * c.Dh, B = 2 * c.S - 1;
    out.assign(size_t(n * C), 0.0);
    empty.assign(size_t(n * c.H), 1);
    struct Cand {
        int64_t j, t, s;
    };
    std::vector<Cand> cands;
    std::vector<double> score;
    for (int64_t i = 0; i < n; ++i) {
        cands.clear();
        const int64_t pa = c.pos_a[size_t(i)];
        if (pa < 0 || pa >= c.wa * S2) continue;
        for (int64_t t = 0; t < S2; ++t) {
            const int64_t j = c.win_a[size_t((pa / S2) * S2 + t)];
            if (j < 0 || j >= n) continue;
            if (j == i && !(i >= 1 && i <= n - 2)) continue;  // self slot: inner rows only
            cands.push_back({j, t, pa % S2});
        }
        if (c.mode == 1) {
            const int64_t pb = c.pos_b[size_t(i)];
            if (pb >= 0 && pb < c.wb * S2) {
                for (int64_t t = 0; t < S2; ++t) {
                    const int64_t j = c.win_b[size_t((pb / S2) * S2 + t)];
                    if (j < 0 || j >= n) continue;
                    const int64_t pj = c.pos_a[size_t(j)];
                    if (pj < 0 || pj >= c.wa * S2 || pj / S2 == pa / S2) continue;  // already seen in A
                    cands.push_back({j, t, pb % S2});
                }
            }
        }
        for (int32_t h = 0; h < c.H; ++h) {
            if (cands.empty()) continue;
            empty[size_t(i * c.H + h)] = 0;
            const int64_t col = int64_t(h) * c.Dh;
            score.assign(cands.size(), 0.0);
            double mx = -std::numeric_limits<double>::infinity();
            for (size_t u = 0; u < cands.size(); ++u) {
                const Cand& cd = cands[u];
                double dot = 0;
                for (int32_t d = 0; d < c.Dh; ++d)
                    dot += double(c.q[size_t(i * C + col + d)]) * double(c.k[size_t(cd.j * C + col + d)]);
                const int64_t r = cd.t / c.S - cd.s / c.S + c.S - 1, cc = cd.t % c.S - cd.s % c.S + c.S - 1;
                if (r < 0 || r >= B || cc < 0 || cc >= B) fail("test bug: bias index out of range");
                score[u] = double(c.scale) * dot + double(c.bias[size_t(h * B * B + r * B + cc)]);
                mx = std::max(mx, score[u]);
            }
            if (std::isinf(mx) && mx < 0) continue;  // every score -inf: zeros
            double sum = 0;
            for (double& s : score) sum += (s = std::exp(s - mx));
            for (size_t u = 0; u < cands.size(); ++u)
                for (int32_t d = 0; d < c.Dh; ++d)
                    out[size_t(i * C + col + d)] += score[u] / sum * double(c.v[size_t(cands[u].j * C + col + d)]);
        }
    }
}

// ---------------------------------------------------------------- running the kernel
template <typename T>
struct Tensors {
    std::vector<T> q, k, v;
};

void make_tensors(const Case& c, Tensors<float>& t) { t = {c.q, c.k, c.v}; }

void make_tensors(const Case& c, Tensors<SwaHalf>& t) {
    for (auto [src, dst] : {std::make_pair(&c.q, &t.q), std::make_pair(&c.k, &t.k), std::make_pair(&c.v, &t.v)}) {
        dst->resize(src->size());
        for (size_t u = 0; u < src->size(); ++u) (*dst)[u].bits = half_bits_exact((*src)[u]);
    }
}

float value_of(float x) { return x; }
float value_of(SwaHalf x) { return half_to_float(x.bits); }
uint32_t bits_of(float x) {
    uint32_t b;
    std::memcpy(&b, &x, sizeof b);
    return b;
}
uint32_t bits_of(SwaHalf x) { return x.bits; }
constexpr uint32_t kSentinelF32 = 0x7fc0dead;  // a NaN nobody writes
constexpr uint16_t kSentinelF16 = 0x7e5a;
void set_sentinel(float& x) {
    const uint32_t b = kSentinelF32;
    std::memcpy(&x, &b, sizeof x);
}
void set_sentinel(SwaHalf& x) { x.bits = kSentinelF16; }
bool is_sentinel(float x) { return bits_of(x) == kSentinelF32; }
bool is_sentinel(SwaHalf x) { return x.bits == kSentinelF16; }

template <typename T>
std::vector<T> sentinel_output(size_t size) {
    std::vector<T> out(size);
    for (T& x : out) set_sentinel(x);
    return out;
}

// Compares out (kernel) with ref; fp32: |d| <= 1e-4 (1 + |ref|); fp16: |d| <= 5e-3 |ref| + 1e-4.
template <typename T>
void compare(const Case& c, const std::vector<T>& out, const std::vector<double>& ref, const std::vector<char>& empty,
             const char* what) {
    const bool half = sizeof(T) == 2;
    const int64_t C = int64_t(c.H) * c.Dh;
    for (int64_t i = 0; i < c.n; ++i)
        for (int64_t col = 0; col < C; ++col) {
            const size_t u = size_t(i * C + col);
            const float o = value_of(out[u]);
            const double r = ref[u];
            if (empty[size_t(i * c.H + col / c.Dh)]) {
                if (bits_of(out[u]) != 0)
                    fail("%s: %s: row %" PRId64 " col %" PRId64 " has no candidate key but out = %g (bits 0x%x), "
                         "expected exact +0", g_case.c_str(), what, i, col, double(o), unsigned(bits_of(out[u])));
                continue;
            }
            const double tol = half ? 5e-3 * std::fabs(r) + 1e-4 : 1e-4 * (1.0 + std::fabs(r));
            if (!std::isfinite(o) || std::fabs(double(o) - r) > tol)
                fail("%s: %s: row %" PRId64 " col %" PRId64 ": out = %.9g, reference %.9g (tol %.3g)", g_case.c_str(),
                     what, i, col, double(o), r, tol);
        }
}

template <typename T>
void expect_identical(const std::vector<T>& a, const std::vector<T>& b, const char* what) {
    for (size_t u = 0; u < a.size(); ++u)
        if (bits_of(a[u]) != bits_of(b[u]))
            fail("%s: %s differs from the 1-thread result at element %zu (0x%x vs 0x%x)", g_case.c_str(), what, u,
                 unsigned(bits_of(b[u])), unsigned(bits_of(a[u])));
}

// swa_forward_cpu with 1, 2, 3 and hardware-concurrency threads, swa_forward_cpu_rows on random
// sub-ranges (rows outside the range must stay untouched); all bit-identical, and equal to the
// reference within tolerance.
template <typename T>
void run_kernel_variants(Rng& rng, const Case& c, const Tensors<T>& t, const std::vector<double>& ref,
                         const std::vector<char>& empty) {
    const SwaParams p = params(c);
    const size_t size = size_t(c.n * c.H * c.Dh);
    const size_t C = size_t(c.H) * size_t(c.Dh);
    std::vector<T> out1 = sentinel_output<T>(size);
    swa_forward_cpu(p, t.q.data(), t.k.data(), t.v.data(), out1.data(), 1);
    compare(c, out1, ref, empty, "swa_forward_cpu (1 thread)");
    for (int threads : {2, 3, 0}) {
        std::vector<T> out = sentinel_output<T>(size);
        swa_forward_cpu(p, t.q.data(), t.k.data(), t.v.data(), out.data(), threads);
        expect_identical(out, out1, threads ? "swa_forward_cpu (2/3 threads)" : "swa_forward_cpu (0 = hw threads)");
    }
    // Rows in random pieces, in reverse order, into one buffer.
    std::vector<int64_t> cuts = {0, c.n};
    for (int u = int(rng.uniform(0, 4)); u > 0; --u) cuts.push_back(rng.uniform(0, c.n));
    std::sort(cuts.begin(), cuts.end());
    std::vector<T> pieces = sentinel_output<T>(size);
    for (size_t u = cuts.size() - 1; u > 0; --u) {
        const int64_t b = cuts[u - 1], e = cuts[u];
        std::vector<T> alone = sentinel_output<T>(size);
        swa_forward_cpu_rows(p, t.q.data(), t.k.data(), t.v.data(), alone.data(), b, e);
        for (size_t x = 0; x < size; ++x) {
            const bool inside = x >= size_t(b) * C && x < size_t(e) * C;
            if (inside == is_sentinel(alone[x]))
                fail("%s: swa_forward_cpu_rows [%" PRId64 ", %" PRId64 ") %s element %zu", g_case.c_str(), b, e,
                     inside ? "did not write" : "wrote outside its rows at", x);
        }
        swa_forward_cpu_rows(p, t.q.data(), t.k.data(), t.v.data(), pieces.data(), b, e);
    }
    expect_identical(pieces, out1, "swa_forward_cpu_rows (pieces)");
}

// ---------------------------------------------------------------- tables
// n rows scattered over num_win windows at random distinct slots (win[pos[i]] == i, -1 elsewhere).
void random_tables(Rng& rng, int64_t n, int64_t S2, int64_t num_win, std::vector<int32_t>& win,
                   std::vector<int32_t>& pos) {
    std::vector<int32_t> slots(size_t(num_win * S2));
    for (size_t u = 0; u < slots.size(); ++u) slots[u] = int32_t(u);
    for (size_t u = 0; u < size_t(n); ++u) std::swap(slots[u], slots[u + size_t(rng.uniform(0, int64_t(slots.size() - u) - 1))]);
    win.assign(slots.size(), -1);
    pos.assign(size_t(n), 0);
    for (int64_t i = 0; i < n; ++i) {
        pos[size_t(i)] = slots[size_t(i)];
        win[size_t(slots[size_t(i)])] = int32_t(i);
    }
}

// Puts 1..3 invalid entries into a table; returns whether it did.
bool corrupt(Rng& rng, int64_t n, int64_t S2, int64_t num_win, std::vector<int32_t>& win, std::vector<int32_t>& pos) {
    const int32_t imax = std::numeric_limits<int32_t>::max(), imin = std::numeric_limits<int32_t>::min();
    bool any = false;
    for (int u = int(rng.uniform(1, 3)); u > 0; --u) {
        if (n > 0 && rng.chance(0.5)) {
            const int32_t bad[] = {-1, int32_t(-rng.uniform(2, 1000)), int32_t(num_win * S2),
                                   int32_t(num_win * S2 + rng.uniform(0, 1000)), imax, imin};
            pos[size_t(rng.uniform(0, n - 1))] = bad[rng.uniform(0, 5)];
            any = true;
        } else if (!win.empty()) {
            const int32_t bad[] = {-2, int32_t(-rng.uniform(3, 1000)), int32_t(n), int32_t(n + rng.uniform(0, 1000)),
                                   imax, imin};
            win[size_t(rng.uniform(0, int64_t(win.size()) - 1))] = bad[rng.uniform(0, 5)];
            any = true;
        }
    }
    return any;
}

void fill_qkv(Rng& rng, Case& c, bool half) {
    const size_t size = size_t(c.n * c.H * c.Dh);
    for (auto* t : {&c.q, &c.k, &c.v}) {
        t->resize(size);
        // float16: multiples of 2^-10 in [-2, 2] (exact halves); float32: any value in [-2, 2].
        for (float& x : *t) x = half ? float(rng.uniform(-2048, 2048)) / 1024.f : rng.real(-2.f, 2.f);
    }
}

void fill_bias(Rng& rng, Case& c, float amplitude) {
    const int64_t B = 2 * c.S - 1;
    c.bias.resize(size_t(c.H * B * B));
    for (float& x : c.bias) x = rng.real(-amplitude, amplitude);
}

template <typename T>
void run_case(Rng& rng, const Case& c) {
    std::vector<double> ref;
    std::vector<char> empty;
    reference(c, ref, empty);
    Tensors<T> t;
    make_tensors(c, t);
    run_kernel_variants(rng, c, t, ref, empty);
}

void run_case_any(Rng& rng, const Case& c, bool half) {
    if (half)
        run_case<SwaHalf>(rng, c);
    else
        run_case<float>(rng, c);
}

void describe(const Case& c, bool half, const char* kind, int index) {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "%s case %d (N=%" PRId64 " Wa=%" PRId64 " Wb=%" PRId64 " H=%d Dh=%d S=%d mode=%d scale=%g %s)", kind,
                  index, c.n, c.wa, c.wb, c.H, c.Dh, c.S, c.mode, double(c.scale), half ? "float16" : "float32");
    g_case = buf;
}

// ---------------------------------------------------------------- (a) random cases
int random_cases(int count) {
    Rng rng{20240601};
    for (int index = 0; index < count; ++index) {
        Case c;
        c.n = rng.uniform(1, 400);
        c.H = int32_t(rng.uniform(1, 4));
        c.Dh = int32_t(rng.uniform(1, 64));
        c.S = int32_t(rng.uniform(2, 8));
        c.mode = int32_t(rng.uniform(0, 1));
        const int64_t S2 = int64_t(c.S) * c.S, min_win = (c.n + S2 - 1) / S2;
        c.wa = min_win + rng.uniform(0, min_win + 2);  // 0 .. ~50% of the slots empty
        c.wb = min_win + rng.uniform(0, min_win + 2);
        const int scale_kind = int(rng.uniform(0, 3));
        c.scale = scale_kind == 0 ? 1.f / std::sqrt(float(c.Dh)) : scale_kind == 1 ? rng.real(0.f, 4.f)
                  : scale_kind == 2 ? -rng.real(0.f, 1.f) : 0.f;
        const bool half = index % 2 == 1;
        random_tables(rng, c.n, S2, c.wa, c.win_a, c.pos_a);
        random_tables(rng, c.n, S2, c.wb, c.win_b, c.pos_b);
        fill_qkv(rng, c, half);
        fill_bias(rng, c, rng.chance(0.2) ? 20.f : 2.f);
        describe(c, half, "random", index);

        const std::string valid = swa_check_tables_host(params(c));
        if (!valid.empty()) fail("%s: swa_check_tables_host rejects valid tables: %s", g_case.c_str(), valid.c_str());
        if (!swa_check_params(params(c)).empty()) fail("%s: swa_check_params rejects it", g_case.c_str());

        // A third of the cases: invalid entries in A and/or B.
        if (index % 3 == 2) {
            const bool bad_a = rng.chance(0.6) && corrupt(rng, c.n, S2, c.wa, c.win_a, c.pos_a);
            const bool bad_b = (!bad_a || rng.chance(0.5)) && corrupt(rng, c.n, S2, c.wb, c.win_b, c.pos_b);
            g_case += bad_a && bad_b ? " [bad A and B tables]" : bad_a ? " [bad A table]" : " [bad B table]";
            const std::string err = swa_check_tables_host(params(c));
            const bool expect_error = bad_a || (bad_b && c.mode == 1);  // B is not checked in mode 0
            if (err.empty() == expect_error)
                fail("%s: swa_check_tables_host %s", g_case.c_str(),
                     expect_error ? "accepts invalid tables" : ("rejects valid ones: " + err).c_str());
        }
        run_case_any(rng, c, half);
    }
    return count;
}

// ---------------------------------------------------------------- (b) edge cases
// One window table from explicit rows (-1 = empty); pos derived (each row in one slot).
void explicit_tables(Case& c, const std::vector<std::vector<int32_t>>& windows) {
    const int64_t S2 = int64_t(c.S) * c.S;
    c.wa = c.wb = int64_t(windows.size());
    c.win_a.assign(size_t(c.wa * S2), -1);
    c.pos_a.assign(size_t(c.n), -1);
    for (size_t w = 0; w < windows.size(); ++w)
        for (size_t t = 0; t < windows[w].size(); ++t)
            if (windows[w][t] >= 0) {
                c.win_a[w * size_t(S2) + t] = windows[w][t];
                c.pos_a[size_t(windows[w][t])] = int32_t(w * size_t(S2) + t);
            }
    c.win_b = c.win_a;
    c.pos_b = c.pos_a;
}

int edge_cases() {
    Rng rng{7};
    int count = 0;
    auto both = [&](Case c, const char* kind) {
        for (int mode : {0, 1})
            for (bool half : {false, true}) {
                c.mode = mode;
                fill_qkv(rng, c, half);
                describe(c, half, kind, count++);
                run_case_any(rng, c, half);
            }
    };

    // N = 0: nothing to do, nothing touched.
    {
        Case c;
        c.n = 0;
        c.H = 2, c.Dh = 3, c.S = 2;
        fill_bias(rng, c, 1.f);
        both(c, "N=0");
    }
    // N = 1: the only row is row 0 = row N-1, never its own key: exact zeros.
    {
        Case c;
        c.n = 1;
        c.H = 2, c.Dh = 4, c.S = 2;
        explicit_tables(c, {{-1, -1, 0, -1}});
        fill_bias(rng, c, 1.f);
        both(c, "N=1");
    }
    // Empty windows, lone boundary rows (zeros), a lone inner row (itself only), N = 2 and 3.
    {
        Case c;
        c.n = 6;
        c.H = 3, c.Dh = 5, c.S = 3;
        explicit_tables(c, {{-1, -1, -1, -1, -1, -1, -1, -1, -1},
                            {0, -1, -1, -1, -1, -1, -1, -1, -1},  // row 0 alone: zeros
                            {-1, -1, -1, -1, 2, -1, -1, -1, -1},  // row 2 alone, inner: itself
                            {-1, -1, -1, -1, -1, -1, -1, -1, -1},
                            {1, 3, -1, -1, -1, -1, -1, 4, -1},
                            {-1, -1, -1, -1, -1, -1, -1, -1, 5}});  // row 5 = N-1 alone: zeros
        fill_bias(rng, c, 1.f);
        both(c, "empty windows");
        // B: everyone in one window (mode 1 then adds keys from other A windows).
        c.wb = 1;
        c.win_b = {5, 4, 3, 2, 1, 0, -1, -1, -1};
        c.pos_b = {5, 4, 3, 2, 1, 0};
        both(c, "empty windows, one B window");
    }
    for (int64_t n : {2, 3}) {
        Case c;
        c.n = n;
        c.H = 1, c.Dh = 2, c.S = 2;
        explicit_tables(c, n == 2 ? std::vector<std::vector<int32_t>>{{0, 1, -1, -1}}
                                  : std::vector<std::vector<int32_t>>{{0, -1, 2, -1}, {-1, -1, -1, 1}});
        fill_bias(rng, c, 1.f);
        both(c, n == 2 ? "N=2" : "N=3");
    }
    // -inf bias entries (the contract has no mask input, but a -inf bias must act as a mask, as in
    // the PyTorch reference: weight 0, never NaN). q = k = 0 makes the scores pure bias. Row 1
    // (cell (0,1)) sees rows 0, 1, 2, 3 at cells (0,0), (0,1), (1,0), (1,1).
    {
        Case c;
        c.n = 5;
        c.H = 2, c.Dh = 3, c.S = 2;
        explicit_tables(c, {{0, 1, 2, 3}, {4, -1, -1, -1}});
        const int64_t B = 3;
        for (int variant = 0; variant < 4; ++variant) {
            fill_bias(rng, c, 1.f);
            const float ninf = -std::numeric_limits<float>::infinity();
            // head 0: the first candidate of row 1 (row 0 at Δ = (0, -1)) is masked (variant 0),
            // or the last one (variant 1), or all but one (variant 2), or every entry (variant 3).
            if (variant == 0) c.bias[size_t(0 * B * B + 1 * B + 0)] = ninf;
            if (variant == 1) c.bias[size_t(0 * B * B + 2 * B + 1)] = ninf;
            if (variant >= 2)
                for (int64_t u = 0; u < B * B; ++u) c.bias[size_t(u)] = ninf;
            if (variant == 2) c.bias[size_t(0 * B * B + 1 * B + 1)] = 0.5f;  // the self slot stays
            if (variant == 3)
                for (int64_t u = B * B; u < 2 * B * B; ++u) c.bias[size_t(u)] = ninf;
            for (int mode : {0, 1})
                for (bool half : {false, true}) {
                    c.mode = mode;
                    fill_qkv(rng, c, half);
                    for (float& x : c.q) x = 0.f;
                    describe(c, half, "-inf bias", count++);
                    run_case_any(rng, c, half);
                }
        }
    }
    // Every float16 bit pattern through the kernel's conversions: inner rows alone in their
    // window attend to themselves with weight exactly 1, so out = v bit for bit (-0 -> +0 as
    // 0 + w * -0 = +0; NaN stays NaN). Also a large-N multi-thread run.
    {
        const int64_t n = 65536 + 2;
        Case c;
        c.n = n;
        c.H = 1, c.Dh = 1, c.S = 1;
        c.wa = c.wb = n;
        c.win_a.resize(size_t(n));
        c.pos_a.resize(size_t(n));
        for (int64_t i = 0; i < n; ++i) c.win_a[size_t(i)] = c.pos_a[size_t(i)] = int32_t(i);
        c.win_b = c.win_a;
        c.pos_b = c.pos_a;
        c.bias = {0.f};
        Tensors<SwaHalf> t;
        t.q.assign(size_t(n), SwaHalf{0});
        t.k.assign(size_t(n), SwaHalf{0});
        t.v.resize(size_t(n));
        for (int64_t i = 0; i < n; ++i) t.v[size_t(i)].bits = uint16_t(i - 1);
        for (int mode : {0, 1}) {
            c.mode = mode;
            describe(c, true, "all float16 values", count++);
            std::vector<SwaHalf> out = sentinel_output<SwaHalf>(size_t(n));
            swa_forward_cpu(params(c), t.q.data(), t.k.data(), t.v.data(), out.data(), 0);
            for (int64_t i = 0; i < n; ++i) {
                const uint16_t in = t.v[size_t(i)].bits, got = out[size_t(i)].bits;
                const float fin = half_to_float(in), fgot = half_to_float(got);
                const bool ok = i == 0 || i == n - 1 ? got == 0
                                : std::isnan(fin)    ? std::isnan(fgot)
                                : in == 0x8000       ? got == 0
                                                     : got == in;
                if (!ok) fail("%s: row %" PRId64 ": v = 0x%04x, out = 0x%04x", g_case.c_str(), i, in, got);
            }
        }
    }
    return count;
}

// ---------------------------------------------------------------- (c) shapes and attributes
int shape_cases() {
    int count = 0;
    for (int mode : {0, 1}) {
        SwaParams attrs;
        attrs.num_heads = 3, attrs.head_dim = 5, attrs.window = 4, attrs.mode = mode;
        const int64_t N = 37, C = 15, S2 = 16, B = 7, Wa = 9, Wb = 11;
        const std::vector<std::vector<int64_t>> good = {{N, C}, {N, C}, {N, C}, {Wa, S2}, {N}, {Wb, S2}, {N}, {3, B, B}};
        auto shapes_of = [](const std::vector<std::vector<int64_t>>& dims) {
            std::vector<SwaShape> s;
            for (const auto& d : dims) {
                // Exactly sized: swa_shape must not read past rank (or past kSwaMaxRank).
                std::vector<int64_t> heap(d);
                s.push_back(swa_shape(heap.data(), int64_t(heap.size())));
            }
            return s;
        };
        auto check = [&](const std::vector<std::vector<int64_t>>& dims, bool expect_ok, const std::string& what,
                         int32_t input) {
            ++count;
            SwaParams p = attrs;
            const std::vector<SwaShape> s = shapes_of(dims);
            const std::string err = swa_check_shapes(p, s.data(), int32_t(s.size()));
            if (err.empty() != expect_ok)
                fail("swa_check_shapes mode %d, %s: %s", mode, what.c_str(),
                     expect_ok ? ("rejected: " + err).c_str() : "accepted");
            if (!expect_ok && input >= 0 &&
                err.find(std::string("'") + swa_input_name(input) + "'") == std::string::npos)
                fail("swa_check_shapes mode %d, %s: the message does not name the input: %s", mode, what.c_str(),
                     err.c_str());
            bool known = true;  // unknown dims leave -1 in n / num_win_a / num_win_b
            for (const auto& d : dims) known = known && std::all_of(d.begin(), d.end(), [](int64_t x) { return x >= 0; });
            if (expect_ok && known && (p.n != N || p.num_win_a != Wa || p.num_win_b != (mode == 1 ? Wb : 0)))
                fail("swa_check_shapes mode %d, %s: n / num_win_a / num_win_b not filled", mode, what.c_str());
        };
        check(good, true, "correct shapes", -1);
        for (int32_t input = 0; input < kSwaNumInputs; ++input) {
            const bool ignored = mode == 0 && (input == kSwaWinB || input == kSwaPosB);
            const std::string name = swa_input_name(input);
            // (shapes, the input the message must name): a wrong row count of q binds N, so
            // then k is the first input that disagrees.
            std::vector<std::pair<std::vector<std::vector<int64_t>>, int32_t>> wrong;
            for (size_t d = 0; d < good[size_t(input)].size(); ++d) {  // each dim off by one
                if ((input == kSwaWinA || input == kSwaWinB) && d == 0) continue;  // Wa / Wb: any
                for (int64_t delta : {-1, 1}) {
                    auto dims = good;
                    dims[size_t(input)][d] += delta;
                    wrong.emplace_back(dims, input == kSwaQ && d == 0 ? int32_t(kSwaK) : input);
                }
            }
            auto more = good;  // one dim too many
            more[size_t(input)].push_back(1);
            wrong.emplace_back(more, input);
            auto fewer = good;  // one dim too few (rank 0 for the 1-d ones)
            fewer[size_t(input)].pop_back();
            wrong.emplace_back(fewer, input);
            auto huge = good;  // rank 12 > kSwaMaxRank
            huge[size_t(input)].assign(12, 2);
            wrong.emplace_back(huge, input);
            for (size_t u = 0; u < wrong.size(); ++u)
                check(wrong[u].first, ignored, name + " variant " + std::to_string(u), wrong[u].second);
            // Unknown dims (TensorRT build time) match anything.
            auto unknown = good;
            for (auto& d : unknown[size_t(input)]) d = -1;
            check(unknown, true, name + " with unknown dims", -1);
        }
        // Wrong number of inputs; bad attributes.
        {
            ++count;
            SwaParams p = attrs;
            const std::vector<SwaShape> s = shapes_of(good);
            if (swa_check_shapes(p, s.data(), 7).empty()) fail("swa_check_shapes accepts 7 inputs");
        }
        for (int bad = 0; bad < 5; ++bad) {
            ++count;
            SwaParams p = attrs;
            if (bad == 0) p.num_heads = 0;
            if (bad == 1) p.head_dim = -1;
            if (bad == 2) p.window = 0;
            if (bad == 3) p.mode = 2;
            if (bad == 4) p.mode = -1;
            const std::vector<SwaShape> s = shapes_of(good);
            if (swa_check_shapes(p, s.data(), kSwaNumInputs).empty())
                fail("swa_check_shapes accepts bad attributes (variant %d)", bad);
            if (swa_check_params(p).empty()) fail("swa_check_params accepts bad attributes (variant %d)", bad);
        }
    }
    {
        ++count;
        SwaParams p;
        p.num_heads = 1, p.head_dim = 1, p.window = 1;
        p.n = int64_t(std::numeric_limits<int32_t>::max()) + 1;
        if (swa_check_params(p).empty()) fail("swa_check_params accepts N > INT32_MAX");
        p.n = 5, p.num_win_a = -1;
        if (swa_check_params(p).empty()) fail("swa_check_params accepts a negative table size");
    }
    if (std::string(swa_input_name(-1)) != "?" || std::string(swa_input_name(kSwaNumInputs)) != "?")
        fail("swa_input_name outside [0, 8) is not \"?\"");
    return count;
}

}  // namespace

int main(int argc, char** argv) {
    int random_count = 300;
    if (argc > 1) random_count = std::max(0, std::atoi(argv[1]));
    const auto t0 = std::chrono::steady_clock::now();
    int total = random_cases(random_count);
    total += edge_cases();
    total += shape_cases();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("swa_sanitize_check: %d cases OK (%.1f s)\n", total, secs);
    return 0;
}
