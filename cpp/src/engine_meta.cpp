#include "engine_meta.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "errors.h"

namespace fs = std::filesystem;

namespace span {

namespace {

std::string shape_text(const std::vector<int64_t>& s) {  // Python's list repr: [3, 64]
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

// One profile entry: [[min...], [opt...], [max...]] of non-negative integers, one rank.
bool read_entry(const json::Value& v, std::vector<int64_t>* lo, std::vector<int64_t>* hi) {
  if (!v.is_array() || v.array.size() != 3) return false;
  std::vector<int64_t> dims[3];
  for (size_t k = 0; k < 3; ++k) {
    const json::Value& s = v.array[k];
    if (!s.is_array() || s.array.empty()) return false;
    for (const json::Value& d : s.array) {
      if (!d.integral || d.integer < 0) return false;
      dims[k].push_back(d.integer);
    }
    if (dims[k].size() != dims[0].size()) return false;
  }
  *lo = dims[0];
  *hi = dims[2];
  return true;
}

// SHA-256 (FIPS 180-4).
struct Sha256 {
  uint32_t h[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au, 0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
  unsigned char buf[64] = {};
  size_t fill = 0;
  uint64_t bits = 0;

  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

  void block(const unsigned char* p) {
    static const uint32_t k[64] = {
        0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
        0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
        0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
        0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
        0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
        0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
        0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
        0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = (uint32_t(p[4 * i]) << 24) | (uint32_t(p[4 * i + 1]) << 16) | (uint32_t(p[4 * i + 2]) << 8) | uint32_t(p[4 * i + 3]);
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }

  void update(const unsigned char* p, size_t n) {
    bits += uint64_t(n) * 8;
    if (fill) {
      const size_t take = n < 64 - fill ? n : 64 - fill;
      std::memcpy(buf + fill, p, take);
      fill += take; p += take; n -= take;
      if (fill == 64) { block(buf); fill = 0; }
    }
    for (; n >= 64; p += 64, n -= 64) block(p);
    if (n) { std::memcpy(buf, p, n); fill = n; }
  }

  std::string hex() {
    const uint64_t total = bits;
    const unsigned char pad = 0x80;
    update(&pad, 1);
    const unsigned char zero = 0;
    while (fill != 56) update(&zero, 1);
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(total >> (56 - 8 * i));
    update(len, 8);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (uint32_t v : h)
      for (int s = 28; s >= 0; s -= 4) out += digits[(v >> s) & 0xf];
    return out;
  }
};

}  // namespace

std::string sha256_hex(const void* data, size_t size) {
  Sha256 s;
  s.update(static_cast<const unsigned char*>(data), size);
  return s.hex();
}

std::string sidecar_path(const std::string& engine_path) { return engine_path + ".json"; }

Sidecar parse_sidecar(const std::string& text, const std::string& where) {
  json::Value doc;
  try {
    doc = json::parse(text);
  } catch (const json::ParseError& e) {
    fail(SPAN_ERR_MODEL, where + ": not valid JSON (" + e.what() + "); rebuild the engine with `span-deploy build-engine`");
  }
  if (!doc.is_object()) fail(SPAN_ERR_MODEL, where + ": not a span-deploy engine sidecar (a JSON object); rebuild the engine");
  const json::Value* format = doc.find("format");
  if (!format || !format->integral || format->integer != kSidecarFormat) {
    std::string got = "None";
    if (format && format->integral) got = std::to_string(format->integer);
    else if (format && format->is_string()) got = "'" + format->string + "'";
    fail(SPAN_ERR_MODEL, where + ": unknown sidecar format " + got + " (this span-deploy reads format " +
                             std::to_string(kSidecarFormat) + "); rebuild the engine");
  }
  const json::Value* meta = doc.find("span_deploy");
  if (!meta || !meta->is_object())
    fail(SPAN_ERR_MODEL, where + ": no span_deploy metadata (the export's config); rebuild the engine with "
                                 "`span-deploy build-engine`");
  Sidecar s;
  s.path = where;
  s.meta = *meta;
  if (const json::Value* p = doc.find("precision"); p && p->is_string()) s.precision = p->string;
  if (const json::Value* t = doc.find("tensorrt"); t && t->is_string()) s.tensorrt = t->string;
  if (const json::Value* h = doc.find("engine_sha256"); h && !h->is_null()) {
    bool hex = h->is_string() && h->string.size() == 64;
    for (char c : hex ? h->string : std::string())
      hex = hex && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'));
    if (!hex) fail(SPAN_ERR_MODEL, where + ": engine_sha256 is not a SHA-256 hex digest; rebuild the engine");
    s.sha256 = h->string;
    for (char& c : s.sha256) if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  }
  if (const json::Value* m = doc.find("max_tokens"); m && !m->is_null()) {
    if (!m->integral || m->integer < 0)
      fail(SPAN_ERR_MODEL, where + ": max_tokens must be a non-negative integer; rebuild the engine");
    s.max_tokens = m->integer;
  }
  if (const json::Value* p = doc.find("profile"); p && !p->is_null()) {
    if (!p->is_object()) fail(SPAN_ERR_MODEL, where + ": profile must be an object (input -> [min, opt, max]); rebuild the engine");
    for (const auto& kv : p->object) {
      std::vector<int64_t> lo, hi;
      if (!read_entry(kv.second, &lo, &hi))
        fail(SPAN_ERR_MODEL, where + ": profile entry '" + kv.first + "' is not [min shape, opt shape, max shape]; "
                                     "rebuild the engine");
      s.profile.min[kv.first] = lo;
      s.profile.max[kv.first] = hi;
    }
  }
  return s;
}

Sidecar read_sidecar(const std::string& engine_path) {
  const std::string side = sidecar_path(engine_path);
  std::error_code ec;
  if (!fs::is_regular_file(side, ec))
    fail(SPAN_ERR_MODEL, engine_path + ": its metadata file " + side + " is missing; build engines with "
                                       "`span-deploy build-engine`, which writes both (copy the .json with the engine)");
  std::ifstream in(side, std::ios::binary);
  if (!in) fail(SPAN_ERR_IO, "cannot read " + side);
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_sidecar(ss.str(), side);
}

void check_sidecar_matches(const Sidecar& side, const std::string& engine_path, const std::string& engine_bytes) {
  if (side.sha256.empty()) return;
  if (sha256_hex(engine_bytes.data(), engine_bytes.size()) != side.sha256)
    fail(SPAN_ERR_MODEL, side.path + " was written for another engine than " + engine_path +
                             " (engine_sha256 differs); rebuild the engine, or copy the engine with its own .json");
}

void check_profile(const std::string& engine, int64_t max_tokens, const ProfileShapes& profile,
                   const std::vector<std::pair<std::string, std::vector<int64_t>>>& shapes, int64_t num_patches) {
  const std::string rebuild = "span-deploy build-engine MODEL.onnx --max-tokens " + std::to_string(num_patches);
  if (max_tokens >= 0 && num_patches > max_tokens)
    fail(SPAN_ERR_PROFILE, "the slide has " + std::to_string(num_patches) + " patches, the engine " + engine +
                               " takes at most " + std::to_string(max_tokens) + " (max tokens of its optimisation "
                               "profile); rebuild it with a larger --max-tokens (`" + rebuild + "`), or run this slide "
                               "on ONNX Runtime");
  auto feats = profile.max.find("feats");
  const std::string approx = feats != profile.max.end() && !feats->second.empty()
                                 ? " (max tokens ~ " + std::to_string(max_tokens_from_feats(feats->second[0])) + ")"
                                 : std::string();
  for (const auto& kv : shapes) {  // the static dims (all but rows) must be the engine's
    auto lo = profile.min.find(kv.first), hi = profile.max.find(kv.first);
    if (lo == profile.min.end() || hi == profile.max.end()) continue;
    bool differs = kv.second.size() != hi->second.size();
    for (size_t i = 1; !differs && i < kv.second.size(); ++i)
      differs = lo->second[i] == hi->second[i] && kv.second[i] != hi->second[i];
    if (differs) {
      std::vector<int64_t> want = hi->second;
      std::string w = shape_text(want);
      if (!want.empty()) w = "[rows" + w.substr(w.find_first_of(",]"));
      fail(SPAN_ERR_MODEL, "input " + kv.first + " has shape " + shape_text(kv.second) + ", the engine " + engine +
                               " takes " + w + "; was it built from this model's export? Rebuild the engine");
    }
  }
  for (const auto& kv : shapes) {
    auto hi = profile.max.find(kv.first);
    if (hi == profile.max.end()) continue;
    bool over = kv.second.size() != hi->second.size();
    for (size_t i = 0; !over && i < kv.second.size(); ++i) over = kv.second[i] > hi->second[i];
    if (over)
      fail(SPAN_ERR_PROFILE, "the slide has " + std::to_string(num_patches) + " patches; input " + kv.first +
                                 " needs shape " + shape_text(kv.second) + " but the engine's profile allows at most " +
                                 shape_text(hi->second) + approx + "; rebuild the engine " + engine +
                                 " with a larger --max-tokens (`" + rebuild + "`)");
  }
  for (const auto& kv : shapes) {
    auto lo = profile.min.find(kv.first);
    if (lo == profile.min.end()) continue;
    bool under = false;
    for (size_t i = 0; i < kv.second.size() && i < lo->second.size(); ++i) under = under || kv.second[i] < lo->second[i];
    if (under)
      fail(SPAN_ERR_PROFILE, "the slide has " + std::to_string(num_patches) + " patches; input " + kv.first +
                                 " has shape " + shape_text(kv.second) + ", below the engine's profile minimum " +
                                 shape_text(lo->second) + "; rebuild the engine " + engine + " with a smaller --min-tokens");
  }
}

}  // namespace span
