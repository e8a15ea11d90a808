// The input-shape check shared by the front ends (ONNX Runtime op, TensorRT plugin); the shapes
// are those of ../op.yaml (inputs, dims). Plain C++: see swa_kernels.h.
#include "swa_kernels.h"

#include <algorithm>
#include <cstddef>
#include <string>

namespace span_deploy {

namespace {

constexpr const char* kInputNames[kSwaNumInputs] = {"q", "k", "v", "win_a", "pos_a", "win_b", "pos_b", "bias"};

// One expected dim: its symbol in op.yaml and its value (< 0: any value).
struct Want {
    const char* sym;
    int64_t value;
};

std::string value_str(int64_t v) { return v < 0 ? std::string("?") : std::to_string(v); }

std::string shape_str(const SwaShape& s) {
    std::string out = "(";
    const int32_t kept = std::min(s.rank, kSwaMaxRank);
    for (int32_t i = 0; i < kept; ++i) out += (i ? ", " : "") + value_str(s.dims[i]);
    if (s.rank > kept) out += ", ...";
    return out + (s.rank == 1 ? ",)" : ")");
}

// Empty when `got` has the rank of `want` and every dim matches (unknown on either side matches).
template <size_t R>
std::string expect(int32_t input, const SwaShape& got, const Want (&want)[R], const std::string& legend) {
    bool ok = got.rank == int32_t(R);
    for (size_t i = 0; ok && i < R; ++i)
        ok = want[i].value < 0 || got.dims[i] < 0 || got.dims[i] == want[i].value;
    if (ok) return {};
    std::string syms = "(", values = "(";
    for (size_t i = 0; i < R; ++i) {
        syms += std::string(i ? ", " : "") + want[i].sym;
        values += std::string(i ? ", " : "") + (want[i].value < 0 ? std::string("any") : std::to_string(want[i].value));
    }
    if (R == 1) syms += ",", values += ",";
    std::string msg = std::string("input '") + kInputNames[input] + "' (#" + std::to_string(input) + ") has shape " +
                      shape_str(got);
    if (got.rank != int32_t(R)) msg += " (rank " + std::to_string(got.rank) + ")";
    return msg + ", expected " + syms + ") = " + values + ") (rank " + std::to_string(R) + "), where " + legend;
}

}  // namespace

const char* swa_input_name(int32_t index) {
    return index >= 0 && index < kSwaNumInputs ? kInputNames[index] : "?";
}

SwaShape swa_shape(const int64_t* dims, int64_t rank) {
    SwaShape s;
    s.rank = rank < 0 ? 0 : rank > INT32_MAX ? INT32_MAX : int32_t(rank);
    for (int32_t i = 0; i < std::min(s.rank, kSwaMaxRank); ++i) s.dims[i] = dims[i];
    return s;
}

std::string swa_check_shapes(SwaParams& p, const SwaShape* s, int32_t nb_inputs) {
    if (nb_inputs != kSwaNumInputs)
        return "expects 8 inputs (q, k, v, win_a, pos_a, win_b, pos_b, bias), got " + std::to_string(nb_inputs);
    SwaParams attrs = p;
    attrs.n = attrs.num_win_a = attrs.num_win_b = 0;
    std::string err = swa_check_params(attrs);
    if (!err.empty()) return err;

    const int64_t H = p.num_heads, C = H * p.head_dim, S2 = int64_t(p.window) * p.window, B = 2 * int64_t(p.window) - 1;
    const bool use_b = p.mode == 1;  // win_b / pos_b are ignored when mode == 0

    // N is the row count of q; where q's rows are unknown (TensorRT build time) the first of
    // k, v, pos_a, pos_b (mode 1) of the right rank that knows its rows binds it instead.
    int64_t N = s[kSwaQ].rank == 2 ? s[kSwaQ].dims[0] : -1;
    int32_t n_from = kSwaQ;
    for (int32_t i : {kSwaK, kSwaV, kSwaPosA, kSwaPosB}) {
        if (N >= 0) break;
        if ((i == kSwaPosB && !use_b) || s[i].rank != (i >= kSwaPosA ? 1 : 2) || s[i].dims[0] < 0) continue;
        N = s[i].dims[0];
        n_from = i;
    }
    const std::string n_legend = std::string("N = rows of ") + kInputNames[n_from] +
                                 (n_from == kSwaQ ? "" : " (the rows of q are not known yet)");
    const std::string qkv_legend = n_legend + ", C = num_heads * head_dim";
    const std::string win_a_legend = "Wa = number of windows of A (any), S2 = window * window";
    const std::string win_b_legend = "Wb = number of windows of B (any), S2 = window * window";

    if (!(err = expect(kSwaQ, s[kSwaQ], {{"N", N}, {"C", C}}, qkv_legend)).empty()) return err;
    for (int32_t i : {kSwaK, kSwaV})
        if (!(err = expect(i, s[i], {{"N", N}, {"C", C}}, qkv_legend)).empty()) return err;
    if (!(err = expect(kSwaWinA, s[kSwaWinA], {{"Wa", -1}, {"S2", S2}}, win_a_legend)).empty()) return err;
    if (!(err = expect(kSwaPosA, s[kSwaPosA], {{"N", N}}, n_legend)).empty()) return err;
    if (use_b) {
        if (!(err = expect(kSwaWinB, s[kSwaWinB], {{"Wb", -1}, {"S2", S2}}, win_b_legend)).empty()) return err;
        if (!(err = expect(kSwaPosB, s[kSwaPosB], {{"N", N}}, n_legend)).empty()) return err;
    }
    if (!(err = expect(kSwaBias, s[kSwaBias], {{"H", H}, {"B", B}, {"B", B}}, "H = num_heads, B = 2 * window - 1"))
             .empty())
        return err;

    // Rows need a window to sit in (pos_a / pos_b index the table): with N > 0 and no window every
    // position would be out of range, which the kernels would only treat as empty slots (zeros).
    for (int32_t i : {kSwaWinA, kSwaWinB}) {
        if ((i == kSwaWinB && !use_b) || !(N > 0) || s[i].dims[0] != 0) continue;
        return std::string("input '") + kInputNames[i] + "' (#" + std::to_string(i) + ") has shape " + shape_str(s[i]) +
               ", expected at least one window (" + (i == kSwaWinA ? "Wa" : "Wb") + " >= 1) for the N = " +
               std::to_string(N) + " rows of " + kInputNames[i == kSwaWinA ? kSwaPosA : kSwaPosB];
    }

    p.n = N < 0 ? -1 : N;
    p.num_win_a = s[kSwaWinA].dims[0] < 0 ? -1 : s[kSwaWinA].dims[0];
    p.num_win_b = use_b ? (s[kSwaWinB].dims[0] < 0 ? -1 : s[kSwaWinB].dims[0]) : 0;
    if (p.n >= 0 && p.num_win_a >= 0 && p.num_win_b >= 0) return swa_check_params(p);
    return {};
}

}  // namespace span_deploy
