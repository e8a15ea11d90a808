#include "onnx_meta.h"

#include <cstdint>
#include <fstream>

#include "errors.h"

namespace span {

namespace {

class Reader {
 public:
  Reader(std::istream& in, uint64_t size, const std::string& path) : in_(in), size_(size), path_(path) {}

  uint64_t pos() const { return pos_; }
  bool done() const { return pos_ >= size_; }

  [[noreturn]] void bad(const std::string& why) const {
    fail(SPAN_ERR_MODEL, path_ + ": not a readable ONNX file (" + why + " at byte " + std::to_string(pos_) +
                             "); pass an .onnx written by `span-deploy export`");
  }

  uint8_t byte() {
    if (pos_ >= size_) bad("truncated");
    const int c = in_.get();
    if (c == EOF) bad("truncated");
    ++pos_;
    return static_cast<uint8_t>(c);
  }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      const uint8_t b = byte();
      v |= uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    bad("varint longer than 10 bytes");
  }

  void skip(uint64_t n) {
    if (n > size_ - pos_) bad("a field runs past the end of the file");
    in_.seekg(static_cast<std::streamoff>(n), std::ios::cur);
    if (!in_) bad("seek failed");
    pos_ += n;
  }

  std::string bytes(uint64_t n) {
    if (n > size_ - pos_) bad("a field runs past the end of the file");
    std::string s(static_cast<size_t>(n), '\0');
    if (n && !in_.read(&s[0], static_cast<std::streamsize>(n))) bad("truncated");
    pos_ += n;
    return s;
  }

  // Skip the value of a field of wire type `wt`.
  void skip_value(uint32_t wt) {
    switch (wt) {
      case 0: varint(); break;
      case 1: skip(8); break;
      case 2: skip(varint()); break;
      case 5: skip(4); break;
      default: bad("unsupported protobuf wire type " + std::to_string(wt));
    }
  }

 private:
  std::istream& in_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& path_;
};

// StringStringEntryProto: 1 key, 2 value.
std::pair<std::string, std::string> parse_entry(const std::string& buf, const std::string& path) {
  std::string key, value;
  size_t i = 0;
  auto varint = [&](uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (i >= buf.size()) return false;
      const uint8_t b = static_cast<uint8_t>(buf[i++]);
      v |= uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  };
  while (i < buf.size()) {
    uint64_t tag = 0, len = 0;
    if (!varint(tag) || (tag & 7) != 2 || !varint(len) || len > buf.size() - i)
      fail(SPAN_ERR_MODEL, path + ": not a readable ONNX file (damaged metadata entry)");
    const std::string s = buf.substr(i, static_cast<size_t>(len));
    i += static_cast<size_t>(len);
    if ((tag >> 3) == 1) key = s;
    else if ((tag >> 3) == 2) value = s;
  }
  return {key, value};
}

}  // namespace

std::vector<std::pair<std::string, std::string>> read_onnx_metadata(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(SPAN_ERR_IO, "model file not found or not readable: " + path);
  in.seekg(0, std::ios::end);
  const std::streamoff end = in.tellg();
  in.seekg(0, std::ios::beg);
  if (end <= 0) fail(SPAN_ERR_MODEL, path + ": not a readable ONNX file (empty); pass an .onnx written by `span-deploy export`");
  Reader r(in, static_cast<uint64_t>(end), path);
  std::vector<std::pair<std::string, std::string>> out;
  bool saw_graph = false;
  while (!r.done()) {
    const uint64_t tag = r.varint();
    const uint32_t field = static_cast<uint32_t>(tag >> 3), wt = static_cast<uint32_t>(tag & 7);
    if (field == 0) r.bad("field number 0");
    if (field == 14 && wt == 2) {
      out.push_back(parse_entry(r.bytes(r.varint()), path));
    } else {
      if (field == 7 && wt == 2) saw_graph = true;  // ModelProto.graph
      r.skip_value(wt);
    }
  }
  if (!saw_graph) r.bad("no graph");
  return out;
}

}  // namespace span
