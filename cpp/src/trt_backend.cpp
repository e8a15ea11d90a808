// The TensorRT engine path of the C runtime (see trt_backend.h). TensorRT 10.3 - 11.x API only:
// IRuntime::deserializeCudaEngine(void const*, size_t), ICudaEngine::getIOTensorName / getTensorIOMode /
// getTensorDataType / getProfileShape, IExecutionContext::setInputShape / setTensorAddress / enqueueV3.
//
// libnvinfer is not linked: it is dlopen'ed (RTLD_GLOBAL, so a plugin library built headers-only
// resolves its nvinfer symbols against it) on the first engine opened, by the soname of the headers'
// major version, and only its extern "C" entry points are looked up (createInferRuntime_INTERNAL,
// getPluginRegistry, getInferLibVersion); everything else is virtual calls. So the runtime library
// loads, and runs ONNX models, on machines without TensorRT, and a missing libnvinfer is one clear
// error. CUDA is the static cudart (linked in; needs only the driver at run time).
#include "trt_backend.h"

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>

#include "errors.h"
#include "half.h"

#if defined(_WIN32)
#include <windows.h>
#else
#include <dlfcn.h>
#endif

namespace span {

namespace {

using namespace nvinfer1;

constexpr const char* kPluginName = "SparseWindowAttention";
constexpr const char* kPluginVersion = "1";
constexpr const char* kPluginNamespace = "span_deploy";

const std::string kHeaderVersion =
    std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." + std::to_string(NV_TENSORRT_PATCH);

#if defined(_WIN32)
const std::string kNvinferName = "nvinfer_" + std::to_string(NV_TENSORRT_MAJOR) + ".dll";
const std::string kNvinferPluginName = "nvinfer_plugin_" + std::to_string(NV_TENSORRT_MAJOR) + ".dll";
#else
const std::string kNvinferName = "libnvinfer.so." + std::to_string(NV_TENSORRT_MAJOR);
const std::string kNvinferPluginName = "libnvinfer_plugin.so." + std::to_string(NV_TENSORRT_MAJOR);
#endif

// ---- the logger: TensorRT's errors become part of the span_last_error message ----------------------

thread_local std::string t_trt_error;  // the last error TensorRT logged on this thread

class Logger final : public ILogger {
 public:
  Logger() {
    // SPAN_DEPLOY_TRT_LOG: none | error | warning (default) | info | verbose; what goes to stderr
    const char* env = std::getenv("SPAN_DEPLOY_TRT_LOG");
    const std::string v = env ? env : "warning";
    level_ = v == "none" ? -1 : v == "error" ? 1 : v == "info" ? 3 : v == "verbose" ? 4 : 2;
  }

  void log(Severity severity, AsciiChar const* msg) noexcept override {
    try {
      const int s = static_cast<int>(severity);  // kINTERNAL_ERROR 0, kERROR 1, kWARNING 2, kINFO 3, kVERBOSE 4
      if (s <= 1 && msg) t_trt_error = msg;
      if (s <= level_ && msg) {
        static const char* names[] = {"internal error", "error", "warning", "info", "verbose"};
        std::lock_guard<std::mutex> lock(mu_);
        std::fprintf(stderr, "span_deploy [TensorRT %s]: %s\n", s >= 0 && s <= 4 ? names[s] : "log", msg);
      }
    } catch (...) {  // nothing to report with
    }
  }

 private:
  int level_ = 2;
  std::mutex mu_;
};

// Process-wide and never destroyed: TensorRT may still log while the process exits.
Logger& logger() {
  static Logger* l = new Logger();
  return *l;
}

void clear_said() { t_trt_error.clear(); }

std::string said() {
  std::string s;
  s.swap(t_trt_error);
  return s.empty() ? std::string() : " (TensorRT: " + s + ")";
}

// ---- libnvinfer, loaded at run time -----------------------------------------------------------------

struct NvInfer {
  std::string path;
  void* (*create_runtime)(void*, int32_t) = nullptr;
  IPluginRegistry* (*plugin_registry)() = nullptr;
  int32_t version = 0;  // getInferLibVersion(): major * 10000 + minor * 100 + patch (TensorRT >= 10)
  std::string version_text() const {
    return std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." + std::to_string(version % 100);
  }
};

#if defined(_WIN32)
void* lib_open(const std::string& p) { return reinterpret_cast<void*>(LoadLibraryA(p.c_str())); }
void* lib_sym(void* h, const char* s) { return reinterpret_cast<void*>(GetProcAddress(static_cast<HMODULE>(h), s)); }
std::string lib_error() { return "LoadLibrary error " + std::to_string(GetLastError()); }
#else
void* lib_open(const std::string& p) { return dlopen(p.c_str(), RTLD_NOW | RTLD_GLOBAL); }
void* lib_sym(void* h, const char* s) { return dlsym(h, s); }
std::string lib_error() {
  const char* e = dlerror();
  return e ? e : "unknown dlopen error";
}
#endif

template <typename F>
F sym(void* h, const char* name) {
  return reinterpret_cast<F>(lib_sym(h, name));
}

const NvInfer& nvinfer() {
  static std::mutex mu;
  static NvInfer* lib = nullptr;  // loaded once, never unloaded (engines and plugins point into it)
  std::lock_guard<std::mutex> lock(mu);
  if (lib) return *lib;
  std::vector<std::string> candidates;
  const char* env = std::getenv("SPAN_DEPLOY_NVINFER_LIB");
  if (env && *env) {
    candidates.push_back(env);
  } else {
    candidates.push_back(kNvinferName);
#ifdef SPAN_DEPLOY_NVINFER_HINT
    candidates.push_back(SPAN_DEPLOY_NVINFER_HINT);  // where the build found libnvinfer
#endif
  }
  void* h = nullptr;
  std::string errors, path;
  for (const std::string& c : candidates) {
    h = lib_open(c);
    if (h) {
      path = c;
      break;
    }
    errors += (errors.empty() ? "" : "; ") + lib_error();
  }
  if (!h)
    fail(SPAN_ERR_RUNTIME,
         "TensorRT's library " + (env && *env ? std::string(env) + " ($SPAN_DEPLOY_NVINFER_LIB)" : kNvinferName) +
             " could not be loaded (" + errors + "). This span-deploy runtime was built with TensorRT " + kHeaderVersion +
             " headers and loads libnvinfer when an engine is opened: install TensorRT " +
             std::to_string(NV_TENSORRT_MAJOR) + ".x (JetPack ships it; elsewhere put its lib folder on LD_LIBRARY_PATH), "
             "or set SPAN_DEPLOY_NVINFER_LIB to the libnvinfer file; ONNX models run without it");
  auto l = std::make_unique<NvInfer>();
  l->path = path;
  l->create_runtime = sym<void* (*)(void*, int32_t)>(h, "createInferRuntime_INTERNAL");
  l->plugin_registry = sym<IPluginRegistry* (*)()>(h, "getPluginRegistry");
  auto get_version = sym<int32_t (*)()>(h, "getInferLibVersion");
  if (!l->create_runtime || !get_version)
    fail(SPAN_ERR_RUNTIME, path + " loaded but is not TensorRT's libnvinfer (no createInferRuntime_INTERNAL / "
                                  "getInferLibVersion)");
  l->version = get_version();
  if (l->version / 10000 != NV_TENSORRT_MAJOR)
    fail(SPAN_ERR_RUNTIME, path + " is TensorRT " + l->version_text() + ", but this span-deploy runtime was built with "
                                  "TensorRT " + kHeaderVersion + " headers; the major versions must match: rebuild the "
                                  "runtime against this TensorRT's headers, or load a TensorRT " +
                                  std::to_string(NV_TENSORRT_MAJOR) + ".x libnvinfer (SPAN_DEPLOY_NVINFER_LIB)");
  // TensorRT's own plugins, as the Python runner's init_libnvinfer_plugins (best effort: span-deploy
  // engines need only the span-deploy plugin).
  if (void* p = lib_open(kNvinferPluginName)) {
    if (auto init = sym<bool (*)(void*, char const*)>(p, "initLibNvInferPlugins"))
      init(static_cast<ILogger*>(&logger()), "");
  }
  lib = l.release();
  return *lib;
}

// ---- CUDA -------------------------------------------------------------------------------------------

void cuda_check(cudaError_t e, const std::string& what) {
  if (e == cudaSuccess) return;
  std::string hint;
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver)
    hint = "; TensorRT engines need an NVIDIA GPU and a driver for this CUDA version (run ONNX models on the CPU instead)";
  else if (e == cudaErrorMemoryAllocation)
    hint = "; the GPU is out of memory (smaller slides, fewer execution contexts, or a smaller --max-tokens engine)";
  fail(SPAN_ERR_RUNTIME, "CUDA: " + what + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")" + hint);
}

struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
};

// Grow-only (a later, smaller slide reuses the buffer); never null, so zero-sized tensors get an address.
void* ensure(DeviceBuffer& b, size_t bytes, const std::string& name) {
  bytes = std::max<size_t>(bytes, 256);
  if (b.bytes >= bytes) return b.ptr;
  if (b.ptr) cudaFree(b.ptr);
  b.ptr = nullptr;
  b.bytes = 0;
  cuda_check(cudaMalloc(&b.ptr, bytes), "cudaMalloc of " + std::to_string(bytes) + " bytes for " + name);
  b.bytes = bytes;
  return b.ptr;
}

const char* type_name(DataType t) {
  switch (t) {
    case DataType::kFLOAT: return "float32";
    case DataType::kHALF: return "float16";
    case DataType::kINT32: return "int32";
    case DataType::kINT64: return "int64";
    case DataType::kINT8: return "int8";
    case DataType::kUINT8: return "uint8";
    case DataType::kBOOL: return "bool";
    case DataType::kBF16: return "bfloat16";
    default: return "another TensorRT type";
  }
}

size_t type_size(DataType t) {
  switch (t) {
    case DataType::kFLOAT:
    case DataType::kINT32: return 4;
    case DataType::kHALF: return 2;
    case DataType::kINT64: return 8;
    default: return 0;
  }
}

std::string dims_text(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

std::vector<int64_t> to_vector(const Dims& d) {
  std::vector<int64_t> v;
  for (int32_t i = 0; i < d.nbDims; ++i) v.push_back(static_cast<int64_t>(d.d[i]));
  return v;
}

int64_t volume(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

struct IoTensor {
  std::string name;
  DataType type = DataType::kFLOAT;
};

// One execution context with its stream and buffers: used by one run at a time.
struct Slot {
  IExecutionContext* ctx = nullptr;
  cudaStream_t stream = nullptr;
  std::vector<DeviceBuffer> in_bufs, out_bufs;
  std::vector<std::vector<unsigned char>> staging, host_out;
};

void destroy(Slot& s) noexcept {
  if (s.stream) {
    cudaStreamSynchronize(s.stream);
    cudaStreamDestroy(s.stream);
  }
  for (DeviceBuffer& b : s.in_bufs) if (b.ptr) cudaFree(b.ptr);
  for (DeviceBuffer& b : s.out_bufs) if (b.ptr) cudaFree(b.ptr);
  delete s.ctx;  // before its engine
  s = Slot();
}

// The plugin libraries loaded into TensorRT's registry, per process (a second loadLibrary of the same
// file would register the creator twice, which TensorRT refuses).
std::mutex g_plugin_mu;
std::map<std::string, void*> g_plugins;

void register_plugin(const NvInfer& lib, IRuntime& runtime, const TrtOpenArgs& a) {
  IPluginRegistry* reg = lib.plugin_registry ? lib.plugin_registry() : &runtime.getPluginRegistry();
  if (!reg) fail(SPAN_ERR_RUNTIME, "TensorRT gave no plugin registry (getPluginRegistry)");
  std::lock_guard<std::mutex> lock(g_plugin_mu);
  if (reg->getCreator(kPluginName, kPluginVersion, kPluginNamespace)) return;  // already there (loaded, or linked in)
  std::string path = a.find_plugin ? a.find_plugin() : std::string();
  if (path.empty()) fail(SPAN_ERR_IO, a.engine_path + " has attention=plugin and needs the TensorRT plugin library");
  std::error_code ec;
  const std::filesystem::path canonical = std::filesystem::weakly_canonical(path, ec);
  if (!ec) path = canonical.string();  // one load per file, however it is named
  if (!g_plugins.count(path)) {
    clear_said();
    void* handle = reg->loadLibrary(path.c_str());
    if (!handle)
      fail(SPAN_ERR_RUNTIME, "TensorRT could not load the plugin library " + path + said() +
                                 "; usually a missing CUDA / TensorRT shared library, or a library built for another "
                                 "TensorRT major version (this runtime: " + kHeaderVersion + "): rebuild it with "
                                 "tools/build_native.sh");
    g_plugins[path] = handle;
  }
  if (!reg->getCreator(kPluginName, kPluginVersion, kPluginNamespace))
    fail(SPAN_ERR_RUNTIME, path + " loaded, but TensorRT has no plugin creator " + kPluginName + " version " +
                               kPluginVersion + " in namespace '" + kPluginNamespace + "'; the library is not a "
                               "span-deploy TensorRT plugin of this version (rebuild it with tools/build_native.sh)");
}

}  // namespace

struct TrtEngine {
  std::string path;
  int device = 0;
  int limit = 1;
  IRuntime* runtime = nullptr;
  ICudaEngine* engine = nullptr;
  std::vector<IoTensor> inputs, outputs;
  std::vector<TrtTensorInfo> info;
  ProfileShapes profile;
  int64_t max_tokens = -1;

  // the pool of execution contexts
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::unique_ptr<Slot>> slots;
  std::vector<Slot*> idle;

  ~TrtEngine() {
    cudaSetDevice(device);
    for (auto& s : slots) destroy(*s);
    delete engine;   // contexts first, then the engine, then its runtime
    delete runtime;
  }

  Slot* acquire() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return !idle.empty() || static_cast<int>(slots.size()) < limit; });
    if (!idle.empty()) {
      Slot* s = idle.back();
      idle.pop_back();
      return s;
    }
    auto s = std::make_unique<Slot>();
    clear_said();
    s->ctx = engine->createExecutionContext();
    if (!s->ctx)
      fail(SPAN_ERR_RUNTIME, path + ": TensorRT could not create an execution context" + said() +
                                 " (out of GPU memory? an engine built for another GPU?)");
    const cudaError_t e = cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
      destroy(*s);
      cuda_check(e, "cudaStreamCreate");
    }
    s->in_bufs.resize(inputs.size());
    s->staging.resize(inputs.size());
    s->out_bufs.resize(outputs.size());
    s->host_out.resize(outputs.size());
    slots.push_back(std::move(s));
    return slots.back().get();
  }

  void release(Slot* s) noexcept {
    cudaStreamSynchronize(s->stream);  // nothing of a failed run may still be in flight
    {
      std::lock_guard<std::mutex> lock(mu);
      idle.push_back(s);
    }
    cv.notify_one();
  }
};

std::string trt_header_version() { return kHeaderVersion; }

std::shared_ptr<TrtEngine> trt_open(const TrtOpenArgs& a) {
  const NvInfer& lib = nvinfer();
  int count = 0;
  cuda_check(cudaGetDeviceCount(&count), "looking for a CUDA device (cudaGetDeviceCount)");
  if (a.device < 0 || a.device >= count)
    fail(SPAN_ERR_INVALID_ARGUMENT, "CUDA device " + std::to_string(a.device) + " asked for, this machine has " +
                                        std::to_string(count) + " (0.." + std::to_string(count - 1) + ")");
  cuda_check(cudaSetDevice(a.device), "cudaSetDevice(" + std::to_string(a.device) + ")");

  auto e = std::make_shared<TrtEngine>();
  e->path = a.engine_path;
  e->device = a.device;
  e->limit = std::max(a.contexts, 1);
  clear_said();
  // as the headers' inline createInferRuntime(ILogger&) does
  e->runtime = static_cast<IRuntime*>(lib.create_runtime(static_cast<ILogger*>(&logger()), NV_TENSORRT_VERSION));
  if (!e->runtime)
    fail(SPAN_ERR_RUNTIME, "TensorRT (" + lib.path + ", " + lib.version_text() + ") could not create a runtime" + said());
  if (a.needs_plugin) register_plugin(lib, *e->runtime, a);
  clear_said();
  e->engine = e->runtime->deserializeCudaEngine(a.engine_bytes.data(), a.engine_bytes.size());
  if (!e->engine)
    fail(SPAN_ERR_RUNTIME, a.engine_path + ": TensorRT " + lib.version_text() + " could not deserialize the engine" +
                               said() + " (built with TensorRT " + (a.built_with.empty() ? "?" : a.built_with) +
                               "; engines are not portable across TensorRT versions or GPUs: rebuild it on this machine "
                               "with `span-deploy build-engine`)");
  if (e->engine->getNbOptimizationProfiles() < 1)
    fail(SPAN_ERR_MODEL, a.engine_path + ": the engine has no optimisation profile; rebuild it with `span-deploy build-engine`");
  for (int32_t i = 0; i < e->engine->getNbIOTensors(); ++i) {
    const char* name = e->engine->getIOTensorName(i);
    if (!name) continue;
    const TensorIOMode mode = e->engine->getTensorIOMode(name);
    if (mode != TensorIOMode::kINPUT && mode != TensorIOMode::kOUTPUT) continue;
    IoTensor t{name, e->engine->getTensorDataType(name)};
    TrtTensorInfo info{name, mode == TensorIOMode::kINPUT, type_name(t.type)};
    if (info.input) {
      std::vector<int64_t> lo = to_vector(e->engine->getProfileShape(name, 0, OptProfileSelector::kMIN));
      std::vector<int64_t> hi = to_vector(e->engine->getProfileShape(name, 0, OptProfileSelector::kMAX));
      if (hi.empty()) lo = hi = to_vector(e->engine->getTensorShape(name));  // a static input
      e->profile.min[name] = lo;
      e->profile.max[name] = hi;
      e->inputs.push_back(t);
    } else {
      e->outputs.push_back(t);
    }
    e->info.push_back(info);
  }
  e->max_tokens = a.max_tokens;
  if (e->max_tokens < 0) {
    auto f = e->profile.max.find("feats");
    if (f != e->profile.max.end() && !f->second.empty()) e->max_tokens = max_tokens_from_feats(f->second[0]);
  }
  e->release(e->acquire());  // the first context now: an engine that cannot run fails at open
  return e;
}

const std::vector<TrtTensorInfo>& trt_tensors(const TrtEngine& e) { return e.info; }
const ProfileShapes& trt_profile(const TrtEngine& e) { return e.profile; }
int64_t trt_max_tokens(const TrtEngine& e) { return e.max_tokens; }

std::vector<TrtOutput> trt_run(const TrtEngine& ce, const std::vector<TrtInput>& inputs) {
  TrtEngine& e = const_cast<TrtEngine&>(ce);  // the context pool is the only mutable part
  cuda_check(cudaSetDevice(e.device), "cudaSetDevice(" + std::to_string(e.device) + ")");
  Slot* s = e.acquire();
  struct Release {
    TrtEngine& e;
    Slot* s;
    ~Release() { e.release(s); }
  } release{e, s};

  for (size_t i = 0; i < e.inputs.size(); ++i) {
    const IoTensor& io = e.inputs[i];
    auto in = std::find_if(inputs.begin(), inputs.end(), [&](const TrtInput& t) { return t.name == io.name; });
    if (in == inputs.end()) fail(SPAN_ERR_MODEL, e.path + ": nothing gives the engine input '" + io.name + "'");
    if (in->shape.size() > static_cast<size_t>(Dims::MAX_DIMS))
      fail(SPAN_ERR_INTERNAL, "input " + io.name + " has too many dims");
    const int64_t count = volume(in->shape);
    const void* src = in->data;
    size_t bytes = static_cast<size_t>(count) * type_size(io.type);
    std::vector<unsigned char>& stage = s->staging[i];
    if (in->dtype == SPAN_DTYPE_FLOAT32 && io.type == DataType::kHALF) {
      stage.resize(bytes);
      uint16_t* dst = reinterpret_cast<uint16_t*>(stage.data());
      const float* f = static_cast<const float*>(in->data);
      for (int64_t k = 0; k < count; ++k) dst[k] = to_half(f[k]);
      src = stage.data();
    } else if (in->dtype == SPAN_DTYPE_INT32 && io.type == DataType::kINT64) {
      stage.resize(bytes);
      int64_t* dst = reinterpret_cast<int64_t*>(stage.data());
      const int32_t* v = static_cast<const int32_t*>(in->data);
      for (int64_t k = 0; k < count; ++k) dst[k] = v[k];
      src = stage.data();
    } else if (!((in->dtype == SPAN_DTYPE_FLOAT32 && io.type == DataType::kFLOAT) ||
                 (in->dtype == SPAN_DTYPE_INT32 && io.type == DataType::kINT32))) {
      fail(SPAN_ERR_MODEL, e.path + ": engine input '" + io.name + "' is " + type_name(io.type) + ", the rulebook gives " +
                               (in->dtype == SPAN_DTYPE_FLOAT32 ? "float32" : "int32") + "; rebuild the engine from "
                               "a span-deploy export");
    }
    void* dev = ensure(s->in_bufs[i], bytes, "input " + io.name);
    if (bytes && src)
      cuda_check(cudaMemcpyAsync(dev, src, bytes, cudaMemcpyHostToDevice, s->stream), "copying input " + io.name + " to the GPU");
    Dims d{};
    d.nbDims = static_cast<int32_t>(in->shape.size());
    for (size_t k = 0; k < in->shape.size(); ++k) d.d[k] = in->shape[k];
    clear_said();
    if (!s->ctx->setInputShape(io.name.c_str(), d))
      fail(SPAN_ERR_PROFILE, e.path + ": TensorRT refused shape " + dims_text(in->shape) + " for input " + io.name + said() +
                                 "; rebuild the engine with a token range that covers this slide (--min/--max-tokens)");
    if (!s->ctx->setTensorAddress(io.name.c_str(), dev))
      fail(SPAN_ERR_RUNTIME, e.path + ": TensorRT refused the device address of input " + io.name + said());
  }
  std::vector<TrtOutput> outs(e.outputs.size());
  for (size_t i = 0; i < e.outputs.size(); ++i) {
    const IoTensor& io = e.outputs[i];
    const Dims d = s->ctx->getTensorShape(io.name.c_str());
    outs[i].name = io.name;
    outs[i].shape = to_vector(d);
    if (d.nbDims < 0 || std::any_of(outs[i].shape.begin(), outs[i].shape.end(), [](int64_t x) { return x < 0; }))
      fail(SPAN_ERR_RUNTIME, e.path + ": output " + io.name + " has an unresolved shape " + dims_text(outs[i].shape) + said());
    if (io.type != DataType::kFLOAT && io.type != DataType::kHALF)
      fail(SPAN_ERR_MODEL, e.path + ": output '" + io.name + "' is " + type_name(io.type) + ", not float32 / float16");
    const size_t bytes = static_cast<size_t>(volume(outs[i].shape)) * type_size(io.type);
    void* dev = ensure(s->out_bufs[i], bytes, "output " + io.name);
    if (!s->ctx->setTensorAddress(io.name.c_str(), dev))
      fail(SPAN_ERR_RUNTIME, e.path + ": TensorRT refused the device address of output " + io.name + said());
    s->host_out[i].resize(bytes);
  }
  clear_said();
  if (!s->ctx->enqueueV3(s->stream)) fail(SPAN_ERR_RUNTIME, e.path + ": TensorRT could not run the engine (enqueueV3)" + said());
  for (size_t i = 0; i < e.outputs.size(); ++i)
    if (!s->host_out[i].empty())
      cuda_check(cudaMemcpyAsync(s->host_out[i].data(), s->out_bufs[i].ptr, s->host_out[i].size(), cudaMemcpyDeviceToHost,
                                 s->stream),
                 "copying output " + e.outputs[i].name + " from the GPU");
  cuda_check(cudaStreamSynchronize(s->stream), "running the engine (cudaStreamSynchronize)");
  for (size_t i = 0; i < e.outputs.size(); ++i) {
    const std::vector<unsigned char>& h = s->host_out[i];
    const size_t k = static_cast<size_t>(volume(outs[i].shape));
    outs[i].data.resize(k);
    if (e.outputs[i].type == DataType::kHALF) {
      const uint16_t* p = reinterpret_cast<const uint16_t*>(h.data());
      for (size_t j = 0; j < k; ++j) outs[i].data[j] = from_half(p[j]);
    } else if (k) {
      std::memcpy(outs[i].data.data(), h.data(), k * sizeof(float));
    }
  }
  return outs;
}

}  // namespace span
