// TensorRT IPluginV3 plugin: SparseWindowAttention / version 1 / namespace span_deploy
// (contract: ../op.yaml, ../README.md). enqueue launches the shared CUDA kernel on TensorRT's
// stream; the kernel takes no workspace and never synchronises, so engines with this plugin can
// be captured into CUDA graphs. All eight input shapes go through the shared check of kernels/
// (swa_check_shapes) in configurePlugin (build time), onShapeChange and enqueue (run time).
//
// The shared library exports getCreators / setLoggerFinder for IPluginRegistry::loadLibrary,
// trtexec --dynamicPlugins and polygraphy --plugins. Static registration
// (REGISTER_TENSORRT_PLUGIN) is compiled only with SPAN_TRT_STATIC_REGISTRATION (the
// span_deploy_trt_plugin_static library, for applications that link the plugin in): in a library
// that is also loaded through getCreators, TensorRT rejects the second registration of the
// same creator.
#include <NvInferRuntime.h>

#include <cstdint>
#include <cstring>
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
ILoggerFinder* g_logger_finder = nullptr;

void log_error(std::string const& msg) {
    std::lock_guard<std::mutex> lock(g_logger_mutex);
    if (g_logger_finder)
        if (ILogger* logger = g_logger_finder->findLogger())
            logger->log(ILogger::Severity::kERROR, (std::string(kNamespace) + "::" + kName + ": " + msg).c_str());
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

    int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t, DimsExprs* outputs,
                            int32_t nbOutputs, IExprBuilder&) noexcept override {
        if (nbInputs != kNumInputs || nbOutputs != 1) return -1;
        outputs[0] = inputs[0];  // (N, C), like q
        return 0;
    }

    bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                   int32_t nbOutputs) noexcept override {
        if (nbInputs != kNumInputs || nbOutputs != 1) return false;
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
    int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const*,
                            int32_t nbOutputs) noexcept override {
        if (nbInputs != kNumInputs || nbOutputs != 1) return -1;
        span_deploy::SwaShape shapes[kNumInputs];
        for (int32_t i = 0; i < kNumInputs; ++i) shapes[i] = build_shape(in[i]);
        SwaParams p = attr_params();
        return check_shapes(p, shapes, "configurePlugin");
    }

    // IPluginV3OneRuntime
    int32_t onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const*,
                          int32_t nbOutputs) noexcept override {
        if (nbInputs != kNumInputs || nbOutputs != 1) return -1;
        SwaParams p = attr_params();
        return run_shapes(p, in, "onShapeChange");
    }

    int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const*, void const* const* inputs,
                    void* const* outputs, void*, cudaStream_t stream) noexcept override {
        // The kernel indexes every input by these sizes: check all eight shapes before launching.
        SwaParams p = attr_params();
        if (run_shapes(p, inputDesc, "enqueue") != 0) return -1;
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

    // Run time (onShapeChange, enqueue): every dim is known; fills p's sizes.
    int32_t run_shapes(SwaParams& p, PluginTensorDesc const* in, char const* where) const noexcept {
        span_deploy::SwaShape shapes[kNumInputs];
        for (int32_t i = 0; i < kNumInputs; ++i) shapes[i] = to_shape(in[i].dims);
        if (check_shapes(p, shapes, where) != 0) return -1;
        if (p.n < 0 || p.num_win_a < 0 || p.num_win_b < 0) {  // TensorRT gives known dims here
            log_error(std::string(where) + ": dynamic (-1) dims at run time");
            return -1;
        }
        return 0;
    }

    // The shared shape check of kernels/ (op.yaml); logs through the logger finder on failure.
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

// Reads one scalar field; the ONNX parser passes ints as INT32, other producers may use INT64.
bool read_field(PluginField const& f, int32_t& out) {
    if (f.length != 1 || !f.data) return false;
    switch (f.type) {
    case PluginFieldType::kINT32: out = *static_cast<int32_t const*>(f.data); return true;
    case PluginFieldType::kINT64: out = int32_t(*static_cast<int64_t const*>(f.data)); return true;
    default: return false;
    }
}

bool read_field(PluginField const& f, float& out) {
    if (f.length != 1 || !f.data) return false;
    switch (f.type) {
    case PluginFieldType::kFLOAT32: out = *static_cast<float const*>(f.data); return true;
    case PluginFieldType::kFLOAT64: out = float(*static_cast<double const*>(f.data)); return true;
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
            a.scale = -1.f;
            a.mode = -1;
            bool ok = fc != nullptr;
            for (int32_t i = 0; ok && i < fc->nbFields; ++i) {
                PluginField const& f = fc->fields[i];
                if (!f.name) continue;
                if (!std::strcmp(f.name, "num_heads")) ok = read_field(f, a.num_heads);
                else if (!std::strcmp(f.name, "head_dim")) ok = read_field(f, a.head_dim);
                else if (!std::strcmp(f.name, "window")) ok = read_field(f, a.window);
                else if (!std::strcmp(f.name, "scale")) ok = read_field(f, a.scale);
                else if (!std::strcmp(f.name, "mode")) ok = read_field(f, a.mode);
            }
            SwaParams p;
            p.num_heads = a.num_heads, p.head_dim = a.head_dim, p.window = a.window, p.mode = a.mode;
            std::string err = ok ? span_deploy::swa_check_params(p) : "malformed attribute field";
            if (err.empty()) err = span_deploy::swa_check_cuda_limits(p);
            if (err.empty() && !(a.scale > 0.f)) err = "scale must be a positive float";
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
    std::vector<PluginField> fields_;
    PluginFieldCollection fc_{};
};

}  // namespace

#ifdef SPAN_TRT_STATIC_REGISTRATION
REGISTER_TENSORRT_PLUGIN(SwaPluginCreator);
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
