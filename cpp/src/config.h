// The part of SpanConfig (span_deploy/config.py) the runtime needs, read from the `config` object of an
// export's span_deploy metadata (SpanConfig.to_dict() as JSON).
#pragma once

#include <cstdint>
#include <string>

#include "json.h"

namespace span {

struct Config {
  std::string task;            // classification | survival | segmentation
  int64_t feat_dim = 0;        // F
  int64_t embed_dim = 0;       // D at stage 0
  int64_t channel_factor = 1;
  std::string encoder_string;  // layers per stage, e.g. "111"
  std::string trans_type;      // long | long_noshift | swin
  std::string conv_type;       // dwpatchconv | patchconv | patchmerge
  std::string pos_emb;         // rpb | alibi | rope | none
  int64_t window_size = 3;
  int64_t kernel_size = 2;
  int64_t stride = 2;
  int64_t dilation = 1;
  int64_t num_globals = 1;     // len(tokens)
  int64_t num_outputs = -1;    // -1: unknown (None)
  std::string decoder_string;  // segmentation: layers per decoder stage
  std::string dtrans_type;
  std::string dconv_type;      // pixelshuffle | patchinvs | dwpatchinvs
  double threshold = 0.5;

  int num_stages() const { return static_cast<int>(encoder_string.size()); }
  int num_decoder_stages() const { return static_cast<int>(decoder_string.size()); }
  int decoder_target_stage(int i) const { return num_stages() - 2 - i; }
  int pad_layers() const { return num_stages() > 1 ? num_stages() - 1 : 0; }
  int64_t window_side() const { return 2 * window_size; }
  int64_t gather_taps() const { return conv_type == "patchmerge" ? 4 : kernel_size * kernel_size; }
  int64_t stage_dim(int s) const;
  bool has_shift(int stage) const;  // config.py SpanConfig.has_shift
};

// `doc` is the config object, or a whole metadata object holding one under "config". Throws
// span::Error(SPAN_ERR_CONFIG) naming the key that is missing or wrong.
Config config_from_json(const json::Value& doc, const std::string& where);

}  // namespace span
