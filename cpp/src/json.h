// A small JSON reader (RFC 8259, plus Python json's NaN / Infinity / -Infinity, which json.dumps writes
// for non-finite floats). Enough for deploy.json, an engine's sidecar and the span_deploy metadata of an
// export; and a compact writer (dump) for metadata that came from a sidecar.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace span::json {

class ParseError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Value {
  enum class Type { Null, Bool, Number, String, Array, Object };
  Type type = Type::Null;
  bool boolean = false;
  double number = 0.0;
  bool integral = false;   // the literal had no fraction / exponent and fits int64 (then `integer` holds it)
  int64_t integer = 0;
  std::string string;
  std::vector<Value> array;
  std::vector<std::pair<std::string, Value>> object;  // document order; a repeated key: the last one wins

  bool is_null() const { return type == Type::Null; }
  bool is_bool() const { return type == Type::Bool; }
  bool is_number() const { return type == Type::Number; }
  bool is_string() const { return type == Type::String; }
  bool is_array() const { return type == Type::Array; }
  bool is_object() const { return type == Type::Object; }
  // The member `key` of an object (the last one when repeated); nullptr when absent or not an object.
  const Value* find(std::string_view key) const;
};

// Parse a whole document (surrounding whitespace allowed, nothing else after the value). Errors name
// the line and column. Nesting deeper than 512 levels is refused.
Value parse(std::string_view text);

const char* type_name(Value::Type t);

// Compact JSON text of `v` (", " / ": " separators as Python's json.dumps; object members in document
// order; integers exact, other numbers as the shortest text that reads back; NaN / Infinity as Python
// writes them; non-ASCII bytes pass through as UTF-8).
std::string dump(const Value& v);

}  // namespace span::json
