// TensorRT IPluginV3 plugin: SparseWindowAttention / version 1 / namespace span_deploy
// (contract: ../op.yaml, ../README.md). enqueue launches the shared CUDA kernel on TensorRT's
// stream; the kernel takes no workspace and never synchronises, so engines with this plugin can
// be captured into CUDA graphs. All eight input shapes go through the shared check of kernels/
// (swa_check_shapes), and every input's type and format through check_types, in configurePlugin
// (build time), onShapeChange and enqueue (run time).
//
// The shared library exports getCreators / setLoggerFinder for IPluginRegistry::loadLibrary,
// trtexec --dynamicPlugins (not polygraphy --plugins: it only dlopens). Static registration is compiled only with
// SPAN_TRT_STATIC_REGISTRATION (the span_deploy_trt_plugin_static library, for applications that
// link the plugin in): in a library that is also loaded through getCreators, TensorRT rejects the
// second registration of the same creator. It does not use REGISTER_TENSORRT_PLUGIN, which
// registers under the empty namespace: the exported ONNX node asks for namespace "span_deploy".
// Errors go to the logger TensorRT hands over through setLoggerFinder (shared library) or to
// libnvinfer's global getLogger() (static library, which has no setLoggerFinder).
#include <NvInferRuntime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

#include "swa_kernels.h"

namespace {

using namespace nvinfer1;
using span_deploy::SwaHalf;
using span_deploy::SwaParams;

constexpr char const* kName = "SparseWindowAttention";
constexpr char const* kVersion = "1";
constexpr char const* kNamespace = "span_deploy";
constexpr int32_t kNumInputs = 8;  // q, k, v, win_a, pos_a, win_b, pos_b, bias

std::mutex g_logger_mutex;
#ifndef SPAN_TRT_STATIC_REGISTRATION
ILoggerFinder* g_logger_finder = nullptr;
#endif

void log_error(std::string const& msg) noexcept {
    try {
        std::string const line = std::string(kNamespace) + "::" + kName + ": " + msg;
        std::lock_guard<std::mutex> lock(g_logger_mutex);
#ifdef SPAN_TRT_STATIC_REGISTRATION
        ILogger* logger = getLogger();  // libnvinfer's global logger (extern "C", NvInferRuntime.h)
#else
        ILogger* logger = g_logger_finder ? g_logger_finder->findLogger() : nullptr;
#endif
        if (logger) logger->log(ILogger::Severity::kERROR, line.c_str());
    } catch (...) {  // std::bad_alloc or a failing mutex: nothing left to report with
    }
}

// Op-contract spelling (op.yaml) of TensorRT's DataType values, which are the same in every 10.x /
// 11.x header; values a header adds later print as their number.
std::string type_name(DataType t) {
    static char const* const names[] = {"float32", "float16", "int8", "int32", "bool",  "uint8",
                                        "fp8",     "bfloat16", "int64", "int4",  "fp4",  "e8m0"};
    int32_t const v = static_cast<int32_t>(t);
    if (v >= 0 && v < int32_t(sizeof(names) / sizeof(names[0]))) return names[v];
    return "DataType(" + std::to_string(v) + ")";
}

// The dtype / format rules of supportsFormatCombination for all eight inputs and the output, as a
// message naming the tensor: q float32 or float16; k, v and the output like q; the four window
// tables int32 (win_b / pos_b too when mode = 0: the ONNX schema types them int32 always); bias
// float32; every tensor linear.
std::string check_types(PluginTensorDesc const* in, PluginTensorDesc const& out) {
    DataType const t = in[0].type;
    for (int32_t i = 0; i <= kNumInputs; ++i) {
        PluginTensorDesc const& d = i < kNumInputs ? in[i] : out;
        std::string const what = i < kNumInputs ? std::string("input '") + span_deploy::swa_input_name(i) +
                                                      "' (#" + std::to_string(i) + ")"
                                                : std::string("output 'output' (#0)");
        if (d.format != TensorFormat::kLINEAR)
            return what + " has format " + std::to_string(static_cast<int32_t>(d.format)) +
                   ", expected TensorFormat::kLINEAR (row-major)";
        std::string expected;
        if (i == 0) {
            if (t != DataType::kFLOAT && t != DataType::kHALF) expected = "float32 or float16";
        } else if (i == 1 || i == 2 || i == kNumInputs) {
            if (d.type != t) expected = type_name(t) + ", the type of 'q'";
        } else if (i == 7) {
            if (d.type != DataType::kFLOAT) expected = "float32";
        } else if (d.type != DataType::kINT32) {
            expected = "int32";
        }
        if (!expected.empty()) return what + " has type " + type_name(d.type) + ", expected " + expected;
    }
    return {};
}

struct Attributes {
    int32_t num_heads = 0, head_dim = 0, window = 0, mode = 0;
    float scale = 0.f;
};

class SwaPlugin final : public IPluginV3, public IPluginV3OneCore, public IPluginV3OneBuild, public IPluginV3OneRuntime {
public:
    explicit SwaPlugin(Attributes const& a) : attrs_(a) { refresh_fields(); }
    SwaPlugin(SwaPlugin const& other) : IPluginV3(), IPluginV3OneCore(), IPluginV3OneBuild(), IPluginV3OneRuntime(),
                                        attrs_(other.attrs_) { refresh_fields(); }

    // IPluginV3
    IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override {
        switch (type) {
        case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
        case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
        case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
        }
        return nullptr;
    }
    IPluginV3* clone() noexcept override {
        try {
            return new SwaPlugin(*this);
        } catch (...) {
            return nullptr;
        }
    }

    // IPluginV3OneCore
    AsciiChar const* getPluginName() const noexcept override { return kName; }
    AsciiChar const* getPluginVersion() const noexcept override { return kVersion; }
    AsciiChar const* getPluginNamespace() const noexcept override { return kNamespace; }

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override { return 1; }

    int32_t getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                               int32_t nbInputs) const noexcept override {
        if (nbOutputs != 1 || nbInputs != kNumInputs) return -1;
        outputTypes[0] = inputTypes[0];
        return 0;
    }

    // (N, C): N = q's rows, C = num_heads * head_dim as a build-time constant (q's columns must
    // equal it; configurePlugin refuses them otherwise).
    int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t, DimsExprs* outputs,
                            int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept override {
        if (nbInputs != kNumInputs || nbOutputs != 1 || !inputs || !outputs) return -1;
        if (inputs[0].nbDims != 2) {
            log_error("getOutputShapes: input 'q' (#0) has rank " + std::to_string(inputs[0].nbDims) +
                      ", expected (N, C) (rank 2)");
            return -1;
        }
        IDimensionExpr const* c = exprBuilder.constant(int64_t(attrs_.num_heads) * attrs_.head_dim);
        if (!c || !inputs[0].d[0]) return -1;
        outputs[0].nbDims = 2;
        outputs[0].d[0] = inputs[0].d[0];
        outputs[0].d[1] = c;
        return 0;
    }

    bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                   int32_t nbOutputs) noexcept override {
        if (nbInputs != kNumInputs || nbOutputs != 1 || pos < 0 || pos > kNumInputs || !inOut) return false;
        PluginTensorDesc const& d = inOut[pos].desc;
        if (d.format != TensorFormat::kLINEAR) return false;
        switch (pos) {
        case 0: return d.type == DataType::kFLOAT || d.type == DataType::kHALF;
        case 1:
        case 2:
        case kNumInputs: return d.type == inOut[0].desc.type;  // k, v, out share q's type
        case 7: return d.type == DataType::kFLOAT;                // bias
        default: return d.type == DataType::kINT32;               // window tables
        }
    }

    // Build time: dims TensorRT does not know yet are -1; a dynamic dim whose profile range is a
    // single value counts as that value, the others match anything (checked again at run time).
    int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out,
                            int32_t nbOutputs) noexcept override {
        if (nbInputs != kNumInputs || nbOutputs != 1 || !in || !out) return -1;
        PluginTensorDesc descs[kNumInputs];
        span_deploy::SwaShape shapes[kNumInputs];
        for (int32_t i = 0; i < kNumInputs; ++i) {
            descs[i] = in[i].desc;
            shapes[i] = build_shape(in[i]);
        }
        if (report(check_types_noexcept(descs, out[0].desc), "configurePlugin") != 0) return -1;
        SwaParams p = attr_params();
        return check_shapes(p, shapes, "configurePlugin");
    }

    // IPluginV3OneRuntime
    int32_t onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out,
                          int32_t nbOutputs) noexcept override {
        if (nbInputs != kNumInputs || nbOutputs != 1 || !in || !out) return -1;
        SwaParams p = attr_params();
        return run_check(p, in, out[0], "onShapeChange");
    }

    int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc, void const* const* inputs,
                    void* const* outputs, void*, cudaStream_t stream) noexcept override {
        // The kernel indexes every input by these sizes and picks its element type from q: check all
        // eight inputs and the output before launching.
        if (!inputDesc || !outputDesc || !inputs || !outputs) return -1;
        SwaParams p = attr_params();
        if (run_check(p, inputDesc, outputDesc[0], "enqueue") != 0) return -1;
        p.win_a = static_cast<int32_t const*>(inputs[3]);
        p.pos_a = static_cast<int32_t const*>(inputs[4]);
        p.win_b = static_cast<int32_t const*>(inputs[5]);
        p.pos_b = static_cast<int32_t const*>(inputs[6]);
        p.bias = static_cast<float const*>(inputs[7]);
        int rc;
        if (inputDesc[0].type == DataType::kHALF) {
            rc = span_deploy::swa_forward_cuda(p, static_cast<SwaHalf const*>(inputs[0]),
                                               static_cast<SwaHalf const*>(inputs[1]),
                                               static_cast<SwaHalf const*>(inputs[2]), static_cast<SwaHalf*>(outputs[0]),
                                               stream);
        } else {
            rc = span_deploy::swa_forward_cuda(p, static_cast<float const*>(inputs[0]),
                                               static_cast<float const*>(inputs[1]),
                                               static_cast<float const*>(inputs[2]), static_cast<float*>(outputs[0]),
                                               stream);
        }
        if (rc != 0) log_error(std::string("kernel launch failed: ") + span_deploy::swa_cuda_error_string(rc));
        return rc;
    }

    IPluginV3* attachToContext(IPluginResourceContext*) noexcept override { return clone(); }

    PluginFieldCollection const* getFieldsToSerialize() noexcept override { return &fc_; }

private:
    SwaParams attr_params() const noexcept {
        SwaParams p;
        p.num_heads = attrs_.num_heads;
        p.head_dim = attrs_.head_dim;
        p.window = attrs_.window;
        p.mode = attrs_.mode;
        p.scale = attrs_.scale;
        return p;
    }

    static span_deploy::SwaShape to_shape(Dims const& d) noexcept {
        span_deploy::SwaShape s;
        s.rank = d.nbDims < 0 ? 0 : d.nbDims;
        for (int32_t i = 0; i < s.rank && i < span_deploy::kSwaMaxRank; ++i) s.dims[i] = d.d[i];
        return s;
    }

    static span_deploy::SwaShape build_shape(DynamicPluginTensorDesc const& t) noexcept {
        span_deploy::SwaShape s = to_shape(t.desc.dims);
        for (int32_t i = 0; i < s.rank && i < span_deploy::kSwaMaxRank; ++i)
            if (s.dims[i] < 0 && t.min.nbDims == s.rank && t.max.nbDims == s.rank && t.min.d[i] >= 0 &&
                t.min.d[i] == t.max.d[i])
                s.dims[i] = t.min.d[i];
        return s;
    }

    // Run time (onShapeChange, enqueue): every dim is known; checks types, the eight input shapes
    // and the output's (N, C); fills p's sizes.
    int32_t run_check(SwaParams& p, PluginTensorDesc const* in, PluginTensorDesc const& out,
                      char const* where) const noexcept {
        if (report(check_types_noexcept(in, out), where) != 0) return -1;
        span_deploy::SwaShape shapes[kNumInputs];
        for (int32_t i = 0; i < kNumInputs; ++i) shapes[i] = to_shape(in[i].dims);
        if (check_shapes(p, shapes, where) != 0) return -1;
        if (p.n < 0 || p.num_win_a < 0 || p.num_win_b < 0) {  // TensorRT gives known dims here
            log_error(std::string(where) + ": dynamic (-1) dims at run time");
            return -1;
        }
        int64_t const c = int64_t(p.num_heads) * p.head_dim;
        if (out.dims.nbDims != 2 || out.dims.d[0] != p.n || out.dims.d[1] != c) {
            report_output_shape(out.dims, p.n, c, where);
            return -1;
        }
        return 0;
    }

    static void report_output_shape(Dims const& d, int64_t n, int64_t c, char const* where) noexcept {
        try {
            std::string got = "(";
            for (int32_t i = 0; i < d.nbDims && i < Dims::MAX_DIMS; ++i)
                got += (i ? ", " : "") + std::to_string(d.d[i]);
            log_error(std::string(where) + ": output 'output' (#0) has shape " + got + "), expected (N, C) = (" +
                      std::to_string(n) + ", " + std::to_string(c) + ")");
        } catch (...) {
        }
    }

    static std::string check_types_noexcept(PluginTensorDesc const* in, PluginTensorDesc const& out) noexcept {
        try {
            return check_types(in, out);
        } catch (...) {  // std::bad_alloc while building the message: still a refusal
            return "type check failed";
        }
    }

    // 0 when err is empty, else logs it (prefixed with the calling method) and returns -1.
    static int32_t report(std::string const& err, char const* where) noexcept {
        if (err.empty()) return 0;
        try {
            log_error(std::string(where) + ": " + err);
        } catch (...) {
        }
        return -1;
    }

    // The shared shape check of kernels/ (op.yaml); logs the message on failure.
    static int32_t check_shapes(SwaParams& p, span_deploy::SwaShape const* shapes, char const* where) noexcept {
        try {
            std::string const err = span_deploy::swa_check_shapes(p, shapes, kNumInputs);
            if (err.empty()) return 0;
            log_error(std::string(where) + ": " + err);
        } catch (...) {  // std::bad_alloc while building the message
        }
        return -1;
    }

    void refresh_fields() {
        fields_ = {
            PluginField("num_heads", &attrs_.num_heads, PluginFieldType::kINT32, 1),
            PluginField("head_dim", &attrs_.head_dim, PluginFieldType::kINT32, 1),
            PluginField("window", &attrs_.window, PluginFieldType::kINT32, 1),
            PluginField("scale", &attrs_.scale, PluginFieldType::kFLOAT32, 1),
            PluginField("mode", &attrs_.mode, PluginFieldType::kINT32, 1),
        };
        fc_.nbFields = int32_t(fields_.size());
        fc_.fields = fields_.data();
    }

    Attributes attrs_;
    std::vector<PluginField> fields_;
    PluginFieldCollection fc_{};
};

// Reads one scalar field; the ONNX parser passes ints as INT32 and floats as FLOAT32, other
// producers may use INT64 / FLOAT64. A value that does not fit (int64 beyond int32, a float64
// beyond float's range) is refused rather than silently truncated.
bool read_field(PluginField const& f, int32_t& out) {
    if (f.length != 1 || !f.data) return false;
    switch (f.type) {
    case PluginFieldType::kINT32: out = *static_cast<int32_t const*>(f.data); return true;
    case PluginFieldType::kINT64: {
        int64_t const v = *static_cast<int64_t const*>(f.data);
        if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) return false;
        out = int32_t(v);
        return true;
    }
    default: return false;
    }
}

bool read_field(PluginField const& f, float& out) {
    if (f.length != 1 || !f.data) return false;
    switch (f.type) {
    case PluginFieldType::kFLOAT32: out = *static_cast<float const*>(f.data); return true;
    case PluginFieldType::kFLOAT64: {
        double const v = *static_cast<double const*>(f.data);
        if (std::isfinite(v) && std::fabs(v) > double(std::numeric_limits<float>::max())) return false;
        out = float(v);
        return true;
    }
    default: return false;
    }
}

class SwaPluginCreator final : public IPluginCreatorV3One {
public:
    SwaPluginCreator() {
        fields_ = {
            PluginField("num_heads", nullptr, PluginFieldType::kINT32, 1),
            PluginField("head_dim", nullptr, PluginFieldType::kINT32, 1),
            PluginField("window", nullptr, PluginFieldType::kINT32, 1),
            PluginField("scale", nullptr, PluginFieldType::kFLOAT32, 1),
            PluginField("mode", nullptr, PluginFieldType::kINT32, 1),
        };
        fc_.nbFields = int32_t(fields_.size());
        fc_.fields = fields_.data();
    }

    IPluginV3* createPlugin(AsciiChar const*, PluginFieldCollection const* fc, TensorRTPhase) noexcept override {
        try {
            Attributes a;
            std::string const err = fc ? read_attributes(*fc, a) : "no attribute fields";
            if (!err.empty()) {
                log_error("bad attributes (num_heads, head_dim, window, scale, mode): " + err);
                return nullptr;
            }
            return new SwaPlugin(a);
        } catch (...) {
            return nullptr;
        }
    }

    PluginFieldCollection const* getFieldNames() noexcept override { return &fc_; }
    AsciiChar const* getPluginName() const noexcept override { return kName; }
    AsciiChar const* getPluginVersion() const noexcept override { return kVersion; }
    AsciiChar const* getPluginNamespace() const noexcept override { return kNamespace; }

private:
    // Fills out from fc; empty string when all five attributes are there, well typed and valid.
    // Other fields (the parser's plugin_version / plugin_namespace) are ignored. Static: TensorRT may
    // create plugins from several threads, so the creator keeps no per-call state.
    static std::string read_attributes(PluginFieldCollection const& fc, Attributes& out) {
        Attributes a;
        bool seen[5] = {};
        char const* const names[5] = {"num_heads", "head_dim", "window", "scale", "mode"};
        if (fc.nbFields < 0 || (fc.nbFields > 0 && !fc.fields)) return "malformed field collection";
        for (int32_t i = 0; i < fc.nbFields; ++i) {
            PluginField const& f = fc.fields[i];
            if (!f.name) continue;
            int k = 0;
            while (k < 5 && std::strcmp(f.name, names[k])) ++k;
            if (k == 5) continue;
            bool const ok = k == 0 ? read_field(f, a.num_heads)
                            : k == 1 ? read_field(f, a.head_dim)
                            : k == 2 ? read_field(f, a.window)
                            : k == 3 ? read_field(f, a.scale)
                                     : read_field(f, a.mode);
            if (!ok)
                return std::string("attribute '") + names[k] + "' must be one " +
                       (k == 3 ? "FLOAT32 or FLOAT64" : "INT32 or INT64 (within int32)") + " value, got type " +
                       std::to_string(static_cast<int32_t>(f.type)) + " with length " + std::to_string(f.length);
            seen[k] = true;
        }
        for (int k = 0; k < 5; ++k)
            if (!seen[k]) return std::string("attribute '") + names[k] + "' is missing";
        SwaParams p;
        p.num_heads = a.num_heads, p.head_dim = a.head_dim, p.window = a.window, p.mode = a.mode;
        std::string err = span_deploy::swa_check_params(p);
        if (err.empty()) err = span_deploy::swa_check_cuda_limits(p);
        if (err.empty() && !(std::isfinite(a.scale) && a.scale > 0.f))
            err = "scale must be a finite positive float, got " + std::to_string(a.scale);
        if (err.empty()) out = a;
        return err;
    }

    std::vector<PluginField> fields_;
    PluginFieldCollection fc_{};
};

}  // namespace

#ifdef SPAN_TRT_STATIC_REGISTRATION
namespace {

// Registers the creator under namespace span_deploy when the application's static objects are
// initialised (the role of REGISTER_TENSORRT_PLUGIN, which would register under ""). The creator
// lives as long as the program, as TensorRT's registry expects.
struct StaticRegistrar {
    StaticRegistrar() noexcept {
        IPluginRegistry* registry = getPluginRegistry();
        if (!registry) {
            log_error("static registration: getPluginRegistry() returned null; the creator is not registered");
        } else if (!registry->registerCreator(creator, kNamespace)) {
            log_error("static registration: the plugin registry refused the creator (namespace 'span_deploy'; "
                      "already registered, e.g. by loading libspan_deploy_trt_plugin.so too?)");
        }
    }
    SwaPluginCreator creator;
};

StaticRegistrar g_static_registrar;

}  // namespace
#else
extern "C" {

__attribute__((visibility("default"))) void setLoggerFinder(ILoggerFinder* finder) {
    std::lock_guard<std::mutex> lock(g_logger_mutex);
    g_logger_finder = finder;
}

__attribute__((visibility("default"))) IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
    static SwaPluginCreator creator;
    static IPluginCreatorInterface* const creators[] = {&creator};
    nbCreators = 1;
    return creators;
}

}  // extern "C"
#endif
