// Host-side check of the STATIC plugin library (span_deploy_trt_plugin_static), runnable without
// TensorRT or a GPU. Linked whole-archive, as an application would link it; this executable itself
// defines the two libnvinfer entry points the library calls, getPluginRegistry() and getLogger()
// (extern "C", NvInferRuntime.h), with test doubles. It asserts that
//   * the creator was registered while static objects were initialised (before main), exactly
//     once, under namespace "span_deploy" (not REGISTER_TENSORRT_PLUGIN's ""), as
//     SparseWindowAttention / version 1, through the IPluginCreatorInterface overload;
//   * errors (a bad attribute, a wrong input shape) are logged through getLogger().
// Exit 0 on success.
#include <NvInferRuntime.h>

#include "expect.h"
#include <NvInferVersion.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace nvinfer1;


namespace {

bool g_in_main = false;

class RecordingLogger final : public ILogger {
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override {
        messages.push_back(msg ? msg : "");
        last_severity = severity;
    }
    std::vector<std::string> messages;
    Severity last_severity = Severity::kINFO;
};

struct Registration {
    IPluginCreatorInterface* creator;
    std::string plugin_namespace;
    bool before_main;
};

// IPluginRegistry's pure virtuals for the header version at hand: 10.x still has the IPluginV2
// creator overloads (deprecated), 11.x dropped them; getAllCreatorsRecursive came with 10.10.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
class TestRegistry final : public IPluginRegistry {
public:
    bool registerCreator(IPluginCreatorInterface& creator, AsciiChar const* const ns) noexcept override {
        registrations.push_back({&creator, ns ? ns : "<null>", !g_in_main});
        all.push_back(&creator);
        return true;
    }
    IPluginCreatorInterface* const* getAllCreators(int32_t* const n) const noexcept override {
        *n = int32_t(all.size());
        return all.data();
    }
    IPluginCreatorInterface* getCreator(AsciiChar const* const name, AsciiChar const* const version,
                                        AsciiChar const* const ns) noexcept override {
        for (Registration const& r : registrations) {
            if (std::strcmp(r.creator->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE")) continue;
            auto* c = static_cast<IPluginCreatorV3One*>(r.creator);
            if (!std::strcmp(c->getPluginName(), name) && !std::strcmp(c->getPluginVersion(), version) &&
                r.plugin_namespace == (ns ? ns : ""))
                return r.creator;
        }
        return nullptr;
    }
    bool deregisterCreator(IPluginCreatorInterface const&) noexcept override { return false; }
    void setErrorRecorder(IErrorRecorder* const) noexcept override {}
    IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
    bool isParentSearchEnabled() const override { return false; }
    void setParentSearchEnabled(bool const) override {}
    PluginLibraryHandle loadLibrary(AsciiChar const*) noexcept override { return nullptr; }
    void deregisterLibrary(PluginLibraryHandle) noexcept override {}
    IPluginResource* acquirePluginResource(AsciiChar const*, IPluginResource*) noexcept override { return nullptr; }
    int32_t releasePluginResource(AsciiChar const*) noexcept override { return -1; }
#if NV_TENSORRT_MAJOR > 10 || (NV_TENSORRT_MAJOR == 10 && NV_TENSORRT_MINOR >= 10)
    IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const n) noexcept override {
        return getAllCreators(n);
    }
#endif
#if NV_TENSORRT_MAJOR < 11
    bool registerCreator(IPluginCreator&, AsciiChar const* const) noexcept override {
        ++v2_registrations;
        return false;
    }
    IPluginCreator* const* getPluginCreatorList(int32_t* const n) const noexcept override {
        *n = 0;
        return nullptr;
    }
    IPluginCreator* getPluginCreator(AsciiChar const* const, AsciiChar const* const,
                                     AsciiChar const* const) noexcept override {
        return nullptr;
    }
    bool deregisterCreator(IPluginCreator const&) noexcept override { return false; }
#endif
    ~TestRegistry() noexcept override = default;

    std::vector<Registration> registrations;
    std::vector<IPluginCreatorInterface*> all;
    int v2_registrations = 0;
};
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

// Function-local statics: the library's registrar may run before or after this file's static
// objects are initialised (the order across translation units is unspecified).
TestRegistry& registry() {
    static TestRegistry r;
    return r;
}
RecordingLogger& logger() {
    static RecordingLogger l;
    return l;
}

bool logged_has(std::string const& s) {
    return !logger().messages.empty() && logger().messages.back().find(s) != std::string::npos;
}

}  // namespace

// libnvinfer's entry points, as the static library expects them from the application.
extern "C" IPluginRegistry* getPluginRegistry() noexcept { return &registry(); }
extern "C" ILogger* getLogger() noexcept { return &logger(); }

int main() {
    g_in_main = true;
    TestRegistry& r = registry();
    EXPECT(r.registrations.size() == 1);
    EXPECT(r.v2_registrations == 0);
    if (r.registrations.size() != 1) {
        std::printf("TRT static plugin registration: FAILED (%zu registrations)\n", r.registrations.size());
        return 1;
    }
    Registration const& reg = r.registrations[0];
    EXPECT(reg.before_main);
    EXPECT(reg.plugin_namespace == "span_deploy");
    EXPECT(!std::strcmp(reg.creator->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE"));
    auto* creator = static_cast<IPluginCreatorV3One*>(reg.creator);
    EXPECT(!std::strcmp(creator->getPluginName(), "SparseWindowAttention"));
    EXPECT(!std::strcmp(creator->getPluginVersion(), "1"));
    EXPECT(!std::strcmp(creator->getPluginNamespace(), "span_deploy"));
    // What TensorRT's ONNX parser looks up for the exported node, and what it would not find.
    EXPECT(r.getCreator("SparseWindowAttention", "1", "span_deploy") == reg.creator);
    EXPECT(r.getCreator("SparseWindowAttention", "1", "") == nullptr);
    EXPECT(logger().messages.empty());  // registration itself logged nothing

    int32_t heads = 4, dim = 32, window = 8, mode = 1, big = 512;
    float scale = 0.25f;
    PluginField fields[] = {
        {"num_heads", &heads, PluginFieldType::kINT32, 1}, {"head_dim", &dim, PluginFieldType::kINT32, 1},
        {"window", &window, PluginFieldType::kINT32, 1},   {"scale", &scale, PluginFieldType::kFLOAT32, 1},
        {"mode", &mode, PluginFieldType::kINT32, 1},
    };
    PluginFieldCollection fc{5, fields};
    std::unique_ptr<IPluginV3> plugin(creator->createPlugin("swa", &fc, TensorRTPhase::kBUILD));
    EXPECT(plugin != nullptr);
    EXPECT(logger().messages.empty());

    // A bad attribute: refused, and the message reaches getLogger() as an error.
    fields[1].data = &big;
    EXPECT(creator->createPlugin("swa", &fc, TensorRTPhase::kBUILD) == nullptr);
    EXPECT(logger().messages.size() == 1);
    EXPECT(logged_has("span_deploy::SparseWindowAttention") && logged_has("head_dim"));
    EXPECT(logger().last_severity == ILogger::Severity::kERROR);

    // A wrong input shape at run time: logged the same way.
    if (plugin) {
        auto* rt = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        PluginTensorDesc d[9]{};
        auto set = [&](int i, std::vector<int64_t> dims, DataType t) {
            d[i].dims.nbDims = int32_t(dims.size());
            for (size_t j = 0; j < dims.size(); ++j) d[i].dims.d[j] = dims[j];
            d[i].type = t;
            d[i].format = TensorFormat::kLINEAR;
        };
        for (int i : {0, 1, 2, 8}) set(i, {10, 128}, DataType::kFLOAT);
        set(3, {3, 64}, DataType::kINT32);
        set(4, {10}, DataType::kINT32);
        set(5, {2, 64}, DataType::kINT32);
        set(6, {10}, DataType::kINT32);
        set(7, {4, 15, 15}, DataType::kFLOAT);
        EXPECT(rt->onShapeChange(d, 8, d + 8, 1) == 0);
        set(6, {11}, DataType::kINT32);
        EXPECT(rt->onShapeChange(d, 8, d + 8, 1) != 0);
        EXPECT(logger().messages.size() == 2 && logged_has("'pos_b'"));
    }
    if (g_failures)
        for (std::string const& m : logger().messages) std::fprintf(stderr, "logged: %s\n", m.c_str());

    std::printf("TRT static plugin registration (TensorRT %d.%d.%d headers): %s\n", NV_TENSORRT_MAJOR,
                NV_TENSORRT_MINOR, NV_TENSORRT_PATCH, g_failures ? "FAILED" : "OK");
    return g_failures ? 1 : 0;
}
