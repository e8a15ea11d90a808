// Host-side smoke test of the TensorRT plugin library, runnable without TensorRT or a GPU:
// dlopens it like IPluginRegistry::loadLibrary, then exercises the creator and the build-time
// interface (identity, attributes, serialization fields, type/format rules). Exit 0 on success.
#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstring>

using namespace nvinfer1;

static int g_failures = 0;
#define EXPECT(c)                                                        \
    do {                                                                 \
        if (!(c)) {                                                      \
            std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); \
            ++g_failures;                                                \
        }                                                                \
    } while (0)

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

    IPluginV3* copy = plugin->clone();
    EXPECT(copy != nullptr && copy != plugin);
    delete copy;
    delete restored;
    delete plugin;
    std::printf("%s\n", g_failures ? "TRT plugin smoke: FAILED" : "TRT plugin smoke: OK");
    return g_failures ? 1 : 0;
}
