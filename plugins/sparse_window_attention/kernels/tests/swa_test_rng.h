// Deterministic random numbers for the kernel test harnesses (swa_sanitize_check, swa_gpu_check,
// swa_window_tiling_check). splitmix64: the same sequence with every compiler and standard library
// (std:: distributions are implementation-defined), so a failing case can be replayed by its seed.
#pragma once

#include <cstdint>

namespace span_deploy_test {

struct Rng {
    uint64_t state;
    uint64_t next() {
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    int64_t uniform(int64_t lo, int64_t hi) { return lo + int64_t(next() % uint64_t(hi - lo + 1)); }  // [lo, hi]
    double unit() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }                    // [0, 1)
    float real(float lo, float hi) { return float(lo + (hi - lo) * unit()); }
    bool chance(double p) { return unit() < p; }
};

}  // namespace span_deploy_test
