// The host rulebook (span_deploy/rulebook in Python; TABLES.md): normalise, sort, pad, then per stage
// the downsampling gather table and the window tables, and the segmentation decoder's upsampling
// tables. Every table is identical to the numpy rulebook's (tests/cpp/test_cpp_rulebook.py).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config.h"
#include "span_deploy/span_deploy.h"

namespace span {

constexpr int kRulebookVersion = SPAN_RULEBOOK_VERSION;
constexpr int64_t kMaxCoord = 32767;  // the official window builder casts stage coordinates to int16

// A named C-order array (the rulebook's tables, a result's outputs).
struct Tensor {
  std::string name;
  span_dtype dtype = SPAN_DTYPE_FLOAT32;
  std::vector<int64_t> shape;
  std::vector<float> f32;
  std::vector<int32_t> i32;
  std::vector<int64_t> i64;
  std::vector<double> f64;

  const void* data() const;
  int64_t elements() const;
};

struct Windowing {
  int64_t num_windows = 0;
  std::vector<int32_t> win;  // (num_windows, S*S) node row per slot, -1 = empty
  std::vector<int32_t> pos;  // (N,) window * S*S + slot
};

struct StageWindows {
  Windowing unshifted;
  Windowing shifted;         // a copy of `unshifted` when the shift is inactive
  bool shift_active = false;
  bool small_grid = false;
  int64_t extent[2] = {0, 0};
};

struct Stage {
  std::vector<int64_t> coords;  // (N_s, 2) row-major cells
  int64_t grid[2] = {0, 0};     // the conv grid entering the next downsampling
  std::vector<int32_t> gather;  // s >= 1: (N_s, taps) rows of stage s-1, -1 = empty
  int64_t taps = 0;
  StageWindows windows;
  int64_t size() const { return static_cast<int64_t>(coords.size() / 2); }
};

struct DecoderTables {
  int target = 0;               // the encoder stage whose rows it restores
  std::vector<int32_t> parent;  // pixelshuffle: (N_t,)
  std::vector<int32_t> slot;    // pixelshuffle: (N_t,)
  std::vector<int32_t> gather;  // patchinvs / dwpatchinvs: (N_t, k*k)
};

struct Padding {
  int64_t left[2] = {0, 0};
  int64_t right[2] = {0, 0};
  bool lead = false;   // a zero node was prepended at (0, 0)
  bool trail = false;  // a zero node was appended at the far corner
};

struct Rulebook {
  std::vector<int64_t> sort_index;   // (N,) input row of each sorted patch
  std::vector<int32_t> norm_coords;  // (N, 2) normalised sorted cells
  Padding padding;
  std::vector<Stage> stages;
  std::vector<DecoderTables> decoder;

  int64_t num_patches() const { return static_cast<int64_t>(sort_index.size()); }
  // Stage-0 row of each input patch (input order).
  std::vector<int64_t> patch_rows() const;
};

// raw: (n, 2) row-major pixel coordinates. Throws span::Error(SPAN_ERR_RULEBOOK) with the message
// Python's RulebookError gives.
Rulebook build_rulebook(const int64_t* raw, int64_t n, const Config& cfg);
Rulebook build_rulebook(const double* raw, int64_t n, const Config& cfg);

// The engine inputs of io.engine_inputs(cfg) except feats, in graph order, filled from `rb`.
std::vector<Tensor> engine_input_tables(const Rulebook& rb, const Config& cfg);
// The input names of io.engine_inputs(cfg), feats first.
std::vector<std::string> engine_input_names(const Config& cfg);
// The output names of io.engine_outputs(cfg).
std::vector<std::string> engine_output_names(const Config& cfg);
// engine_input_tables followed by the diagnostic tables (sort_index, ..., stage{s}_shift).
std::vector<Tensor> all_tables(const Rulebook& rb, const Config& cfg);

}  // namespace span
