// The host rulebook, step for step as span_deploy/rulebook/{coords,conv,windows,upsample,build}.py.
// The float32 steps (normalisation, the padder's ceil) are done in float, never double, so the grid
// cells are bit-identical to numpy's; this file is compiled with -ffp-contract=off.
#include "rulebook.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <tuple>
#include <type_traits>

#include "errors.h"

namespace span {

const void* Tensor::data() const {
  switch (dtype) {
    case SPAN_DTYPE_FLOAT32: return f32.empty() ? nullptr : f32.data();
    case SPAN_DTYPE_INT32: return i32.empty() ? nullptr : i32.data();
    case SPAN_DTYPE_INT64: return i64.empty() ? nullptr : i64.data();
    case SPAN_DTYPE_FLOAT64: return f64.empty() ? nullptr : f64.data();
  }
  return nullptr;
}

int64_t Tensor::elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<int64_t> Rulebook::patch_rows() const {
  std::vector<int64_t> rows(sort_index.size());
  const int64_t lead = padding.lead ? 1 : 0;
  for (size_t i = 0; i < sort_index.size(); ++i) rows[static_cast<size_t>(sort_index[i])] = static_cast<int64_t>(i) + lead;
  return rows;
}

namespace {

[[noreturn]] void refuse(const std::string& msg) { fail(SPAN_ERR_RULEBOOK, msg); }

int64_t floor_div(int64_t a, int64_t b) {  // Python's //, b > 0
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

std::string cell(int64_t a, int64_t b) { return "[" + std::to_string(a) + ", " + std::to_string(b) + "]"; }

// Python's repr of a float (shortest round trip, "448.0" for integral values).
std::string py_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  if (v == 0.0) return std::signbit(v) ? "-0.0" : "0.0";
  char buf[40];
  for (int prec = 1; prec <= 17; ++prec) {  // the shortest digits that read back as v
    std::snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s(buf), sign;
  if (s[0] == '-') { sign = "-"; s.erase(0, 1); }
  const size_t e_at = s.find('e');
  const int exp10 = std::atoi(s.c_str() + e_at + 1);
  std::string digits = s.substr(0, e_at);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  if (exp10 >= -4 && exp10 < 16) {  // repr's fixed notation
    if (exp10 < 0) return sign + "0." + std::string(static_cast<size_t>(-exp10 - 1), '0') + digits;
    const size_t ip = static_cast<size_t>(exp10) + 1;
    if (digits.size() <= ip) return sign + digits + std::string(ip - digits.size(), '0') + ".0";
    return sign + digits.substr(0, ip) + "." + digits.substr(ip);
  }
  char e[16];
  std::snprintf(e, sizeof e, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
  return sign + digits.substr(0, 1) + (digits.size() > 1 ? "." + digits.substr(1) : "") + e;
}

std::string raw_cell(const int64_t* raw, int64_t i) { return cell(raw[2 * i], raw[2 * i + 1]); }
std::string raw_cell(const double* raw, int64_t i) {
  return "[" + py_float(raw[2 * i]) + ", " + py_float(raw[2 * i + 1]) + "]";
}

// ---- coords.py ---------------------------------------------------------------------------------

// float32(c) / 224 minus the float32 column minimum, truncated to int32 (spec 1.2).
template <typename T>
std::vector<int32_t> normalise(const T* raw, int64_t n) {
  if (n <= 0) refuse("the slide has no patches (0 coordinates)");
  if constexpr (std::is_floating_point_v<T>) {
    for (int64_t i = 0; i < 2 * n; ++i)
      if (!std::isfinite(raw[i])) refuse("coordinates contain NaN or Inf");
  }
  const float step = 224.0f;
  std::vector<float> scaled(static_cast<size_t>(2 * n));
  float lo[2] = {0.0f, 0.0f};
  for (int64_t i = 0; i < n; ++i) {
    for (int c = 0; c < 2; ++c) {
      const float v = static_cast<float>(raw[2 * i + c]) / step;
      if (!std::isfinite(v)) refuse("coordinates contain values beyond float32 range (" + raw_cell(raw, i) + ")");
      scaled[static_cast<size_t>(2 * i + c)] = v;
      if (i == 0 || v < lo[c]) lo[c] = v;
    }
  }
  std::vector<int32_t> out(static_cast<size_t>(2 * n));
  for (int64_t i = 0; i < 2 * n; ++i) {
    const float shifted = scaled[static_cast<size_t>(i)] - lo[i % 2];
    if (!(shifted < 2147483648.0f))  // numpy's int32 cast would wrap; the padder refuses such grids anyway
      refuse("the padded grid reaches cell " + std::to_string(static_cast<int64_t>(shifted)) +
             "; SPAN's window builder keeps coordinates below " + std::to_string(kMaxCoord + 1) +
             " (int16). Is the 224-px grid right?");
    out[static_cast<size_t>(i)] = static_cast<int32_t>(shifted);  // truncation toward zero; values >= 0
  }
  return out;
}

// Row-major order by the int32 key a*(max_b+1)+b (wrapping as numpy's int32 does), stable (spec 1.3).
std::vector<int64_t> sort_order(const std::vector<int32_t>& norm, int64_t n) {
  int32_t max_b = norm[1];
  for (int64_t i = 0; i < n; ++i) max_b = std::max(max_b, norm[static_cast<size_t>(2 * i + 1)]);
  const uint32_t width = static_cast<uint32_t>(max_b) + 1u;
  std::vector<int32_t> key(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    key[static_cast<size_t>(i)] = static_cast<int32_t>(static_cast<uint32_t>(norm[static_cast<size_t>(2 * i)]) * width +
                                                       static_cast<uint32_t>(norm[static_cast<size_t>(2 * i + 1)]));
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t x, int64_t y) { return key[static_cast<size_t>(x)] < key[static_cast<size_t>(y)]; });
  return order;
}

template <typename T>
void check_unique(const std::vector<int32_t>& ns, const T* raw, const std::vector<int64_t>& order) {
  const int64_t n = static_cast<int64_t>(order.size());
  int64_t n_dup = 0, first = -1;
  for (int64_t i = 0; i + 1 < n; ++i) {
    const size_t p = static_cast<size_t>(2 * i), q = static_cast<size_t>(2 * i + 2);
    if (ns[p] == ns[q] && ns[p + 1] == ns[q + 1]) {
      if (first < 0) first = i;
      ++n_dup;
    }
  }
  if (n_dup == 0) return;
  const size_t f = static_cast<size_t>(2 * first);
  refuse(std::to_string(n_dup) +
         " patch(es) fall into an already occupied grid cell after normalisation (float32 c/224 minus the column "
         "minimum, truncated); first collision: raw " + raw_cell(raw, order[static_cast<size_t>(first)]) + " and " +
         raw_cell(raw, order[static_cast<size_t>(first + 1)]) + " both map to cell " + cell(ns[f], ns[f + 1]) +
         ". Coordinates must lie on one global 224-px grid (one patch per cell); re-extract the patches on that "
         "grid or drop the duplicates");
}

// (left, right) for one axis of extent E (spec 1.4); the official code divides in float32, then ceils.
std::pair<int64_t, int64_t> pad_amounts(int64_t extent, int64_t kernel, int64_t stride, int64_t dilation, int layers) {
  const int64_t k_eff = (kernel - 1) * dilation + 1;
  int64_t S = 1;
  for (int l = 0; l < layers; ++l) S *= stride;  // <= 7^15: no overflow
  const int64_t rf = stride == 1 ? 1 + layers * (k_eff - 1) : 1 + (k_eff - 1) * (S - 1) / (stride - 1);
  const float q = static_cast<float>(extent - rf) / static_cast<float>(S);
  const int64_t m = std::max<int64_t>(0, static_cast<int64_t>(std::ceil(q)));
  const int64_t total = 2 * rf + S * m - extent;
  const int64_t left = floor_div(total, 2);
  return {left, total - left};
}

// ---- windows.py ----------------------------------------------------------------------------------

Windowing windowing(const std::vector<int64_t>& coords, int64_t side, int64_t offset) {
  const size_t n = coords.size() / 2;
  std::vector<int64_t> wkey(n), slot(n);
  int64_t nb = 0;
  for (size_t i = 0; i < n; ++i) nb = std::max(nb, (coords[2 * i + 1] + offset) / side + 1);
  for (size_t i = 0; i < n; ++i) {
    const int64_t a = coords[2 * i] + offset, b = coords[2 * i + 1] + offset;
    wkey[i] = (a / side) * nb + b / side;
    slot[i] = (a % side) * side + b % side;
  }
  std::vector<int64_t> uniq(wkey);
  std::sort(uniq.begin(), uniq.end());
  uniq.erase(std::unique(uniq.begin(), uniq.end()), uniq.end());
  const int64_t s2 = side * side;
  Windowing w;
  w.num_windows = static_cast<int64_t>(uniq.size());
  if (w.num_windows * s2 > 2147483647)
    refuse("the window table would have " + std::to_string(w.num_windows * s2) + " slots, more than int32 indexes");
  w.win.assign(static_cast<size_t>(w.num_windows * s2), -1);
  w.pos.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t widx = std::lower_bound(uniq.begin(), uniq.end(), wkey[i]) - uniq.begin();
    const int64_t p = widx * s2 + slot[i];
    w.pos[i] = static_cast<int32_t>(p);
    w.win[static_cast<size_t>(p)] = static_cast<int32_t>(i);
  }
  return w;
}

StageWindows stage_windows(const std::vector<int64_t>& coords, int64_t window_size) {
  const int64_t side = 2 * window_size;
  StageWindows sw;
  for (size_t i = 0; i < coords.size() / 2; ++i) {
    sw.extent[0] = std::max(sw.extent[0], coords[2 * i] + 1);
    sw.extent[1] = std::max(sw.extent[1], coords[2 * i + 1] + 1);
  }
  sw.unshifted = windowing(coords, side, 0);
  sw.small_grid = sw.extent[0] < side && sw.extent[1] < side;  // all-to-all
  // shifted only by padding, which happens only when a side is not a multiple of 2w (quirk 3)
  sw.shift_active = !sw.small_grid && !(sw.extent[0] % side == 0 && sw.extent[1] % side == 0);
  sw.shifted = sw.shift_active ? windowing(coords, side, window_size) : sw.unshifted;
  return sw;
}

// ---- exact cell lookup (conv.py's searchsorted, upsample.py's _lookup) ------------------------------

class CellIndex {
 public:
  explicit CellIndex(const std::vector<int64_t>& coords) {
    const size_t n = coords.size() / 2;
    cells_.reserve(n);
    for (size_t i = 0; i < n; ++i) cells_.emplace_back(coords[2 * i], coords[2 * i + 1], static_cast<int64_t>(i));
    std::sort(cells_.begin(), cells_.end());
  }
  // Row of cell (a, b), -1 when absent.
  int64_t row(int64_t a, int64_t b) const {
    auto it = std::lower_bound(cells_.begin(), cells_.end(), std::make_tuple(a, b, int64_t(-1)));
    return (it != cells_.end() && std::get<0>(*it) == a && std::get<1>(*it) == b) ? std::get<2>(*it) : -1;
  }

 private:
  std::vector<std::tuple<int64_t, int64_t, int64_t>> cells_;
};

// ---- conv.py -----------------------------------------------------------------------------------

int64_t out_extent(int64_t extent, int64_t kernel, int64_t stride, int64_t dilation) {
  return floor_div(extent - dilation * (kernel - 1) - 1, stride) + 1;
}

// Output sites: every cell some tap of which holds an input node, unique and row-major; gather per tap
// t = ky*k + kx at offset (ky*d, kx*d).
void downsample(const Stage& in, int64_t kernel, int64_t stride, int64_t dilation, Stage& out) {
  const int64_t ga = in.grid[0], gb = in.grid[1];
  const int64_t oa_n = out_extent(ga, kernel, stride, dilation), ob_n = out_extent(gb, kernel, stride, dilation);
  const size_t n = in.coords.size() / 2;
  std::vector<int64_t> sites;
  for (size_t i = 0; i < n; ++i) {
    const int64_t a = in.coords[2 * i], b = in.coords[2 * i + 1];
    for (int64_t ky = 0; ky < kernel; ++ky) {
      const int64_t ra = a - ky * dilation;
      if (!(ra >= 0 && ra % stride == 0 && ra / stride < oa_n)) continue;
      for (int64_t kx = 0; kx < kernel; ++kx) {
        const int64_t rb = b - kx * dilation;
        if (rb >= 0 && rb % stride == 0 && rb / stride < ob_n) sites.push_back((ra / stride) * ob_n + rb / stride);
      }
    }
  }
  std::sort(sites.begin(), sites.end());
  sites.erase(std::unique(sites.begin(), sites.end()), sites.end());
  out.grid[0] = oa_n;
  out.grid[1] = ob_n;
  out.taps = kernel * kernel;
  out.coords.resize(2 * sites.size());
  out.gather.assign(sites.size() * static_cast<size_t>(out.taps), -1);
  const CellIndex index(in.coords);
  for (size_t s = 0; s < sites.size(); ++s) {
    const int64_t oa = sites[s] / ob_n, ob = sites[s] % ob_n;
    out.coords[2 * s] = oa;
    out.coords[2 * s + 1] = ob;
    for (int64_t ky = 0; ky < kernel; ++ky) {
      for (int64_t kx = 0; kx < kernel; ++kx) {
        const int64_t ta = oa * stride + ky * dilation, tb = ob * stride + kx * dilation;
        if (ta >= ga || tb >= gb) continue;
        const int64_t r = index.row(ta, tb);
        if (r >= 0) out.gather[s * static_cast<size_t>(out.taps) + static_cast<size_t>(ky * kernel + kx)] = static_cast<int32_t>(r);
      }
    }
  }
}

// patchmerge: sites (a//2, b//2) inside the floor(E/2) grid, slot (a%2)*2 + b%2; nodes outside dropped.
void merge2x2(const Stage& in, Stage& out) {
  const int64_t oa_n = in.grid[0] / 2, ob_n = in.grid[1] / 2;
  const size_t n = in.coords.size() / 2;
  std::vector<int64_t> keys;
  std::vector<size_t> rows;
  for (size_t i = 0; i < n; ++i) {
    const int64_t a = in.coords[2 * i], b = in.coords[2 * i + 1];
    if (a / 2 < oa_n && b / 2 < ob_n) {
      rows.push_back(i);
      keys.push_back((a / 2) * ob_n + b / 2);
    }
  }
  std::vector<int64_t> sites(keys);
  std::sort(sites.begin(), sites.end());
  sites.erase(std::unique(sites.begin(), sites.end()), sites.end());
  out.grid[0] = oa_n;
  out.grid[1] = ob_n;
  out.taps = 4;
  out.gather.assign(sites.size() * 4, -1);
  out.coords.resize(2 * sites.size());
  for (size_t s = 0; s < sites.size(); ++s) {
    out.coords[2 * s] = sites[s] / ob_n;
    out.coords[2 * s + 1] = sites[s] % ob_n;
  }
  for (size_t k = 0; k < rows.size(); ++k) {
    const size_t s = static_cast<size_t>(std::lower_bound(sites.begin(), sites.end(), keys[k]) - sites.begin());
    const int64_t a = in.coords[2 * rows[k]], b = in.coords[2 * rows[k] + 1];
    out.gather[s * 4 + static_cast<size_t>((a % 2) * 2 + b % 2)] = static_cast<int32_t>(rows[k]);
  }
}

// ---- upsample.py -----------------------------------------------------------------------------------

DecoderTables decoder_block(const Stage& fine, const Stage& coarse, const Config& cfg, int target) {
  DecoderTables d;
  d.target = target;
  const CellIndex index(coarse.coords);
  const size_t n = fine.coords.size() / 2;
  const int64_t s = cfg.stride;
  if (cfg.dconv_type == "pixelshuffle") {
    d.parent.resize(n);
    d.slot.resize(n);
    int64_t missing = 0, first = -1;
    for (size_t i = 0; i < n; ++i) {
      const int64_t a = fine.coords[2 * i], b = fine.coords[2 * i + 1];
      const int64_t r = index.row(a / s, b / s);
      if (r < 0 && first < 0) first = static_cast<int64_t>(i);
      missing += r < 0;
      d.parent[i] = static_cast<int32_t>(r);
      d.slot[i] = static_cast<int32_t>((a % s) * s + b % s);
    }
    if (missing) {
      const int64_t a = fine.coords[static_cast<size_t>(2 * first)], b = fine.coords[static_cast<size_t>(2 * first + 1)];
      refuse("pixelshuffle upsampling: " + std::to_string(missing) + " of " + std::to_string(n) +
             " rows have no coarse parent (first: cell " + cell(a, b) + ", parent " + cell(a / s, b / s) +
             "); the official model drops them and returns fewer rows than patches. pixelshuffle restores every "
             "row only with kernel_size = stride and dilation 1; use a model with patchinvs / dwpatchinvs for "
             "this geometry");
    }
    return d;
  }
  const int64_t k = cfg.kernel_size, dil = cfg.dilation;
  d.gather.assign(n * static_cast<size_t>(k * k), -1);
  for (size_t i = 0; i < n; ++i) {
    for (int64_t ky = 0; ky < k; ++ky) {
      for (int64_t kx = 0; kx < k; ++kx) {
        const int64_t da = fine.coords[2 * i] - ky * dil, db = fine.coords[2 * i + 1] - kx * dil;
        if (da < 0 || db < 0 || da % s != 0 || db % s != 0) continue;
        d.gather[i * static_cast<size_t>(k * k) + static_cast<size_t>(ky * k + kx)] =
            static_cast<int32_t>(index.row(da / s, db / s));
      }
    }
  }
  return d;
}

// ---- build.py -----------------------------------------------------------------------------------

template <typename T>
Rulebook build(const T* raw, int64_t n, const Config& cfg) {
  Rulebook rb;
  const std::vector<int32_t> norm = normalise(raw, n);
  rb.sort_index = sort_order(norm, n);
  rb.norm_coords.resize(norm.size());
  for (int64_t i = 0; i < n; ++i) {
    const size_t src = static_cast<size_t>(2 * rb.sort_index[static_cast<size_t>(i)]);
    rb.norm_coords[static_cast<size_t>(2 * i)] = norm[src];
    rb.norm_coords[static_cast<size_t>(2 * i + 1)] = norm[src + 1];
  }
  check_unique(rb.norm_coords, raw, rb.sort_index);

  // pad (coords.py pad)
  int64_t ext[2] = {0, 0};
  for (int64_t i = 0; i < n; ++i)
    for (int c = 0; c < 2; ++c) ext[c] = std::max<int64_t>(ext[c], int64_t(rb.norm_coords[static_cast<size_t>(2 * i + c)]) + 1);
  Padding& p = rb.padding;
  for (int c = 0; c < 2; ++c)
    std::tie(p.left[c], p.right[c]) = pad_amounts(ext[c], cfg.kernel_size, cfg.stride, cfg.dilation, cfg.pad_layers());
  p.lead = p.left[0] > 0 || p.left[1] > 0;
  p.trail = p.right[0] > 0 || p.right[1] > 0;
  Stage s0;
  s0.coords.reserve(static_cast<size_t>(2 * (n + 2)));
  if (p.lead) s0.coords.insert(s0.coords.end(), {0, 0});
  for (int64_t i = 0; i < n; ++i)
    for (int c = 0; c < 2; ++c)
      s0.coords.push_back(int64_t(rb.norm_coords[static_cast<size_t>(2 * i + c)]) + (p.lead ? p.left[c] : 0));
  if (p.trail) s0.coords.insert(s0.coords.end(), {ext[0] - 1 + p.right[0] + p.left[0], ext[1] - 1 + p.right[1] + p.left[1]});
  const int64_t top = *std::max_element(s0.coords.begin(), s0.coords.end());
  if (top > kMaxCoord)
    refuse("the padded grid reaches cell " + std::to_string(top) + "; SPAN's window builder keeps coordinates below " +
           std::to_string(kMaxCoord + 1) + " (int16). Is the 224-px grid right?");
  for (size_t i = 0; i < s0.coords.size() / 2; ++i) {
    s0.grid[0] = std::max(s0.grid[0], s0.coords[2 * i] + 1);
    s0.grid[1] = std::max(s0.grid[1], s0.coords[2 * i + 1] + 1);
  }
  s0.windows = stage_windows(s0.coords, cfg.window_size);
  rb.stages.push_back(std::move(s0));

  for (int s = 1; s < cfg.num_stages(); ++s) {
    Stage next;
    if (cfg.conv_type == "patchmerge") merge2x2(rb.stages.back(), next);
    else downsample(rb.stages.back(), cfg.kernel_size, cfg.stride, cfg.dilation, next);
    if (next.coords.empty())
      refuse("stage " + std::to_string(s) + " has no output sites (grid (" + std::to_string(next.grid[0]) + ", " +
             std::to_string(next.grid[1]) + ")); the kernel/stride/dilation do not fit the padded grid");
    next.windows = stage_windows(next.coords, cfg.window_size);
    rb.stages.push_back(std::move(next));
  }
  for (int i = 0; i < cfg.num_decoder_stages(); ++i) {
    const int t = cfg.decoder_target_stage(i);
    rb.decoder.push_back(decoder_block(rb.stages[static_cast<size_t>(t)], rb.stages[static_cast<size_t>(t + 1)], cfg, t));
  }
  return rb;
}

Tensor i32_table(std::string name, std::vector<int64_t> shape, std::vector<int32_t> v) {
  Tensor t;
  t.name = std::move(name);
  t.dtype = SPAN_DTYPE_INT32;
  t.shape = std::move(shape);
  t.i32 = std::move(v);
  return t;
}

Tensor i64_table(std::string name, std::vector<int64_t> shape, std::vector<int64_t> v) {
  Tensor t;
  t.name = std::move(name);
  t.dtype = SPAN_DTYPE_INT64;
  t.shape = std::move(shape);
  t.i64 = std::move(v);
  return t;
}

}  // namespace

Rulebook build_rulebook(const int64_t* raw, int64_t n, const Config& cfg) { return build(raw, n, cfg); }
Rulebook build_rulebook(const double* raw, int64_t n, const Config& cfg) { return build(raw, n, cfg); }

std::vector<std::string> engine_input_names(const Config& cfg) {
  std::vector<std::string> out{"feats"};
  for (int s = 0; s < cfg.num_stages(); ++s) {
    const std::string p = "s" + std::to_string(s) + "_";
    out.push_back(p + "win_u");
    out.push_back(p + "pos_u");
    if (cfg.has_shift(s)) {
      out.push_back(p + "win_s");
      out.push_back(p + "pos_s");
    }
    if (s > 0) out.push_back(p + "gather");
    if (cfg.pos_emb == "rope") out.push_back(p + "coords");
  }
  for (int i = 0; i < cfg.num_decoder_stages(); ++i) {
    const std::string p = "d" + std::to_string(i) + "_";
    if (cfg.dconv_type == "pixelshuffle") {
      out.push_back(p + "parent");
      out.push_back(p + "slot");
    } else {
      out.push_back(p + "gather");
    }
  }
  return out;
}

std::vector<std::string> engine_output_names(const Config& cfg) {
  std::vector<std::string> out;
  if (cfg.task == "segmentation") out = {"patch_logits", "slide_embedding"};
  else out = {"logits", "slide_embedding"};
  for (int s = 0; s < cfg.num_stages(); ++s) out.push_back("stage" + std::to_string(s) + "_globals");
  out.push_back("stage0_features");
  if (cfg.task != "segmentation") out.push_back("patch_scores");
  return out;
}

std::vector<Tensor> engine_input_tables(const Rulebook& rb, const Config& cfg) {
  std::vector<Tensor> out;
  const int64_t s2 = cfg.window_side() * cfg.window_side();
  for (int s = 0; s < cfg.num_stages(); ++s) {
    const Stage& st = rb.stages[static_cast<size_t>(s)];
    const std::string p = "s" + std::to_string(s) + "_";
    const Windowing& u = st.windows.unshifted;
    out.push_back(i32_table(p + "win_u", {u.num_windows, s2}, u.win));
    out.push_back(i32_table(p + "pos_u", {st.size()}, u.pos));
    if (cfg.has_shift(s)) {
      const Windowing& w = st.windows.shifted;
      out.push_back(i32_table(p + "win_s", {w.num_windows, s2}, w.win));
      out.push_back(i32_table(p + "pos_s", {st.size()}, w.pos));
    }
    if (s > 0) out.push_back(i32_table(p + "gather", {st.size(), st.taps}, st.gather));
    if (cfg.pos_emb == "rope") {
      Tensor t;
      t.name = p + "coords";
      t.dtype = SPAN_DTYPE_FLOAT32;
      t.shape = {st.size(), 2};
      t.f32.assign(st.coords.begin(), st.coords.end());  // int64 -> float32, as astype(np.float32)
      out.push_back(std::move(t));
    }
  }
  for (size_t i = 0; i < rb.decoder.size(); ++i) {
    const DecoderTables& d = rb.decoder[i];
    const int64_t n_t = rb.stages[static_cast<size_t>(d.target)].size();
    const std::string p = "d" + std::to_string(i) + "_";
    if (cfg.dconv_type == "pixelshuffle") {
      out.push_back(i32_table(p + "parent", {n_t}, d.parent));
      out.push_back(i32_table(p + "slot", {n_t}, d.slot));
    } else {
      out.push_back(i32_table(p + "gather", {n_t, cfg.kernel_size * cfg.kernel_size}, d.gather));
    }
  }
  return out;
}

std::vector<Tensor> all_tables(const Rulebook& rb, const Config& cfg) {
  std::vector<Tensor> out = engine_input_tables(rb, cfg);
  const int64_t n = rb.num_patches();
  out.push_back(i64_table("sort_index", {n}, rb.sort_index));
  out.push_back(i32_table("norm_coords", {n, 2}, rb.norm_coords));
  out.push_back(i64_table("patch_rows", {n}, rb.patch_rows()));
  const Padding& p = rb.padding;
  out.push_back(i64_table("padding", {6}, {p.left[0], p.left[1], p.right[0], p.right[1], p.lead, p.trail}));
  std::vector<int64_t> sizes;
  for (const Stage& st : rb.stages) sizes.push_back(st.size());
  out.push_back(i64_table("stage_sizes", {static_cast<int64_t>(sizes.size())}, sizes));
  for (size_t s = 0; s < rb.stages.size(); ++s) {
    const Stage& st = rb.stages[s];
    const std::string p2 = "stage" + std::to_string(s) + "_";
    out.push_back(i64_table(p2 + "coords", {st.size(), 2}, st.coords));
    out.push_back(i64_table(p2 + "grid", {2}, {st.grid[0], st.grid[1]}));
    out.push_back(i32_table(p2 + "shift", {2}, {st.windows.shift_active, st.windows.small_grid}));
  }
  return out;
}

}  // namespace span
