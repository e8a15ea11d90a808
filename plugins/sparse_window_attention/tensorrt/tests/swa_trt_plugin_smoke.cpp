// Host-side smoke test of the TensorRT plugin library, runnable without TensorRT or a GPU:
// dlopens it like IPluginRegistry::loadLibrary, then exercises the creator and the build-time
// interface (identity, attributes, serialization fields, type/format rules), and the shape checks
// of configurePlugin / onShapeChange / enqueue (every input of op.yaml; enqueue is only called
// with bad shapes, which it must reject before launching). Exit 0 on success.
#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <string>

using namespace nvinfer1;

static int g_failures = 0;
#define EXPECT(c)                                                        \
    do {                                                                 \
        if (!(c)) {                                                      \
            std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); \
            ++g_failures;                                                \
        }                                                                \
    } while (0)

// Records the plugin's error messages (it logs through the finder given to setLoggerFinder).
class RecordingLogger final : public ILogger {
public:
    void log(Severity, AsciiChar const* msg) noexcept override { last = msg ? msg : ""; }
    std::string last;
};
class Finder final : public ILoggerFinder {
public:
    ILogger* findLogger() noexcept override { return &logger; }
    RecordingLogger logger;
};

// Run-time descs of the 8 inputs + the output: N rows, C = 128 (4 heads x 32), S = 8 (S2 = 64,
// bias side 15), Wa = 3, Wb = 2.
struct Shapes {
    PluginTensorDesc d[9]{};
    explicit Shapes(int64_t n = 10) {
        for (int i : {0, 1, 2, 8}) set(i, {n, 128});
        set(3, {3, 64});
        set(4, {n});
        set(5, {2, 64});
        set(6, {n});
        set(7, {4, 15, 15});
        for (int i = 0; i < 9; ++i) {
            d[i].format = TensorFormat::kLINEAR;
            d[i].type = i >= 3 && i <= 6 ? DataType::kINT32 : DataType::kFLOAT;
        }
    }
    void set(int i, std::initializer_list<int64_t> dims) {
        d[i].dims.nbDims = int32_t(dims.size());
        int j = 0;
        for (int64_t v : dims) d[i].dims.d[j++] = v;
    }
};

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s libspan_deploy_trt_plugin.so\n", argv[0]);
        return 2;
    }
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        std::fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
    auto get_creators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    EXPECT(get_creators != nullptr && dlsym(lib, "setLoggerFinder") != nullptr);
    if (!get_creators) return 1;
    int32_t n = 0;
    IPluginCreatorInterface* const* creators = get_creators(n);
    EXPECT(n == 1);
    EXPECT(std::strcmp(creators[0]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0);
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    EXPECT(!std::strcmp(creator->getPluginName(), "SparseWindowAttention"));
    EXPECT(!std::strcmp(creator->getPluginVersion(), "1"));
    EXPECT(!std::strcmp(creator->getPluginNamespace(), "span_deploy"));

    // Attributes as TensorRT's ONNX parser passes them (ints as INT32) plus the parser-only ones.
    int32_t heads = 4, dim = 32, window = 8, mode = 1;
    float scale = 0.17677669f;
    PluginField fields[] = {
        {"num_heads", &heads, PluginFieldType::kINT32, 1}, {"head_dim", &dim, PluginFieldType::kINT32, 1},
        {"window", &window, PluginFieldType::kINT32, 1},   {"scale", &scale, PluginFieldType::kFLOAT32, 1},
        {"mode", &mode, PluginFieldType::kINT32, 1},       {"plugin_version", "1", PluginFieldType::kCHAR, 1},
    };
    PluginFieldCollection fc{6, fields};
    IPluginV3* plugin = creator->createPlugin("swa", &fc, TensorRTPhase::kBUILD);
    EXPECT(plugin != nullptr);
    if (!plugin) return 1;
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    EXPECT(!std::strcmp(core->getPluginNamespace(), "span_deploy"));
    EXPECT(build->getNbOutputs() == 1);

    // Serialized fields round-trip through the creator (runtime phase).
    PluginFieldCollection const* ser = runtime->getFieldsToSerialize();
    EXPECT(ser->nbFields == 5);
    IPluginV3* restored = creator->createPlugin("swa", ser, TensorRTPhase::kRUNTIME);
    EXPECT(restored != nullptr);
    auto* rser = static_cast<IPluginV3OneRuntime*>(restored->getCapabilityInterface(PluginCapabilityType::kRUNTIME))
                     ->getFieldsToSerialize();
    for (int i = 0; i < 5; ++i) {
        EXPECT(!std::strcmp(rser->fields[i].name, ser->fields[i].name));
        EXPECT(!std::memcmp(rser->fields[i].data, ser->fields[i].data, 4));
    }

    DataType in_types[8] = {DataType::kHALF, DataType::kHALF, DataType::kHALF, DataType::kINT32,
                            DataType::kINT32, DataType::kINT32, DataType::kINT32, DataType::kFLOAT};
    DataType out_type = DataType::kFLOAT;
    EXPECT(build->getOutputDataTypes(&out_type, 1, in_types, 8) == 0 && out_type == DataType::kHALF);

    DynamicPluginTensorDesc io[9]{};
    for (int i = 0; i < 9; ++i) {
        io[i].desc.format = TensorFormat::kLINEAR;
        io[i].desc.type = i < 8 ? in_types[i] : DataType::kHALF;
    }
    for (int pos = 0; pos < 9; ++pos) EXPECT(build->supportsFormatCombination(pos, io, 8, 1));
    io[8].desc.type = DataType::kFLOAT;  // out must match q
    EXPECT(!build->supportsFormatCombination(8, io, 8, 1));
    io[7].desc.type = DataType::kHALF;   // bias is always fp32
    EXPECT(!build->supportsFormatCombination(7, io, 8, 1));
    io[3].desc.type = DataType::kINT64;  // tables are int32
    EXPECT(!build->supportsFormatCombination(3, io, 8, 1));
    io[0].desc.type = DataType::kBF16;
    EXPECT(!build->supportsFormatCombination(0, io, 8, 1));
    io[0].desc.type = DataType::kFLOAT;
    io[0].desc.format = TensorFormat::kHWC;
    EXPECT(!build->supportsFormatCombination(0, io, 8, 1));

    // Invalid attributes are rejected (head_dim beyond the CUDA kernel's limit, bad mode).
    int32_t big = 512, bad_mode = 2;
    fields[1].data = &big;
    EXPECT(creator->createPlugin("swa", &fc, TensorRTPhase::kBUILD) == nullptr);
    fields[1].data = &dim;
    fields[4].data = &bad_mode;
    EXPECT(creator->createPlugin("swa", &fc, TensorRTPhase::kBUILD) == nullptr);

    // Shape checks (the shared swa_check_shapes): the plugin was created with mode 1.
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    auto set_finder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"));
    static Finder finder;
    if (set_finder) set_finder(&finder);
    std::string& logged = finder.logger.last;
    void const* no_inputs[8] = {};
    void* no_outputs[1] = {};
    {
        Shapes ok;
        EXPECT(runtime->onShapeChange(ok.d, 8, ok.d + 8, 1) == 0);
        // Every input, every dim that an attribute or q's rows fix: off by one must be rejected by
        // onShapeChange and by enqueue (before any launch: the data pointers here are null).
        char const* names[8] = {"q", "k", "v", "win_a", "pos_a", "win_b", "pos_b", "bias"};
        for (int i = 0; i < 8; ++i) {
            for (int axis = 0; axis < ok.d[i].dims.nbDims; ++axis) {
                if (axis == 0 && (i == 0 || i == 3 || i == 5)) continue;  // N, Wa, Wb are free
                Shapes bad;
                bad.d[i].dims.d[axis] += 1;
                logged.clear();
                EXPECT(runtime->onShapeChange(bad.d, 8, bad.d + 8, 1) != 0);
                EXPECT(logged.find(std::string("'") + names[i] + "'") != std::string::npos);
                logged.clear();
                EXPECT(runtime->enqueue(bad.d, bad.d + 8, no_inputs, no_outputs, nullptr, nullptr) != 0);
                EXPECT(logged.find(std::string("'") + names[i] + "'") != std::string::npos);
            }
            Shapes bad_rank;  // one dim more
            bad_rank.d[i].dims.d[bad_rank.d[i].dims.nbDims++] = 1;
            EXPECT(runtime->onShapeChange(bad_rank.d, 8, bad_rank.d + 8, 1) != 0);
            EXPECT(runtime->enqueue(bad_rank.d, bad_rank.d + 8, no_inputs, no_outputs, nullptr, nullptr) != 0);
        }
        if (g_failures) std::fprintf(stderr, "last plugin message: %s\n", logged.c_str());

        // Build time: -1 = dynamic; a fixed mismatch is still caught, a range never is.
        DynamicPluginTensorDesc dyn[9]{};
        auto dynamic_rows = [&](Shapes const& s) {
            for (int i = 0; i < 9; ++i) {
                dyn[i].desc = s.d[i];
                dyn[i].min = dyn[i].max = dyn[i].opt = s.d[i].dims;
                if (i != 7) {  // rows of everything but bias are dynamic, profile [1, 1000]
                    dyn[i].desc.dims.d[0] = -1;
                    dyn[i].min.d[0] = 1;
                    dyn[i].max.d[0] = 1000;
                }
            }
        };
        dynamic_rows(ok);
        EXPECT(build->configurePlugin(dyn, 8, dyn + 8, 1) == 0);
        dyn[4].desc.dims.d[0] = 11;  // pos_a rows known (11), q's dynamic: fine
        EXPECT(build->configurePlugin(dyn, 8, dyn + 8, 1) == 0);
        dyn[1].desc.dims.d[0] = 12;  // k known as 12: then pos_a (11) disagrees
        logged.clear();
        EXPECT(build->configurePlugin(dyn, 8, dyn + 8, 1) != 0);
        EXPECT(logged.find("'pos_a'") != std::string::npos);
        dynamic_rows(ok);
        dyn[0].desc.dims.d[0] = 10;            // q fixed at 10 rows
        dyn[6].min.d[0] = dyn[6].max.d[0] = 9;  // pos_b: dynamic, but its profile allows 9 only
        logged.clear();
        EXPECT(build->configurePlugin(dyn, 8, dyn + 8, 1) != 0);
        EXPECT(logged.find("'pos_b'") != std::string::npos);
        dynamic_rows(ok);
        dyn[2].desc.dims.d[1] = 127;  // v columns != num_heads * head_dim
        EXPECT(build->configurePlugin(dyn, 8, dyn + 8, 1) != 0);
        EXPECT(logged.find("'v'") != std::string::npos);
    }
    {
        // mode 0: win_b / pos_b are ignored (any shape), the rest is still checked.
        int32_t mode0 = 0;
        fields[4].data = &mode0;
        IPluginV3* p0 = creator->createPlugin("swa", &fc, TensorRTPhase::kRUNTIME);
        EXPECT(p0 != nullptr);
        if (p0) {
            auto* rt0 = static_cast<IPluginV3OneRuntime*>(p0->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
            Shapes s;
            s.set(5, {1, 1, 1});
            s.set(6, {3});
            EXPECT(rt0->onShapeChange(s.d, 8, s.d + 8, 1) == 0);
            s.set(4, {9});
            EXPECT(rt0->onShapeChange(s.d, 8, s.d + 8, 1) != 0);
            EXPECT(rt0->enqueue(s.d, s.d + 8, no_inputs, no_outputs, nullptr, nullptr) != 0);
            delete p0;
        }
        fields[4].data = &mode;
    }
    if (set_finder) set_finder(nullptr);

    IPluginV3* copy = plugin->clone();
    EXPECT(copy != nullptr && copy != plugin);
    delete copy;
    delete restored;
    delete plugin;
    std::printf("%s\n", g_failures ? "TRT plugin smoke: FAILED" : "TRT plugin smoke: OK");
    return g_failures ? 1 : 0;
}
