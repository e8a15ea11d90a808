// The pure parts of the TensorRT engine path (no TensorRT, no CUDA; unit-tested by span_deploy_selftest):
// the engine's sidecar model.engine.json (span_deploy/backends/tensorrt/sidecar.py), the SHA-256 that
// ties a sidecar to its engine, and the check of one slide's input shapes against the engine's
// optimisation profile (profiles.py check_fits, runner.py's max-tokens check), with their messages.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "json.h"

namespace span {

constexpr int64_t kSidecarFormat = 1;
constexpr int64_t kProfilePads = 2;  // at most one leading and one trailing pad row at stage 0

// Input name -> shapes (rows first) at the profile's minimum and maximum.
struct ProfileShapes {
  std::map<std::string, std::vector<int64_t>> min, max;
  bool empty() const { return max.empty(); }
};

struct Sidecar {
  std::string path;        // the .json file read
  json::Value meta;        // "span_deploy": the ONNX's span-deploy metadata (config, attention, names, ...)
  std::string precision;   // "precision" of the engine build ("" when absent)
  std::string tensorrt;    // the TensorRT version that built the engine ("" when absent)
  std::string sha256;      // "engine_sha256" (lower-case hex; "" when absent)
  int64_t max_tokens = -1; // "max_tokens"; -1 when absent
  ProfileShapes profile;   // "profile" (empty when absent)
};

// PATH + ".json" (sidecar.py sidecar_path).
std::string sidecar_path(const std::string& engine_path);

// Parse the text of a sidecar; `where` names it in messages. Throws span::Error(SPAN_ERR_MODEL).
Sidecar parse_sidecar(const std::string& text, const std::string& where);
// Read ENGINE.json beside `engine_path`. Throws span::Error(SPAN_ERR_MODEL) when it is missing or damaged.
Sidecar read_sidecar(const std::string& engine_path);
// The sidecar's sha256 must be the engine's (when the sidecar has one). Throws span::Error(SPAN_ERR_MODEL).
void check_sidecar_matches(const Sidecar& side, const std::string& engine_path, const std::string& engine_bytes);

// SHA-256 of `data`, lower-case hex.
std::string sha256_hex(const void* data, size_t size);

// The largest slide (patches) a profile whose feats take at most `max_rows` rows accepts for sure.
inline int64_t max_tokens_from_feats(int64_t max_rows) { return max_rows > kProfilePads ? max_rows - kProfilePads : 0; }

// A slide of `num_patches` patches whose engine inputs have `shapes` (name, dims) must fit the engine:
// at most `max_tokens` patches (when >= 0), every shape within [profile.min, profile.max]. Throws
// span::Error(SPAN_ERR_PROFILE) naming the limit, the input and how to rebuild the engine, and
// span::Error(SPAN_ERR_MODEL) when a static dim (min == max, after the rows) or the rank differs.
void check_profile(const std::string& engine, int64_t max_tokens, const ProfileShapes& profile,
                   const std::vector<std::pair<std::string, std::vector<int64_t>>>& shapes, int64_t num_patches);

}  // namespace span
