// Unit tests of the runtime's own readers (JSON, ONNX metadata scan). Built as build/bin/span_deploy_selftest
// and run by tests/cpp/test_cpp_runtime_errors.py; prints the failures and exits non-zero on any.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "errors.h"
#include "json.h"
#include "onnx_meta.h"

using span::json::Value;

namespace {

int g_checks = 0, g_failures = 0;

void check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::cerr << "FAIL: " << what << '\n';
  }
}

Value ok(const std::string& text) {
  try {
    return span::json::parse(text);
  } catch (const std::exception& e) {
    check(false, "parse(" + text + ") threw: " + e.what());
    return Value();
  }
}

void bad(const std::string& text, const std::string& needle = "") {
  try {
    span::json::parse(text);
    check(false, "parse(" + text + ") should fail");
  } catch (const span::json::ParseError& e) {
    const std::string msg = e.what();
    check(msg.find("invalid JSON at line") != std::string::npos && msg.find(needle) != std::string::npos,
          "parse(" + text + ") message '" + msg + "' lacks '" + needle + "'");
  }
}

void json_tests() {
  Value v = ok(R"( {"a": 1, "b": [true, false, null], "c": {"d": "x"}, "e": -2.5e1, "a": 7} )");
  check(v.is_object() && v.object.size() == 5, "object members");
  check(v.find("a") && v.find("a")->integral && v.find("a")->integer == 7, "a repeated key: the last one wins");
  check(v.find("b")->array.size() == 3 && v.find("b")->array[0].boolean && v.find("b")->array[2].is_null(), "array");
  check(v.find("c")->find("d")->string == "x", "nested object");
  check(v.find("e")->number == -25.0 && !v.find("e")->integral, "exponent number");
  check(v.find("zz") == nullptr && v.find("b")->find("x") == nullptr, "find on a missing key / non-object");
  check(ok(R"("a\"b\\c\/d\b\f\n\r\t")").string == "a\"b\\c/d\b\f\n\r\t", "simple escapes");
  check(ok(R"("\u00e9")").string == "\xc3\xa9", "\\u escape to UTF-8 (2 bytes)");
  check(ok(R"("\u20ac")").string == "\xe2\x82\xac", "\\u escape to UTF-8 (3 bytes)");
  check(ok(R"("\ud83d\ude00")").string == "\xf0\x9f\x98\x80", "surrogate pair to UTF-8 (4 bytes)");
  check(ok("\"\xc3\xa9\"").string == "\xc3\xa9", "raw UTF-8 passes through");
  check(std::isnan(ok("NaN").number) && ok("Infinity").number > 1e308 && ok("-Infinity").number < -1e308,
        "Python json's NaN / Infinity / -Infinity");
  check(ok("9223372036854775807").integer == INT64_MAX && ok("-9223372036854775808").integer == INT64_MIN,
        "int64 limits exact");
  check(!ok("9223372036854775808").integral && ok("9223372036854775808").number == 9223372036854775808.0,
        "beyond int64: a double");
  check(ok("1e400").number > 1e308, "out of double range: inf");
  check(ok("0").integral && ok("-0").integral && ok("0.5").number == 0.5 && ok("1E+2").number == 100.0, "number forms");
  check(ok("[]").is_array() && ok("{}").is_object() && ok(" \n\t\r[ ] ").array.empty(), "empty containers, whitespace");
  std::string deep(500, '[');
  deep += std::string(500, ']');
  check(ok(deep).is_array(), "500 levels of nesting");

  bad("", "end of input");
  bad("   ", "end of input");
  bad("[1,]", "unexpected character ']'");
  bad("{\"a\":1,}", "expected a string key");
  bad("{\"a\" 1}", "expected ':'");
  bad("{'a': 1}", "expected a string key");
  bad("[1 2]", "expected ',' or ']'");
  bad("01", "unexpected text after");
  bad(".5", "unexpected character");
  bad("1.", "digits must follow '.'");
  bad("1e", "digits must follow the exponent");
  bad("+1", "unexpected character");
  bad("-", "bad number");
  bad("\"abc", "unterminated string");
  bad("\"a\nb\"", "control character");
  bad(R"("\x")", "unknown escape");
  bad(R"("\u12")", "truncated \\u escape");
  bad(R"("\u12zz")", "bad hex digit");
  bad(R"("\ud83d")", "unpaired surrogate");
  bad(R"("\ude00")", "unpaired surrogate");
  bad("tru", "unexpected character");
  bad("nul", "unexpected character");
  bad("[1] x", "unexpected text after");
  bad("// c\n1", "unexpected character '/'");
  bad(std::string(600, '[') + std::string(600, ']'), "nesting deeper than 512");
  bad("{\n\"a\": [1,\n 2,,]}", "line 3, column 4");
}

// ---- ONNX metadata scan -----------------------------------------------------------------------------

std::string varint(uint64_t v) {
  std::string s;
  do {
    uint8_t b = v & 0x7F;
    v >>= 7;
    if (v) b |= 0x80;
    s += char(b);
  } while (v);
  return s;
}

std::string field(uint32_t number, const std::string& bytes) { return varint((uint64_t(number) << 3) | 2) + varint(bytes.size()) + bytes; }

std::string entry(const std::string& k, const std::string& v) { return field(14, field(1, k) + field(2, v)); }

std::string write(const std::string& name, const std::string& bytes) {
  const std::string path = "span_selftest_" + name + ".onnx";
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

void meta_bad(const std::string& name, const std::string& bytes, span_status code, const std::string& needle) {
  const std::string path = write(name, bytes);
  try {
    span::read_onnx_metadata(path);
    check(false, "metadata scan of " + name + " should fail");
  } catch (const span::Error& e) {
    check(e.code() == code && std::string(e.what()).find(needle) != std::string::npos,
          "metadata scan of " + name + ": code " + std::to_string(e.code()) + ", message '" + e.what() + "'");
  }
  std::remove(path.c_str());
}

void meta_tests() {
  const std::string graph = field(7, std::string(3000, 'g'));
  // ir_version (varint), producer_name (2), a fixed64 and a fixed32 field, the graph, two entries
  const std::string model = varint(1 << 3) + varint(8) + field(2, "pytorch") + varint((20u << 3) | 1) + std::string(8, 'x') +
                            varint((21u << 3) | 5) + std::string(4, 'y') + graph + entry("span_deploy", "{\"a\": 1}") +
                            entry("other", std::string(200, 'v'));
  const std::string path = write("good", model);
  const auto kv = span::read_onnx_metadata(path);
  check(kv.size() == 2 && kv[0].first == "span_deploy" && kv[0].second == "{\"a\": 1}" && kv[1].second.size() == 200,
        "metadata entries read past a graph");
  std::remove(path.c_str());
  check(span::read_onnx_metadata(write("nometa", varint(1 << 3) + varint(8) + graph)).empty(), "no metadata: none");
  std::remove("span_selftest_nometa.onnx");

  meta_bad("truncated", model.substr(0, model.size() - 5), SPAN_ERR_MODEL, "runs past the end");
  meta_bad("text", "hello, this is not protobuf at all\n", SPAN_ERR_MODEL, "not a readable ONNX file");
  meta_bad("empty", "", SPAN_ERR_MODEL, "empty");
  meta_bad("nograph", varint(1 << 3) + varint(8) + entry("span_deploy", "{}"), SPAN_ERR_MODEL, "no graph");
  meta_bad("group", varint((3u << 3) | 3), SPAN_ERR_MODEL, "wire type 3");
  try {
    span::read_onnx_metadata("/nonexistent/span_selftest.onnx");
    check(false, "a missing file should fail");
  } catch (const span::Error& e) {
    check(e.code() == SPAN_ERR_IO && std::string(e.what()).find("not found") != std::string::npos, "missing file: SPAN_ERR_IO");
  }
}

}  // namespace

int main() {
  json_tests();
  meta_tests();
  std::cout << g_checks - g_failures << " of " << g_checks << " checks passed\n";
  return g_failures ? 1 : 0;
}
