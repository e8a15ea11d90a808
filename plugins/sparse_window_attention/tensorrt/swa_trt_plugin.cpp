// TensorRT IPluginV3 plugin: SparseWindowAttention / version 1 / namespace span_deploy
// (contract: ../README.md). enqueue launches the shared CUDA kernel on TensorRT's stream; the
// kernel takes no workspace and never synchronises, so engines with this plugin can be
// captured into CUDA graphs.
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

    int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const*,
                            int32_t nbOutputs) noexcept override {
        if (nbInputs != kNumInputs || nbOutputs != 1) return -1;
        return check_dims(in[0].desc.dims, in[3].desc.dims, in[5].desc.dims, in[7].desc.dims);
    }

    // IPluginV3OneRuntime
    int32_t onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const*,
                          int32_t nbOutputs) noexcept override {
        if (nbInputs != kNumInputs || nbOutputs != 1) return -1;
        return check_dims(in[0].dims, in[3].dims, in[5].dims, in[7].dims);
    }

    int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const*, void const* const* inputs,
                    void* const* outputs, void*, cudaStream_t stream) noexcept override {
        SwaParams p;
        p.n = inputDesc[0].dims.d[0];
        p.num_win_a = inputDesc[3].dims.d[0];
        p.num_win_b = inputDesc[5].dims.d[0];
        p.num_heads = attrs_.num_heads;
        p.head_dim = attrs_.head_dim;
        p.window = attrs_.window;
        p.mode = attrs_.mode;
        p.scale = attrs_.scale;
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
    // Checks the dims TensorRT already knows (-1 = dynamic, checked again in onShapeChange).
    int32_t check_dims(Dims const& q, Dims const& win_a, Dims const& win_b, Dims const& bias) const noexcept {
        int64_t const C = int64_t(attrs_.num_heads) * attrs_.head_dim;
        int64_t const slots = int64_t(attrs_.window) * attrs_.window, side = 2 * attrs_.window - 1;
        auto is = [](int64_t got, int64_t want) { return got < 0 || got == want; };
        if (q.nbDims != 2 || !is(q.d[1], C)) {
            log_error("q must be (N, num_heads*head_dim = " + std::to_string(C) + ")");
            return -1;
        }
        if (win_a.nbDims != 2 || !is(win_a.d[1], slots) || win_b.nbDims != 2 || !is(win_b.d[1], slots)) {
            log_error("win_a / win_b must be (W, window^2 = " + std::to_string(slots) + ")");
            return -1;
        }
        if (bias.nbDims != 3 || !is(bias.d[0], attrs_.num_heads) || !is(bias.d[1], side) || !is(bias.d[2], side)) {
            log_error("bias must be (num_heads, 2*window-1, 2*window-1)");
            return -1;
        }
        return 0;
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
