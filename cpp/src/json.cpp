#include "json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <locale>
#include <sstream>

namespace span::json {

const Value* Value::find(std::string_view key) const {
  if (type != Type::Object) return nullptr;
  for (auto it = object.rbegin(); it != object.rend(); ++it)
    if (it->first == key) return &it->second;
  return nullptr;
}

const char* type_name(Value::Type t) {
  switch (t) {
    case Value::Type::Null: return "null";
    case Value::Type::Bool: return "a boolean";
    case Value::Type::Number: return "a number";
    case Value::Type::String: return "a string";
    case Value::Type::Array: return "an array";
    case Value::Type::Object: return "an object";
  }
  return "?";
}

namespace {

constexpr int kMaxDepth = 512;

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  Value document() {
    ws();
    Value v = value(0);
    ws();
    if (i_ != s_.size()) error("unexpected text after the JSON value");
    return v;
  }

 private:
  std::string_view s_;
  size_t i_ = 0;

  [[noreturn]] void error(const std::string& what) const {
    size_t line = 1, col = 1;
    for (size_t k = 0; k < i_ && k < s_.size(); ++k) {
      if (s_[k] == '\n') { ++line; col = 1; } else { ++col; }
    }
    throw ParseError("invalid JSON at line " + std::to_string(line) + ", column " + std::to_string(col) + ": " + what);
  }

  bool eof() const { return i_ >= s_.size(); }
  char peek() const { return eof() ? '\0' : s_[i_]; }

  void ws() {
    while (!eof() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }

  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  Value value(int depth) {
    if (depth > kMaxDepth) error("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    if (eof()) error("unexpected end of input (expected a value)");
    Value v;
    const char c = s_[i_];
    if (c == '{') return object(depth);
    if (c == '[') return array(depth);
    if (c == '"') { v.type = Value::Type::String; v.string = string(); return v; }
    if (literal("true")) { v.type = Value::Type::Bool; v.boolean = true; return v; }
    if (literal("false")) { v.type = Value::Type::Bool; return v; }
    if (literal("null")) return v;
    if (literal("NaN")) { v.type = Value::Type::Number; v.number = std::numeric_limits<double>::quiet_NaN(); return v; }
    if (literal("Infinity")) { v.type = Value::Type::Number; v.number = std::numeric_limits<double>::infinity(); return v; }
    if (literal("-Infinity")) { v.type = Value::Type::Number; v.number = -std::numeric_limits<double>::infinity(); return v; }
    if (c == '-' || (c >= '0' && c <= '9')) return number();
    error(std::string("unexpected character '") + c + "'");
  }

  Value object(int depth) {
    Value v;
    v.type = Value::Type::Object;
    ++i_;  // {
    ws();
    if (peek() == '}') { ++i_; return v; }
    for (;;) {
      ws();
      if (peek() != '"') error("expected a string key");
      std::string key = string();
      ws();
      if (peek() != ':') error("expected ':' after an object key");
      ++i_;
      ws();
      Value member = value(depth + 1);
      v.object.emplace_back(std::move(key), std::move(member));
      ws();
      if (peek() == ',') { ++i_; continue; }
      if (peek() == '}') { ++i_; return v; }
      error("expected ',' or '}' in an object");
    }
  }

  Value array(int depth) {
    Value v;
    v.type = Value::Type::Array;
    ++i_;  // [
    ws();
    if (peek() == ']') { ++i_; return v; }
    for (;;) {
      ws();
      v.array.push_back(value(depth + 1));
      ws();
      if (peek() == ',') { ++i_; continue; }
      if (peek() == ']') { ++i_; return v; }
      error("expected ',' or ']' in an array");
    }
  }

  unsigned hex4() {
    if (i_ + 4 > s_.size()) error("truncated \\u escape");
    unsigned u = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = s_[i_++];
      u <<= 4;
      if (h >= '0' && h <= '9') u |= unsigned(h - '0');
      else if (h >= 'a' && h <= 'f') u |= unsigned(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') u |= unsigned(h - 'A' + 10);
      else error("bad hex digit in a \\u escape");
    }
    return u;
  }

  static void utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  std::string string() {
    ++i_;  // opening quote
    std::string out;
    for (;;) {
      if (eof()) error("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) { --i_; error("control character in a string"); }
      if (c != '\\') { out += c; continue; }
      if (eof()) error("unterminated escape");
      const char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // a high surrogate: a low one must follow
            if (s_.substr(i_, 2) != "\\u") error("unpaired surrogate in a \\u escape");
            i_ += 2;
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) error("unpaired surrogate in a \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            error("unpaired surrogate in a \\u escape");
          }
          utf8(out, cp);
          break;
        }
        default: --i_; error(std::string("unknown escape '\\") + e + "'");
      }
    }
  }

  Value number() {
    const size_t start = i_;
    if (peek() == '-') ++i_;
    if (peek() == '0') {
      ++i_;
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++i_;
    } else {
      error("bad number");
    }
    bool integral = true;
    if (peek() == '.') {
      integral = false;
      ++i_;
      if (!(peek() >= '0' && peek() <= '9')) error("bad number: digits must follow '.'");
      while (peek() >= '0' && peek() <= '9') ++i_;
    }
    if (peek() == 'e' || peek() == 'E') {
      integral = false;
      ++i_;
      if (peek() == '+' || peek() == '-') ++i_;
      if (!(peek() >= '0' && peek() <= '9')) error("bad number: digits must follow the exponent");
      while (peek() >= '0' && peek() <= '9') ++i_;
    }
    const std::string text(s_.substr(start, i_ - start));
    Value v;
    v.type = Value::Type::Number;
    std::istringstream in(text);
    in.imbue(std::locale::classic());  // '.' whatever the process locale
    in >> v.number;
    if (in.fail()) {  // out of double range: +-inf, as Python's float() gives
      v.number = text[0] == '-' ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
    }
    if (integral) {
      // exact int64 when it fits (ints above 2^53 lose nothing this way)
      const bool neg = text[0] == '-';
      uint64_t mag = 0;
      bool fits = true;
      for (size_t k = neg ? 1 : 0; k < text.size(); ++k) {
        const uint64_t d = uint64_t(text[k] - '0');
        if (mag > (std::numeric_limits<uint64_t>::max() - d) / 10) { fits = false; break; }
        mag = mag * 10 + d;
      }
      const uint64_t limit = neg ? uint64_t(std::numeric_limits<int64_t>::max()) + 1 : uint64_t(std::numeric_limits<int64_t>::max());
      if (fits && mag <= limit) {
        v.integral = true;
        v.integer = neg ? int64_t(0 - mag) : int64_t(mag);
      }
    }
    return v;
  }
};

}  // namespace

Value parse(std::string_view text) { return Parser(text).document(); }

namespace {

void dump_string(const std::string& s, std::string& out) {
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void dump_number(const Value& v, std::string& out) {
  if (v.integral) {
    out += std::to_string(v.integer);
    return;
  }
  const double d = v.number;
  if (std::isnan(d)) { out += "NaN"; return; }
  if (std::isinf(d)) { out += d < 0 ? "-Infinity" : "Infinity"; return; }
  char buf[40];
  for (int prec = 1; prec <= 17; ++prec) {  // the shortest text that reads back as d
    std::snprintf(buf, sizeof buf, "%.*g", prec, d);
    if (std::strtod(buf, nullptr) == d) break;
  }
  std::string s(buf);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // stays a float when read back
  out += s;
}

void dump_value(const Value& v, std::string& out) {
  switch (v.type) {
    case Value::Type::Null: out += "null"; break;
    case Value::Type::Bool: out += v.boolean ? "true" : "false"; break;
    case Value::Type::Number: dump_number(v, out); break;
    case Value::Type::String: dump_string(v.string, out); break;
    case Value::Type::Array:
      out += '[';
      for (size_t i = 0; i < v.array.size(); ++i) {
        if (i) out += ", ";
        dump_value(v.array[i], out);
      }
      out += ']';
      break;
    case Value::Type::Object:
      out += '{';
      for (size_t i = 0; i < v.object.size(); ++i) {
        if (i) out += ", ";
        dump_string(v.object[i].first, out);
        out += ": ";
        dump_value(v.object[i].second, out);
      }
      out += '}';
      break;
  }
}

}  // namespace

std::string dump(const Value& v) {
  std::string out;
  dump_value(v, out);
  return out;
}

}  // namespace span::json
