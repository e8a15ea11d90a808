#include "model.h"

#include <onnxruntime_cxx_api.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "errors.h"
#include "json.h"
#include "onnx_meta.h"

#if defined(_WIN32)
#include <windows.h>
#else
#include <dlfcn.h>
#endif

namespace fs = std::filesystem;

namespace span {

namespace {

constexpr const char* kMetadataKey = "span_deploy";
constexpr const char* kOpsLibrary = "libspan_deploy_ops.so";

// One ONNX Runtime environment per process, alive while some model uses it (it must outlive the
// sessions; a static one would be destroyed at exit before leaked sessions).
std::shared_ptr<Ort::Env> shared_env() {
  static std::mutex mu;
  static std::weak_ptr<Ort::Env> weak;
  std::lock_guard<std::mutex> lock(mu);
  std::shared_ptr<Ort::Env> env = weak.lock();
  if (!env) {
    env = std::make_shared<Ort::Env>(ORT_LOGGING_LEVEL_ERROR, "span_deploy");  // WARNING: benign shape notes
    weak = env;
  }
  return env;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(SPAN_ERR_IO, "cannot read " + p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The folder libspan_deploy_runtime itself was loaded from ("" when unknown).
fs::path own_dir() {
#if defined(_WIN32)
  HMODULE h = nullptr;
  if (!GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                          reinterpret_cast<LPCWSTR>(&own_dir), &h))
    return {};
  wchar_t buf[32768];
  const DWORD len = GetModuleFileNameW(h, buf, 32768);
  return len ? fs::path(std::wstring(buf, len)).parent_path() : fs::path();
#else
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void*>(&own_dir), &info) || !info.dli_fname) return {};
  return fs::path(info.dli_fname).parent_path();
#endif
}

std::string ops_library_for(const std::string& given, const fs::path& model_folder, const std::string& lib_name,
                            const std::string& model) {
  if (!given.empty()) {
    if (!fs::is_regular_file(given)) fail(SPAN_ERR_IO, "custom-op library not found: " + given);
    return given;
  }
  if (const char* env = std::getenv("SPAN_DEPLOY_OPS_LIB"); env && *env) {
    if (!fs::is_regular_file(env))
      fail(SPAN_ERR_IO, std::string("SPAN_DEPLOY_OPS_LIB=") + env + " does not name an existing file (the custom-op library)");
    return env;
  }
  std::vector<fs::path> tried;
  for (const fs::path& dir : {own_dir(), model_folder}) {
    if (dir.empty()) continue;
    const fs::path p = dir / lib_name;
    if (fs::is_regular_file(p)) return p.string();
    tried.push_back(p);
  }
  std::string where;
  for (const auto& p : tried) where += ", " + p.string();
  fail(SPAN_ERR_IO, model + " has attention=plugin and needs the custom-op library " + lib_name +
                        " (looked in $SPAN_DEPLOY_OPS_LIB" + where + "); pass its path (tools/build_native.sh builds it "
                        "into build/lib), or export the model with --attention portable");
}

const char* element_name(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "float64";
    default: return "another type";
  }
}

// numpy's float32 -> float16 (round to nearest even, subnormals, overflow to inf); NaN cannot reach here.
uint16_t to_half(float value) {
  uint32_t f;
  std::memcpy(&f, &value, 4);
  const uint16_t sign = static_cast<uint16_t>((f & 0x80000000u) >> 16);
  uint32_t exp = f & 0x7f800000u;
  if (exp >= 0x47800000u) {  // overflow, inf, nan
    if (exp == 0x7f800000u && (f & 0x007fffffu)) return static_cast<uint16_t>(sign | 0x7e00u);
    return static_cast<uint16_t>(sign | 0x7c00u);
  }
  if (exp <= 0x38000000u) {  // a subnormal half or zero
    if (exp < 0x33000000u) return sign;
    exp >>= 23;
    uint32_t sig = 0x00800000u + (f & 0x007fffffu);
    sig >>= (113 - exp);
    if (((sig & 0x00003fffu) != 0x00001000u) || (f & 0x000007ffu)) sig += 0x00001000u;
    return static_cast<uint16_t>(sign + (sig >> 13));
  }
  const uint16_t hexp = static_cast<uint16_t>((exp - 0x38000000u) >> 13);
  uint32_t sig = f & 0x007fffffu;
  if ((sig & 0x00003fffu) != 0x00001000u) sig += 0x00001000u;
  return static_cast<uint16_t>(sign + (static_cast<uint16_t>(sig >> 13) + hexp));
}

}  // namespace

struct Session {
  std::shared_ptr<Ort::Env> env;  // declared first: destroyed after the session
  std::unique_ptr<Ort::Session> session;
  Ort::MemoryInfo memory{nullptr};
  std::vector<std::string> input_names, output_names;
  std::vector<ONNXTensorElementDataType> input_types;
};

Config config_from_metadata(const std::string& metadata_json, const std::string& where, std::string* attention,
                            std::string* precision) {
  json::Value meta;
  const std::string damaged = where + ": its span-deploy metadata is damaged (not the JSON `span-deploy export` writes); "
                                      "re-export the model";
  try {
    meta = json::parse(metadata_json);
  } catch (const json::ParseError&) {
    fail(SPAN_ERR_MODEL, damaged);
  }
  const json::Value* cfg = meta.find("config");
  const json::Value* att = meta.find("attention");
  const json::Value* names = meta.find("input_names");
  if (!meta.is_object() || !cfg || !cfg->is_object() || !att || !att->is_string() ||
      (att->string != "plugin" && att->string != "portable") || !names || !names->is_array())
    fail(SPAN_ERR_MODEL, damaged);
  const json::Value* version = meta.find("rulebook_version");
  if (!version || !version->integral || version->integer != kRulebookVersion) {
    std::string v = "None";
    if (version && version->integral) v = std::to_string(version->integer);
    else if (version && version->is_string()) v = "'" + version->string + "'";
    fail(SPAN_ERR_MODEL, where + ": made for rulebook version " + v + ", this span-deploy builds version " +
                             std::to_string(kRulebookVersion) + "; re-export the model");
  }
  if (attention) *attention = att->string;
  if (precision) {
    const json::Value* p = meta.find("precision");
    *precision = p && p->is_string() ? p->string : "fp32";
  }
  try {
    return config_from_json(*cfg, where);
  } catch (const Error& e) {
    fail(SPAN_ERR_MODEL, where + ": the model config in its metadata is damaged (" + e.what() + "); re-export the model");
  }
}

std::unique_ptr<Model> open_model(const std::string& path_in, const std::string& ops_library, int threads) {
  if (path_in.empty()) fail(SPAN_ERR_INVALID_ARGUMENT, "no model path given");
  fs::path path(path_in);
  std::string ops_name = kOpsLibrary;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {  // a model directory (span_deploy/deploy/model_dir.py)
    const fs::path f = path / "deploy.json";
    if (!fs::is_regular_file(f))
      fail(SPAN_ERR_MODEL, path.string() + " is a folder but not a span-deploy model directory (no deploy.json); write "
                                           "one with `span-deploy export --target NAME -o DIR`, or pass a model file");
    json::Value doc;
    try {
      doc = json::parse(read_text(f));
    } catch (const json::ParseError& e) {
      fail(SPAN_ERR_MODEL, f.string() + ": not readable JSON (" + e.what() + "); re-export the model directory");
    }
    const json::Value* format = doc.find("format");
    if (!format || !format->is_string() || format->string != "span-deploy-model-dir")
      fail(SPAN_ERR_MODEL, f.string() + ": not a span-deploy deploy.json (format 'span-deploy-model-dir' missing)");
    const json::Value* fv = doc.find("format_version");
    if (!fv || !fv->integral || fv->integer != 1)
      fail(SPAN_ERR_MODEL, f.string() + ": deploy.json format version " +
                               (fv && fv->integral ? std::to_string(fv->integer) : std::string("?")) +
                               "; this span-deploy reads version 1; re-export the model directory");
    const json::Value* files = doc.find("files");
    const json::Value* onnx = files ? files->find("onnx") : nullptr;
    const json::Value* meta = doc.find("metadata");
    const json::Value* att = meta ? meta->find("attention") : nullptr;
    if (!files || !files->is_object() || !onnx || !onnx->is_string() || !meta || !meta->is_object() || !att ||
        !att->is_string() || (att->string != "plugin" && att->string != "portable"))
      fail(SPAN_ERR_MODEL, f.string() + ": deploy.json is damaged (files / metadata missing); re-export the model directory");
    const std::string& name = onnx->string;
    if (name.empty() || name == "." || name == ".." || name.find_first_of("/\\") != std::string::npos)
      fail(SPAN_ERR_MODEL, f.string() + ": files.onnx must be a file name inside the folder, not '" + name + "'");
    if (!fs::is_regular_file(path / name))
      fail(SPAN_ERR_MODEL, path.string() + ": deploy.json names " + name + " (onnx) but the folder has no such file; "
                                           "copy the whole folder, or re-export it");
    if (const json::Value* libs = doc.find("plugin_library"))
      if (const json::Value* ort = libs->find("ort"); ort && ort->is_string() && !ort->string.empty() &&
                                                     ort->string.find_first_of("/\\") == std::string::npos)
        ops_name = ort->string;
    path /= name;
  } else if (!fs::is_regular_file(path, ec)) {
    fail(SPAN_ERR_IO, "model file not found: " + path.string());
  }

  auto m = std::make_unique<Model>();
  m->onnx_path = path.string();
  bool found = false;
  for (auto& kv : read_onnx_metadata(m->onnx_path)) {
    if (kv.first == kMetadataKey) {
      m->metadata_json = kv.second;  // the last one wins, as onnx's metadata_props loop
      found = true;
    }
  }
  if (!found)
    fail(SPAN_ERR_MODEL, m->onnx_path + ": not a span-deploy export (no 'span_deploy' metadata); export it with "
                                        "`span-deploy export`");
  m->cfg = config_from_metadata(m->metadata_json, m->onnx_path, &m->attention, &m->precision);

  auto s = std::make_shared<Session>();
  try {
    s->env = shared_env();
    Ort::SessionOptions opts;
    if (threads > 0) opts.SetIntraOpNumThreads(threads);
    if (m->attention == "plugin") {
      const std::string lib = ops_library_for(ops_library, path.parent_path(), ops_name, m->onnx_path);
      try {
        opts.RegisterCustomOpsLibrary(fs::path(lib).c_str());
      } catch (const Ort::Exception& e) {
        fail(SPAN_ERR_RUNTIME, "the custom-op library " + lib + " could not be loaded: " + e.what());
      }
    }
    s->session = std::make_unique<Ort::Session>(*s->env, path.c_str(), opts);
    s->memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    Ort::AllocatorWithDefaultOptions alloc;
    for (size_t i = 0; i < s->session->GetInputCount(); ++i) {
      s->input_names.emplace_back(s->session->GetInputNameAllocated(i, alloc).get());
      s->input_types.push_back(s->session->GetInputTypeInfo(i).GetTensorTypeAndShapeInfo().GetElementType());
    }
    for (size_t i = 0; i < s->session->GetOutputCount(); ++i)
      s->output_names.emplace_back(s->session->GetOutputNameAllocated(i, alloc).get());
  } catch (const Ort::Exception& e) {
    fail(SPAN_ERR_RUNTIME, m->onnx_path + ": ONNX Runtime could not load the model: " + e.what());
  }

  // The session must take the contract's inputs (io.engine_inputs) and give its outputs.
  const std::vector<std::string> contract = engine_input_names(m->cfg);
  for (size_t i = 0; i < s->input_names.size(); ++i) {
    const std::string& name = s->input_names[i];
    if (std::find(contract.begin(), contract.end(), name) == contract.end())
      fail(SPAN_ERR_MODEL, m->onnx_path + ": the model takes input '" + name + "', which the rulebook (version " +
                               std::to_string(kRulebookVersion) + ") does not produce for its config; re-export it "
                               "with this span-deploy");
    const ONNXTensorElementDataType want =
        name == "feats" ? (s->input_types[i] == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16
                                                                                      : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
        : name.size() > 7 && name.compare(name.size() - 7, 7, "_coords") == 0 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT
                                                                              : ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
    if (s->input_types[i] != want)
      fail(SPAN_ERR_MODEL, m->onnx_path + ": input '" + name + "' is " + element_name(s->input_types[i]) +
                               " in the model, the contract says " + element_name(want) + "; re-export it");
  }
  std::string missing;
  for (const std::string& name : engine_output_names(m->cfg))
    if (std::find(s->output_names.begin(), s->output_names.end(), name) == s->output_names.end())
      missing += (missing.empty() ? "'" : ", '") + name + "'";
  if (!missing.empty())
    fail(SPAN_ERR_MODEL, m->onnx_path + ": the model has no output(s) [" + missing + "]; was it exported by this "
                                        "span-deploy for this config? Re-export it with `span-deploy export`");
  m->session = std::move(s);
  return m;
}

namespace {

Tensor f32_tensor(std::string name, std::vector<int64_t> shape, std::vector<float> v) {
  Tensor t;
  t.name = std::move(name);
  t.dtype = SPAN_DTYPE_FLOAT32;
  t.shape = std::move(shape);
  t.f32 = std::move(v);
  return t;
}

template <typename C>
std::vector<Tensor> run(const Model& m, const float* feats, int64_t n, int64_t f, const C* coords) {
  using clock = std::chrono::steady_clock;
  const Config& cfg = m.cfg;
  if (n < 0 || f < 0) fail(SPAN_ERR_INVALID_ARGUMENT, "negative patch count or feature width");
  if (n > 0 && (!feats || !coords)) fail(SPAN_ERR_INVALID_ARGUMENT, "feats and coords must not be NULL");
  if (n > 0 && f != cfg.feat_dim)
    fail(SPAN_ERR_FEATURES, "features are " + std::to_string(f) + "-d but the model expects " +
                                std::to_string(cfg.feat_dim) + "-d; use features from the encoder the model was "
                                "trained on (check features_variant)");
  int64_t bad_rows = 0, first_bad = -1;
  for (int64_t i = 0; i < n; ++i) {
    bool bad = false;
    for (int64_t j = 0; j < f && !bad; ++j) bad = !std::isfinite(feats[i * f + j]);
    if (bad && first_bad < 0) first_bad = i;
    bad_rows += bad;
  }
  if (bad_rows)
    fail(SPAN_ERR_FEATURES, std::to_string(bad_rows) + " patch(es) have NaN/Inf features (first: row " +
                                std::to_string(first_bad) + "); re-extract or drop those patches");

  const auto t0 = clock::now();
  const Rulebook rb = build_rulebook(coords, n, cfg);
  std::vector<Tensor> tables = engine_input_tables(rb, cfg);
  const Session& s = *m.session;
  const int64_t n0 = rb.stages[0].size();
  const std::vector<int64_t> rows = rb.patch_rows();

  // feats: sorted rows with the zero pad rows (Rulebook.pad_features), in the model's precision
  const bool half = !s.input_types.empty() &&
                    std::find(s.input_types.begin(), s.input_types.end(), ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16) != s.input_types.end();
  std::vector<float> feats32;
  std::vector<uint16_t> feats16;
  if (half) feats16.assign(static_cast<size_t>(n0 * f), 0);
  else feats32.assign(static_cast<size_t>(n0 * f), 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    const float* src = feats + i * f;
    const size_t dst = static_cast<size_t>(rows[static_cast<size_t>(i)] * f);
    if (half) for (int64_t j = 0; j < f; ++j) feats16[dst + static_cast<size_t>(j)] = to_half(src[j]);
    else std::memcpy(&feats32[dst], src, static_cast<size_t>(f) * sizeof(float));
  }

  static int32_t dummy[1] = {0};
  std::vector<Ort::Value> values;
  std::vector<const char*> in_names, out_names;
  const int64_t feat_shape[2] = {n0, f};
  try {
    for (const std::string& name : s.input_names) {
      in_names.push_back(name.c_str());
      if (name == "feats") {
        if (half)
          values.push_back(Ort::Value::CreateTensor(s.memory.GetConst(), feats16.data(), feats16.size() * 2, feat_shape, 2,
                                                    ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16));
        else
          values.push_back(Ort::Value::CreateTensor(s.memory.GetConst(), feats32.data(), feats32.size() * 4, feat_shape, 2,
                                                    ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT));
        continue;
      }
      auto it = std::find_if(tables.begin(), tables.end(), [&](const Tensor& t) { return t.name == name; });
      if (it == tables.end()) fail(SPAN_ERR_MODEL, "the rulebook does not produce model input '" + name + "'");
      const bool fl = it->dtype == SPAN_DTYPE_FLOAT32;
      void* data = const_cast<void*>(it->data());
      if (!data) data = dummy;
      values.push_back(Ort::Value::CreateTensor(s.memory.GetConst(), data, static_cast<size_t>(it->elements()) * 4,
                                                it->shape.data(), it->shape.size(),
                                                fl ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT : ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32));
    }
    for (const std::string& name : s.output_names) out_names.push_back(name.c_str());
  } catch (const Ort::Exception& e) {
    fail(SPAN_ERR_RUNTIME, std::string("ONNX Runtime could not take the inputs: ") + e.what());
  }
  const auto t1 = clock::now();
  std::vector<Ort::Value> outs;
  try {
    // Session::Run is thread-safe (ONNX Runtime's contract); the C++ wrapper's method is non-const only
    // because it wraps a C handle.
    outs = const_cast<Ort::Session&>(*s.session).Run(Ort::RunOptions{nullptr}, in_names.data(), values.data(),
                                                      values.size(), out_names.data(), out_names.size());
  } catch (const Ort::Exception& e) {
    fail(SPAN_ERR_RUNTIME, m.onnx_path + ": ONNX Runtime failed to run the model: " + e.what());
  }
  const auto t2 = clock::now();

  // backends/result.py to_result: read by name, patch rows back into the input order
  auto output = [&](const std::string& name, std::vector<int64_t>* shape) -> const float* {
    const size_t i = static_cast<size_t>(std::find(s.output_names.begin(), s.output_names.end(), name) - s.output_names.begin());
    const auto info = outs.at(i).GetTensorTypeAndShapeInfo();
    if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
      fail(SPAN_ERR_MODEL, "output '" + name + "' is " + element_name(info.GetElementType()) + ", not float32");
    *shape = info.GetShape();
    return outs[i].GetTensorData<float>();
  };
  auto numel = [](const std::vector<int64_t>& shape) {
    int64_t k = 1;
    for (int64_t d : shape) k *= d;
    return k;
  };
  auto flat = [&](const std::string& name, const std::string& as) {
    std::vector<int64_t> shape;
    const float* p = output(name, &shape);
    const int64_t k = numel(shape);
    return f32_tensor(as, {k}, std::vector<float>(p, p + k));
  };
  auto per_patch = [&](const std::string& name, const std::string& as, bool with_dim) {
    std::vector<int64_t> shape;
    const float* p = output(name, &shape);
    const int64_t k = numel(shape);
    const int64_t d = n0 > 0 ? k / n0 : 0;
    if (shape.empty() || shape[0] != n0 || (!with_dim && k != n0))
      fail(SPAN_ERR_MODEL, "output '" + name + "' has " + std::to_string(shape.empty() ? 0 : shape[0]) +
                               " rows, the rulebook has " + std::to_string(n0) + " stage-0 rows");
    std::vector<float> v(static_cast<size_t>(n * d));
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(&v[static_cast<size_t>(i * d)], p + rows[static_cast<size_t>(i)] * d, static_cast<size_t>(d) * sizeof(float));
    return with_dim ? f32_tensor(as, {n, d}, std::move(v)) : f32_tensor(as, {n}, std::move(v));
  };

  std::vector<Tensor> res;
  if (cfg.task == "segmentation") {
    Tensor z = per_patch("patch_logits", "patch_logits", false);
    std::vector<float> prob(z.f32.size());
    for (size_t i = 0; i < prob.size(); ++i) prob[i] = 1.0f / (1.0f + std::exp(-z.f32[i]));  // float32 sigmoid
    res.push_back(std::move(z));
    res.push_back(f32_tensor("patch_scores", {n}, std::move(prob)));
    res.push_back(flat("slide_embedding", "slide_embedding"));
  } else {
    res.push_back(flat("logits", "logits"));
    res.push_back(flat("slide_embedding", "slide_embedding"));
  }
  for (int st = 0; st < cfg.num_stages(); ++st) {
    const std::string name = "stage" + std::to_string(st) + "_globals";
    std::vector<int64_t> shape;
    const float* p = output(name, &shape);
    const int64_t k = numel(shape);
    res.push_back(f32_tensor(name, shape, std::vector<float>(p, p + k)));
  }
  res.push_back(per_patch("stage0_features", "patch_features", true));
  if (cfg.task != "segmentation") res.push_back(per_patch("patch_scores", "patch_scores", false));
  Tensor sizes;
  sizes.name = "stage_sizes";
  sizes.dtype = SPAN_DTYPE_INT64;
  for (const Stage& st : rb.stages) sizes.i64.push_back(st.size());
  sizes.shape = {static_cast<int64_t>(sizes.i64.size())};
  res.push_back(std::move(sizes));
  Tensor timings;
  timings.name = "timings";
  timings.dtype = SPAN_DTYPE_FLOAT64;
  const auto secs = [](clock::duration d) { return std::chrono::duration<double>(d).count(); };
  timings.f64 = {secs(t1 - t0), secs(t2 - t1), secs(t2 - t0)};
  timings.shape = {3};
  res.push_back(std::move(timings));
  return res;
}

}  // namespace

std::vector<Tensor> run_model(const Model& m, const float* feats, int64_t n, int64_t f, const int64_t* coords) {
  return run(m, feats, n, f, coords);
}

std::vector<Tensor> run_model(const Model& m, const float* feats, int64_t n, int64_t f, const double* coords) {
  return run(m, feats, n, f, coords);
}

}  // namespace span
