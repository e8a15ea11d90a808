// Unit tests of the runtime's own pure parts (JSON reader / writer, ONNX metadata scan, half floats, and
// the TensorRT engine path's sidecar, SHA-256, profile check and which-file-to-open; no TensorRT needed).
// Built as build/bin/span_deploy_selftest and run by tests/cpp/test_cpp_runtime_errors.py; prints the
// failures and exits non-zero on any.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>

#include "engine_meta.h"
#include "errors.h"
#include "half.h"
#include "json.h"
#include "model_files.h"
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

// ---- JSON writer, half floats ------------------------------------------------------------------------

void dump_tests() {
  const std::string text = R"({"a": 1, "b": [true, false, null], "c": "x\"y\\z\n\u0001", "d": 0.5, "e": -3, "f": {}, "g": []})";
  check(span::json::dump(ok(text)) == text, "dump writes Python json.dumps' compact form: " + span::json::dump(ok(text)));
  check(span::json::dump(ok("[0.1, 1e300, 2.0, -0.0, 123456789012345678]")) == "[0.1, 1e+300, 2.0, -0.0, 123456789012345678]",
        "dump numbers: " + span::json::dump(ok("[0.1, 1e300, 2.0, -0.0, 123456789012345678]")));
  check(span::json::dump(ok("[NaN, Infinity, -Infinity]")) == "[NaN, Infinity, -Infinity]", "dump non-finite numbers");
  check(span::json::dump(ok("\"\u00e9\"")) == "\"\xc3\xa9\"", "dump passes UTF-8 through");
  const Value v = ok(R"({"config": {"window_size": 3, "threshold": 0.35, "tokens": [1, 2]}, "x": [1.5e-7]})");
  const Value back = ok(span::json::dump(v));
  check(back.find("config")->find("threshold")->number == 0.35 && back.find("x")->array[0].number == 1.5e-7 &&
            back.find("config")->find("window_size")->integer == 3,
        "dump -> parse round trip");
}

void half_tests() {
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const bool nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu);
    if (!nan && span::to_half(span::from_half(static_cast<uint16_t>(h))) != h) ++bad;
  }
  check(bad == 0, "float16 -> float32 -> float16 is exact for every non-NaN half (" + std::to_string(bad) + " differ)");
  check(span::from_half(0x3c00u) == 1.0f && span::from_half(0xc000u) == -2.0f && span::from_half(0x0001u) == std::ldexp(1.0f, -24) &&
            std::isinf(span::from_half(0x7c00u)) && std::isnan(span::from_half(0x7e00u)),
        "from_half values");
  check(span::to_half(65520.0f) == 0x7c00u && span::to_half(65519.0f) == 0x7bffu && span::to_half(1e-9f) == 0 &&
            span::to_half(1.0009765625f) == 0x3c01u && span::to_half(1.00048828125f) == 0x3c00u,
        "to_half rounds to nearest even, overflows to inf");
}

// ---- TensorRT engine path: sidecar, SHA-256, profile check ---------------------------------------------

template <typename F>
void throws(F&& f, span_status code, const std::string& needle, const std::string& what) {
  try {
    f();
    check(false, what + ": should fail");
  } catch (const span::Error& e) {
    check(e.code() == code && std::string(e.what()).find(needle) != std::string::npos,
          what + ": code " + std::to_string(e.code()) + ", message '" + e.what() + "' (want '" + needle + "')");
  }
}

void sha_tests() {
  check(span::sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sha256('')");
  check(span::sha256_hex("abc", 3) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sha256('abc')");
  const std::string two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  check(span::sha256_hex(two.data(), two.size()) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
        "sha256 of the two-block FIPS vector");
  const std::string million(1000000, 'a');
  check(span::sha256_hex(million.data(), million.size()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
        "sha256 of a million 'a'");
}

const char* kSidecar = R"({"format": 1, "span_deploy": {"config": {"task": "classification"}, "attention": "plugin",
 "input_names": ["feats", "s0_win_u"], "output_names": ["logits"], "rulebook_version": 1, "precision": "fp32"},
 "profile": {"feats": [[3, 64], [2002, 64], [102, 64]], "s0_win_u": [[1, 36], [10, 36], [102, 36]]},
 "max_tokens": 100, "precision": "fp16", "tensorrt": "10.3.0",
 "engine_sha256": "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"})";

void sidecar_tests() {
  const span::Sidecar s = span::parse_sidecar(kSidecar, "m.engine.json");
  check(s.meta.find("attention")->string == "plugin" && s.meta.find("config")->find("task")->string == "classification",
        "sidecar span_deploy metadata");
  check(s.precision == "fp16" && s.tensorrt == "10.3.0" && s.max_tokens == 100, "sidecar precision / tensorrt / max_tokens");
  check(s.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sidecar sha256, lower-cased");
  check(s.profile.min.at("feats") == std::vector<int64_t>{3, 64} && s.profile.max.at("feats") == std::vector<int64_t>{102, 64} &&
            s.profile.max.at("s0_win_u") == std::vector<int64_t>{102, 36},
        "sidecar profile min / max");
  const span::Sidecar bare = span::parse_sidecar(R"({"format": 1, "span_deploy": {}})", "b.json");
  check(bare.max_tokens == -1 && bare.profile.empty() && bare.sha256.empty() && bare.precision.empty(), "a bare sidecar");
  check(span::sidecar_path("/a/model.engine") == "/a/model.engine.json", "sidecar_path");
  using span::parse_sidecar;
  throws([] { parse_sidecar("{not json", "x.json"); }, SPAN_ERR_MODEL, "x.json: not valid JSON", "sidecar: not JSON");
  throws([] { parse_sidecar("[]", "x.json"); }, SPAN_ERR_MODEL, "not a span-deploy engine sidecar", "sidecar: an array");
  throws([] { parse_sidecar(R"({"format": 2, "span_deploy": {}})", "x.json"); }, SPAN_ERR_MODEL, "unknown sidecar format 2",
         "sidecar: format 2");
  throws([] { parse_sidecar(R"({"span_deploy": {}})", "x.json"); }, SPAN_ERR_MODEL, "unknown sidecar format None",
         "sidecar: no format");
  throws([] { parse_sidecar(R"({"format": 1})", "x.json"); }, SPAN_ERR_MODEL, "no span_deploy metadata", "sidecar: no metadata");
  throws([] { parse_sidecar(R"({"format": 1, "span_deploy": {}, "engine_sha256": "abc"})", "x.json"); }, SPAN_ERR_MODEL,
         "engine_sha256 is not a SHA-256", "sidecar: short sha");
  throws([] { parse_sidecar(R"({"format": 1, "span_deploy": {}, "max_tokens": -3})", "x.json"); }, SPAN_ERR_MODEL,
         "max_tokens must be a non-negative integer", "sidecar: negative max_tokens");
  throws([] { parse_sidecar(R"({"format": 1, "span_deploy": {}, "profile": {"feats": [[1, 2], [3]]}})", "x.json"); },
         SPAN_ERR_MODEL, "profile entry 'feats' is not [min shape, opt shape, max shape]", "sidecar: bad profile entry");
  throws([] { parse_sidecar(R"({"format": 1, "span_deploy": {}, "profile": {"feats": [[1], [2, 3], [4]]}})", "x.json"); },
         SPAN_ERR_MODEL, "profile entry 'feats'", "sidecar: ranks differ");
  span::check_sidecar_matches(s, "m.engine", "abc");  // the sha of "abc": no throw
  throws([&] { span::check_sidecar_matches(s, "m.engine", "abd"); }, SPAN_ERR_MODEL,
         "m.engine.json was written for another engine than m.engine", "sidecar of another engine");
  span::check_sidecar_matches(bare, "m.engine", "anything");  // no sha: not checked
  throws([] { span::read_sidecar("/nonexistent/span_selftest.engine"); }, SPAN_ERR_MODEL,
         "its metadata file /nonexistent/span_selftest.engine.json is missing", "a missing sidecar");
}

void profile_tests() {
  const span::Sidecar s = span::parse_sidecar(kSidecar, "m.engine.json");
  using Shapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;
  check(span::max_tokens_from_feats(102) == 100 && span::max_tokens_from_feats(1) == 0, "max_tokens_from_feats");
  span::check_profile("m.engine", 100, s.profile, Shapes{{"feats", {100, 64}}, {"s0_win_u", {5, 36}}, {"other", {9999}}}, 98);
  check(true, "a slide inside the profile passes");
  throws([&] { span::check_profile("m.engine", 100, s.profile, Shapes{{"feats", {103, 64}}}, 101); }, SPAN_ERR_PROFILE,
         "the slide has 101 patches, the engine m.engine takes at most 100 (max tokens of its optimisation profile); "
         "rebuild it with a larger --max-tokens (`span-deploy build-engine MODEL.onnx --max-tokens 101`)",
         "more patches than max tokens");
  throws([&] { span::check_profile("m.engine", -1, s.profile, Shapes{{"feats", {50, 64}}, {"s0_win_u", {103, 36}}}, 48); },
         SPAN_ERR_PROFILE,
         "the slide has 48 patches; input s0_win_u needs shape [103, 36] but the engine's profile allows at most "
         "[102, 36] (max tokens ~ 100); rebuild the engine m.engine with a larger --max-tokens",
         "a table over the profile");
  throws([&] { span::check_profile("m.engine", 100, s.profile, Shapes{{"feats", {2, 64}}}, 1); }, SPAN_ERR_PROFILE,
         "input feats has shape [2, 64], below the engine's profile minimum [3, 64]; rebuild the engine m.engine with a "
         "smaller --min-tokens",
         "a slide under the profile minimum");
  throws([&] { span::check_profile("m.engine", 100, s.profile, Shapes{{"feats", {50, 32}}}, 48); }, SPAN_ERR_MODEL,
         "input feats has shape [50, 32], the engine m.engine takes [rows, 64]; was it built from this model's export?",
         "a static dim that differs");
  throws([&] { span::check_profile("m.engine", 100, s.profile, Shapes{{"feats", {50}}}, 48); }, SPAN_ERR_MODEL,
         "input feats has shape [50], the engine m.engine takes [rows, 64]", "a rank that differs");
}

// ---- which file to open ---------------------------------------------------------------------------------

namespace fs = std::filesystem;

void touch(const fs::path& p, const std::string& text = "x") { std::ofstream(p, std::ios::binary) << text; }

std::string deploy_json(const std::string& target_backend, const std::string& engine, bool with_target = true) {
  return std::string(R"({"format": "span-deploy-model-dir", "format_version": 1, )") +
         (with_target ? R"("target": {"name": "jetson-fp16", "backend": ")" + target_backend + R"("}, )" : "") +
         R"("files": {"onnx": "model.onnx", "engine": )" + (engine.empty() ? "null" : "\"" + engine + "\"") +
         R"(, "encoder": null}, "plugin_library": {"ort": "libops.so", "trt": "libtrt.so"}, "metadata": {"attention": "plugin"}})";
}

void model_file_tests() {
  using span::resolve_model;
  const fs::path root = fs::absolute("span_selftest_models");
  fs::remove_all(root);
  fs::create_directories(root / "lone");
  touch(root / "lone" / "model.onnx");
  touch(root / "lone" / "model.engine");
  touch(root / "lone" / "model.bin");
  touch(root / "lone" / "model.bin.json", "{}");
  touch(root / "lone" / "other.onnx.json", "{}");
  touch(root / "lone" / "other.onnx");
  const std::string lone = (root / "lone").string();

  check(span::looks_like_engine(lone + "/model.engine") && span::looks_like_engine(lone + "/x.PLAN") &&
            span::looks_like_engine(lone + "/model.bin") && !span::looks_like_engine(lone + "/model.onnx") &&
            !span::looks_like_engine(lone + "/other.onnx"),
        "looks_like_engine: .engine / .plan / a sidecar, never .onnx");
  span::ModelFile m = resolve_model(lone + "/model.engine", "", false);
  check(m.backend == "trt" && m.file == lone + "/model.engine" && m.folder == lone && !m.directory, "an .engine: trt");
  check(resolve_model(lone + "/model.bin", "auto", true).backend == "trt", "a file with a sidecar: trt");
  check(resolve_model(lone + "/model.onnx", "auto", true).backend == "ort", "an .onnx: ort");
  check(resolve_model(lone + "/model.bin", "trt", true).backend == "trt" && resolve_model(lone + "/other.onnx", "ort", true).backend == "ort",
        "explicit backends");
  throws([&] { resolve_model(lone + "/model.engine", "ort", true); }, SPAN_ERR_MODEL, "is a TensorRT engine; backend ort runs ONNX",
         "backend ort on an engine");
  throws([&] { resolve_model(lone + "/model.onnx", "trt", true); }, SPAN_ERR_MODEL,
         "is an ONNX export, not a TensorRT engine; build one with `span-deploy build-engine", "backend trt on an ONNX");
  throws([&] { resolve_model(lone + "/none.engine", "", true); }, SPAN_ERR_IO, "engine file not found", "a missing engine");
  throws([&] { resolve_model(lone + "/none.onnx", "", true); }, SPAN_ERR_IO, "model file not found", "a missing ONNX");
  throws([&] { resolve_model(lone + "/model.onnx", "tensorrt", true); }, SPAN_ERR_INVALID_ARGUMENT,
         "backend 'tensorrt': expected auto (or empty), ort or trt", "an unknown backend");
  throws([&] { resolve_model("", "", true); }, SPAN_ERR_INVALID_ARGUMENT, "no model path", "no path");

  const fs::path dir = root / "dir";
  fs::create_directories(dir);
  touch(dir / "model.onnx");
  touch(dir / "model.engine");
  const std::string d = dir.string();
  auto write = [&](const std::string& text) { touch(dir / "deploy.json", text); };
  write(deploy_json("trt", "model.engine"));
  m = resolve_model(d, "", true);
  check(m.backend == "trt" && m.file == (dir / "model.engine").string() && m.onnx == (dir / "model.onnx").string() &&
            m.directory && m.folder == d && m.plugin_name == "libtrt.so" && m.ops_name == "libops.so",
        "a trt target with an engine: the engine, plugin names from deploy.json");
  m = resolve_model(d, "", false);
  check(m.backend == "ort" && m.file == (dir / "model.onnx").string(), "... on a runtime without TensorRT: its ONNX");
  check(resolve_model(d, "trt", false).backend == "trt", "... backend trt asked for: the engine (the caller says it cannot)");
  check(resolve_model(d, "ort", true).backend == "ort", "... backend ort: its ONNX");
  write(deploy_json("trt", ""));
  check(resolve_model(d, "", true).backend == "ort", "a trt target without an engine: its ONNX (as before)");
  throws([&] { resolve_model(d, "trt", true); }, SPAN_ERR_MODEL,
         "target jetson-fp16 runs on TensorRT but the folder holds no engine yet; build it on the machine that will run "
         "it: `span-deploy build-engine " + d + "` (or open it with backend ort",
         "backend trt, no engine");
  write(deploy_json("ort", "model.engine"));
  check(resolve_model(d, "", true).backend == "ort" && resolve_model(d, "trt", true).backend == "trt",
        "an ort target with an engine: ONNX unless trt is asked for");
  write(deploy_json("ort", "", false));
  check(resolve_model(d, "", true).backend == "ort", "no target (older deploy.json): ONNX");
  throws([&] { resolve_model(d, "trt", true); }, SPAN_ERR_MODEL, "backend trt was asked for but the folder holds no engine",
         "no target, backend trt");
  write(deploy_json("trt", "../model.engine"));
  throws([&] { resolve_model(d, "", true); }, SPAN_ERR_MODEL, "files.engine must be a file name inside the folder",
         "an engine outside the folder");
  write(deploy_json("trt", "missing.engine"));
  throws([&] { resolve_model(d, "", true); }, SPAN_ERR_MODEL, "deploy.json names missing.engine (engine) but the folder has no",
         "a missing engine in a directory");
  fs::remove_all(root);
}

}  // namespace

int main() {
  json_tests();
  meta_tests();
  dump_tests();
  half_tests();
  sha_tests();
  sidecar_tests();
  profile_tests();
  model_file_tests();
  std::cout << g_checks - g_failures << " of " << g_checks << " checks passed\n";
  return g_failures ? 1 : 0;
}
