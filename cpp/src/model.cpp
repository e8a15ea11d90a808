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

#include "engine_meta.h"
#include "errors.h"
#include "half.h"
#include "json.h"
#include "model_files.h"
#include "onnx_meta.h"
#ifdef SPAN_DEPLOY_WITH_TENSORRT
#include "trt_backend.h"
#endif

#if defined(_WIN32)
#include <windows.h>
#else
#include <dlfcn.h>
#endif

namespace fs = std::filesystem;

namespace span {

namespace {

constexpr const char* kMetadataKey = "span_deploy";

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

// A library the model needs: `given`, else $ENV, else next to this runtime, else in the model's folder.
struct LibrarySearch {
  const char* env;         // SPAN_DEPLOY_OPS_LIB / SPAN_DEPLOY_TRT_PLUGIN_LIB
  const char* what;        // "custom-op library" / "TensorRT plugin library"
  std::string otherwise;   // the end of the message when it is nowhere
};

std::string library_for(const std::string& given, const fs::path& model_folder, const std::string& lib_name,
                        const std::string& model, const LibrarySearch& how) {
  if (!given.empty()) {
    if (!fs::is_regular_file(given)) fail(SPAN_ERR_IO, std::string(how.what) + " not found: " + given);
    return given;
  }
  if (const char* env = std::getenv(how.env); env && *env) {
    if (!fs::is_regular_file(env))
      fail(SPAN_ERR_IO, std::string(how.env) + "=" + env + " does not name an existing file (the " + how.what + ")");
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
  fail(SPAN_ERR_IO, model + " has attention=plugin and needs the " + how.what + " " + lib_name + " (looked in $" +
                        how.env + where + "); " + how.otherwise);
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

}  // namespace

struct Session {
  std::shared_ptr<Ort::Env> env;  // declared first: destroyed after the session
  std::unique_ptr<Ort::Session> session;
  Ort::MemoryInfo memory{nullptr};
  std::vector<std::string> input_names, output_names;
  std::vector<ONNXTensorElementDataType> input_types;
};

#ifdef SPAN_DEPLOY_WITH_TENSORRT
const char* runtime_backends() { return "ort,trt"; }
#else
const char* runtime_backends() { return "ort"; }
#endif

Config config_from_metadata(const json::Value& meta, const std::string& where, std::string* attention,
                            std::string* precision, const std::string& redo) {
  const std::string damaged = where + ": its span-deploy metadata is damaged (not the JSON `span-deploy export` writes); " + redo;
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
                             std::to_string(kRulebookVersion) + "; " + redo);
  }
  if (attention) *attention = att->string;
  if (precision) {
    const json::Value* p = meta.find("precision");
    *precision = p && p->is_string() ? p->string : "fp32";
  }
  try {
    return config_from_json(*cfg, where);
  } catch (const Error& e) {
    fail(SPAN_ERR_MODEL, where + ": the model config in its metadata is damaged (" + e.what() + "); " + redo);
  }
}

Config config_from_metadata(const std::string& metadata_json, const std::string& where, std::string* attention,
                            std::string* precision) {
  json::Value meta;
  try {
    meta = json::parse(metadata_json);
  } catch (const json::ParseError&) {
    fail(SPAN_ERR_MODEL, where + ": its span-deploy metadata is damaged (not the JSON `span-deploy export` writes); "
                                 "re-export the model");
  }
  return config_from_metadata(meta, where, attention, precision);
}

namespace {

bool ends_with(const std::string& s, const char* tail) {
  const size_t n = std::strlen(tail);
  return s.size() >= n && s.compare(s.size() - n, n, tail) == 0;
}

// The graph (ONNX session or engine) must take the contract's inputs (io.engine_inputs) in their types
// and give its outputs: `inputs` (name, element type name), `outputs` (names). `redo` says what to do.
void check_contract(const Model& m, const std::string& where, const std::vector<std::pair<std::string, std::string>>& inputs,
                    const std::vector<std::string>& outputs, const std::string& redo) {
  const std::vector<std::string> contract = engine_input_names(m.cfg);
  for (const auto& in : inputs) {
    const std::string& name = in.first;
    if (std::find(contract.begin(), contract.end(), name) == contract.end())
      fail(SPAN_ERR_MODEL, where + ": the model takes input '" + name + "', which the rulebook (version " +
                               std::to_string(kRulebookVersion) + ") does not produce for its config; " + redo);
    const std::string want = name == "feats" ? (in.second == "float16" ? "float16" : "float32")
                             : ends_with(name, "_coords") ? "float32"
                                                          : "int32";
    if (in.second != want)
      fail(SPAN_ERR_MODEL, where + ": input '" + name + "' is " + in.second + " in the model, the contract says " + want +
                               "; " + redo);
  }
  std::string missing;
  for (const std::string& name : engine_output_names(m.cfg))
    if (std::find(outputs.begin(), outputs.end(), name) == outputs.end()) missing += (missing.empty() ? "'" : ", '") + name + "'";
  if (!missing.empty())
    fail(SPAN_ERR_MODEL, where + ": the model has no output(s) [" + missing + "] (was it exported by this span-deploy "
                                 "for this config?); " + redo);
}

const LibrarySearch kOpsSearch{"SPAN_DEPLOY_OPS_LIB", "custom-op library",
                               "pass its path (tools/build_native.sh builds it into build/lib), or export the model "
                               "with --attention portable"};
const LibrarySearch kPluginSearch{"SPAN_DEPLOY_TRT_PLUGIN_LIB", "TensorRT plugin library",
                                  "pass its path (the plugin_library option, span_infer --plugin-lib; "
                                  "tools/build_native.sh builds it into build/lib with the TensorRT headers), or "
                                  "build the engine from a --attention portable export"};

std::unique_ptr<Model> open_onnx(const ModelFile& mf, const OpenOptions& o) {
  const fs::path path(mf.file);
  auto m = std::make_unique<Model>();
  m->backend = "ort";
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
    if (o.threads > 0) opts.SetIntraOpNumThreads(o.threads);
    if (m->attention == "plugin") {
      const std::string lib = library_for(o.ops_library, path.parent_path(), mf.ops_name, m->onnx_path, kOpsSearch);
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
  std::vector<std::pair<std::string, std::string>> inputs;
  for (size_t i = 0; i < s->input_names.size(); ++i) inputs.emplace_back(s->input_names[i], element_name(s->input_types[i]));
  check_contract(*m, m->onnx_path, inputs, s->output_names, "re-export it with this span-deploy (`span-deploy export`)");
  m->half_feats = std::find(s->input_types.begin(), s->input_types.end(), ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16) !=
                  s->input_types.end();
  m->session = std::move(s);
  return m;
}

#ifdef SPAN_DEPLOY_WITH_TENSORRT
std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(SPAN_ERR_IO, "cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (!in.good() && !in.eof()) fail(SPAN_ERR_IO, "cannot read " + path);
  return ss.str();
}
#endif

std::unique_ptr<Model> open_engine(const ModelFile& mf, const OpenOptions& o) {
#ifndef SPAN_DEPLOY_WITH_TENSORRT
  (void)o;
  fail(SPAN_ERR_RUNTIME, mf.file + " is a TensorRT engine, but this span-deploy runtime was built without TensorRT; "
                                   "rebuild with TensorRT headers (and CUDA): tools/build_native.sh with TENSORRT_ROOT or "
                                   "TensorRT_INCLUDE_DIR set (-DSPAN_DEPLOY_WITH_TENSORRT=ON), or run the model's ONNX "
                                   "on ONNX Runtime" +
                                   (mf.directory ? " (open the model directory with backend ort: " + mf.onnx + ")"
                                                 : std::string(" (backend ort, the model.onnx it was built from)")));
#else
  const Sidecar side = read_sidecar(mf.file);
  auto m = std::make_unique<Model>();
  m->backend = "trt";
  m->onnx_path = mf.file;
  m->metadata_json = json::dump(side.meta);
  m->cfg = config_from_metadata(side.meta, side.path, &m->attention, &m->precision,
                                "re-export the model and rebuild the engine");
  if (!side.precision.empty()) m->precision = side.precision;
  TrtOpenArgs a;
  a.engine_path = mf.file;
  a.engine_bytes = read_bytes(mf.file);
  if (a.engine_bytes.empty()) fail(SPAN_ERR_MODEL, mf.file + ": the engine file is empty; rebuild it with `span-deploy build-engine`");
  check_sidecar_matches(side, mf.file, a.engine_bytes);
  a.built_with = side.tensorrt;
  a.needs_plugin = m->attention == "plugin";
  const std::string given = o.plugin_library, folder = mf.folder, name = mf.plugin_name, engine = mf.file;
  a.find_plugin = [given, folder, name, engine] { return library_for(given, folder, name, engine, kPluginSearch); };
  a.max_tokens = side.max_tokens;
  a.device = o.device;
  a.contexts = o.trt_contexts;
  m->trt = trt_open(a);
  std::vector<std::pair<std::string, std::string>> inputs;
  std::vector<std::string> outputs;
  for (const TrtTensorInfo& t : trt_tensors(*m->trt)) {
    if (t.input) inputs.emplace_back(t.name, t.dtype);
    else outputs.push_back(t.name);
  }
  check_contract(*m, mf.file, inputs, outputs, "re-export the model and rebuild the engine");
  for (const auto& in : inputs) m->half_feats = m->half_feats || (in.first == "feats" && in.second == "float16");
  return m;
#endif
}

}  // namespace

std::unique_ptr<Model> open_model(const std::string& path, const OpenOptions& options) {
  if (options.threads < 0) fail(SPAN_ERR_INVALID_ARGUMENT, "threads must be >= 0 (0: ONNX Runtime's default)");
  if (options.device < 0) fail(SPAN_ERR_INVALID_ARGUMENT, "device must be >= 0 (a CUDA device ordinal)");
  if (options.trt_contexts < 0) fail(SPAN_ERR_INVALID_ARGUMENT, "trt_contexts must be >= 0 (0: one)");
  #ifdef SPAN_DEPLOY_WITH_TENSORRT
  const ModelFile mf = resolve_model(path, options.backend, true);
#else
  const ModelFile mf = resolve_model(path, options.backend, false);
#endif
  return mf.backend == "trt" ? open_engine(mf, options) : open_onnx(mf, options);
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

// A backend's outputs, looked up by name: float32 data and its shape (valid while the backend's
// result lives).
struct HostOutput {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;
};

// The rulebook's engine inputs of one slide: every table but feats, and feats (sorted rows with the
// zero pad rows, Rulebook.pad_features) in float32.
struct Inputs {
  Rulebook rb;
  std::vector<Tensor> tables;
  std::vector<float> feats;
  int64_t n0 = 0;
  std::vector<int64_t> rows;
};

template <typename C>
Inputs prepare(const Model& m, const float* feats, int64_t n, int64_t f, const C* coords) {
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
  Inputs in;
  in.rb = build_rulebook(coords, n, cfg);
  in.tables = engine_input_tables(in.rb, cfg);
  in.n0 = in.rb.stages[0].size();
  in.rows = in.rb.patch_rows();
  in.feats.assign(static_cast<size_t>(in.n0 * f), 0.0f);
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(&in.feats[static_cast<size_t>(in.rows[static_cast<size_t>(i)] * f)], feats + i * f,
                static_cast<size_t>(f) * sizeof(float));
  return in;
}

// ONNX Runtime: the session's outputs (kept alive in `keep`).
std::vector<HostOutput> run_ort(const Model& m, const Inputs& in, int64_t f, std::vector<Ort::Value>* keep) {
  const Session& s = *m.session;
  std::vector<uint16_t> feats16;
  if (m.half_feats) {
    feats16.resize(in.feats.size());
    for (size_t i = 0; i < in.feats.size(); ++i) feats16[i] = to_half(in.feats[i]);
  }
  static int32_t dummy[1] = {0};
  std::vector<Ort::Value> values;
  std::vector<const char*> in_names, out_names;
  const int64_t feat_shape[2] = {in.n0, f};
  try {
    for (const std::string& name : s.input_names) {
      in_names.push_back(name.c_str());
      if (name == "feats") {
        if (m.half_feats)
          values.push_back(Ort::Value::CreateTensor(s.memory.GetConst(), feats16.data(), feats16.size() * 2, feat_shape, 2,
                                                    ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16));
        else
          values.push_back(Ort::Value::CreateTensor(s.memory.GetConst(), const_cast<float*>(in.feats.data()),
                                                    in.feats.size() * 4, feat_shape, 2, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT));
        continue;
      }
      auto it = std::find_if(in.tables.begin(), in.tables.end(), [&](const Tensor& t) { return t.name == name; });
      if (it == in.tables.end()) fail(SPAN_ERR_MODEL, "the rulebook does not produce model input '" + name + "'");
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
  try {
    // Session::Run is thread-safe (ONNX Runtime's contract); the C++ wrapper's method is non-const only
    // because it wraps a C handle.
    *keep = const_cast<Ort::Session&>(*s.session).Run(Ort::RunOptions{nullptr}, in_names.data(), values.data(),
                                                       values.size(), out_names.data(), out_names.size());
  } catch (const Ort::Exception& e) {
    fail(SPAN_ERR_RUNTIME, m.onnx_path + ": ONNX Runtime failed to run the model: " + e.what());
  }
  std::vector<HostOutput> outs;
  for (size_t i = 0; i < s.output_names.size() && i < keep->size(); ++i) {
    const auto info = (*keep)[i].GetTensorTypeAndShapeInfo();
    if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
      fail(SPAN_ERR_MODEL, "output '" + s.output_names[i] + "' is " + element_name(info.GetElementType()) + ", not float32");
    outs.push_back({s.output_names[i], info.GetShape(), (*keep)[i].GetTensorData<float>()});
  }
  return outs;
}

#ifdef SPAN_DEPLOY_WITH_TENSORRT
// TensorRT: the slide must fit the engine's profile; outputs converted to float32 (kept in `keep`).
std::vector<HostOutput> run_trt(const Model& m, const Inputs& in, int64_t f, int64_t n, std::vector<TrtOutput>* keep) {
  std::vector<TrtInput> inputs;
  inputs.push_back({"feats", SPAN_DTYPE_FLOAT32, in.feats.data(), {in.n0, f}});
  for (const Tensor& t : in.tables) inputs.push_back({t.name, t.dtype, t.data(), t.shape});
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  for (const TrtInput& t : inputs) shapes.emplace_back(t.name, t.shape);
  check_profile(m.onnx_path, trt_max_tokens(*m.trt), trt_profile(*m.trt), shapes, n);
  *keep = trt_run(*m.trt, inputs);
  std::vector<HostOutput> outs;
  for (const TrtOutput& o : *keep) outs.push_back({o.name, o.shape, o.data.data()});
  return outs;
}
#endif

template <typename C>
std::vector<Tensor> run(const Model& m, const float* feats, int64_t n, int64_t f, const C* coords) {
  using clock = std::chrono::steady_clock;
  const Config& cfg = m.cfg;
  const auto t0 = clock::now();
  const Inputs in = prepare(m, feats, n, f, coords);
  const Rulebook& rb = in.rb;
  const int64_t n0 = in.n0;
  const std::vector<int64_t>& rows = in.rows;
  const auto t1 = clock::now();
  std::vector<Ort::Value> ort_keep;
  std::vector<HostOutput> outs;
#ifdef SPAN_DEPLOY_WITH_TENSORRT
  std::vector<TrtOutput> trt_keep;
  if (m.backend == "trt") outs = run_trt(m, in, f, n, &trt_keep);
  else
#endif
    outs = run_ort(m, in, f, &ort_keep);
  const auto t2 = clock::now();

  // backends/result.py to_result: read by name, patch rows back into the input order
  auto output = [&](const std::string& name, std::vector<int64_t>* shape) -> const float* {
    auto it = std::find_if(outs.begin(), outs.end(), [&](const HostOutput& o) { return o.name == name; });
    if (it == outs.end()) fail(SPAN_ERR_MODEL, m.onnx_path + ": the model gave no output '" + name + "'");
    *shape = it->shape;
    return it->data;
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
