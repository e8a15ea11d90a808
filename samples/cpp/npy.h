// A small reader of NumPy .npy files (format versions 1-3): C order, little-endian '<f4' '<f8' '<i4'
// '<i8', any rank. Every problem (not .npy, another dtype, Fortran order, truncated) is a
// std::runtime_error naming the file.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace npy {

struct Array {
  std::string descr;           // '<f4', '<f8', '<i4', '<i8'
  std::vector<int64_t> shape;  // () .. (a, b)
  std::vector<char> data;      // raw little-endian bytes, C order

  int64_t size() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  size_t item() const { return descr[2] == '8' ? 8 : 4; }
  bool is_float() const { return descr[1] == 'f'; }

  // Elements converted to T (float/double/int64_t).
  template <typename T>
  std::vector<T> as() const {
    std::vector<T> out(static_cast<size_t>(size()));
    for (size_t i = 0; i < out.size(); ++i) {
      const char* p = data.data() + i * item();
      if (descr == "<f4") { float v; std::memcpy(&v, p, 4); out[i] = static_cast<T>(v); }
      else if (descr == "<f8") { double v; std::memcpy(&v, p, 8); out[i] = static_cast<T>(v); }
      else if (descr == "<i4") { int32_t v; std::memcpy(&v, p, 4); out[i] = static_cast<T>(v); }
      else { int64_t v; std::memcpy(&v, p, 8); out[i] = static_cast<T>(v); }
    }
    return out;
  }
};

inline bool little_endian_host() {
  const uint16_t one = 1;
  char c;
  std::memcpy(&c, &one, 1);
  return c == 1;
}

// The value text of `'key':` in the header dict ("" when absent).
inline std::string header_value(const std::string& h, const std::string& key) {
  const size_t k = h.find("'" + key + "'");
  if (k == std::string::npos) return "";
  size_t i = h.find(':', k);
  if (i == std::string::npos) return "";
  ++i;
  while (i < h.size() && h[i] == ' ') ++i;
  if (i < h.size() && h[i] == '(') return h.substr(i, h.find(')', i) - i + 1);
  size_t e = i;
  if (h[i] == '\'') e = h.find('\'', i + 1) + 1;
  else while (e < h.size() && h[e] != ',' && h[e] != '}') ++e;
  return h.substr(i, e - i);
}

inline Array read(const std::string& path) {
  auto bad = [&](const std::string& why) { throw std::runtime_error(path + ": " + why); };
  std::ifstream in(path, std::ios::binary);
  if (!in) bad("cannot open (no such file?)");
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    bad("not a .npy file (no \\x93NUMPY magic); write it with numpy.save");
  const int major = static_cast<unsigned char>(magic[6]);
  if (major < 1 || major > 3) bad("unsupported .npy format version " + std::to_string(major));
  uint32_t hlen = 0;
  unsigned char lb[4] = {0, 0, 0, 0};
  if (!in.read(reinterpret_cast<char*>(lb), major == 1 ? 2 : 4)) bad("truncated header");
  hlen = uint32_t(lb[0]) | uint32_t(lb[1]) << 8 | uint32_t(lb[2]) << 16 | uint32_t(lb[3]) << 24;
  if (hlen > (1u << 20)) bad("header too long");
  std::string h(hlen, '\0');
  if (!in.read(&h[0], hlen)) bad("truncated header");

  Array a;
  std::string descr = header_value(h, "descr");
  if (descr.size() < 2 || descr.front() != '\'' || descr.back() != '\'') bad("header has no 'descr'");
  a.descr = descr.substr(1, descr.size() - 2);
  if (a.descr != "<f4" && a.descr != "<f8" && a.descr != "<i4" && a.descr != "<i8")
    bad("dtype '" + a.descr + "' is not supported; expected little-endian float32/float64/int32/int64 "
        "('<f4' '<f8' '<i4' '<i8')");
  if (!little_endian_host()) bad("this reader needs a little-endian host");
  const std::string fo = header_value(h, "fortran_order");
  if (fo == "True") bad("Fortran-order arrays are not supported; save a C-order array (numpy.ascontiguousarray)");
  if (fo != "False") bad("header has no 'fortran_order'");
  const std::string sh = header_value(h, "shape");
  if (sh.size() < 2 || sh.front() != '(') bad("header has no 'shape'");
  size_t i = 1;
  while (i < sh.size()) {
    while (i < sh.size() && (sh[i] == ' ' || sh[i] == ',')) ++i;
    if (i >= sh.size() || sh[i] == ')') break;
    size_t used = 0;
    long long d = -1;
    try { d = std::stoll(sh.substr(i), &used); } catch (...) {}
    if (d < 0 || used == 0) bad("bad shape " + sh);
    a.shape.push_back(d);
    i += used;
  }
  const int64_t bytes = a.size() * static_cast<int64_t>(a.item());
  a.data.resize(static_cast<size_t>(bytes));
  if (bytes && !in.read(a.data.data(), bytes))
    bad("truncated data: the header promises " + std::to_string(bytes) + " bytes for shape " + sh);
  return a;
}

}  // namespace npy
