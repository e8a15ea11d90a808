// Host-side harness of the TensorRT plugin library, runnable without TensorRT or a GPU: dlopens
// it like IPluginRegistry::loadLibrary, then drives the IPluginV3 interfaces the way TensorRT's
// builder and runtime do:
//   * creator: identity, field names, attributes as INT32 / INT64 / FLOAT32 / FLOAT64 (every mix),
//     wrong field types, lengths, missing fields and bad values refused with a logged message;
//   * build: getOutputDataTypes, getOutputShapes through a test IExprBuilder, supportsFormatCombination
//     at every position for every DataType value of this header and every non-linear format,
//     configurePlugin (types and shapes of every input, dynamic dims);
//   * serialisation: getFieldsToSerialize -> createPlugin(kRUNTIME) -> identical fields; clone;
//     attachToContext with a test IPluginResourceContext;
//   * run time: onShapeChange and enqueue refusing a wrong shape and a wrong type of every input and
//     of the output (enqueue before any launch: the data pointers are null), and an N = 0 enqueue,
//     which returns before touching CUDA.
// Exit 0 on success; every failed expectation prints its line.
#include <NvInferRuntime.h>

#include "expect.h"
#include <NvInferVersion.h>
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <vector>

using namespace nvinfer1;

// Same, with a printf-style note (which position / type / input failed).
#define EXPECT_AT(c, ...)                                                         \
    do {                                                                          \
        if (!(c)) {                                                               \
            std::fprintf(stderr, "FAIL %s:%d: %s [", __FILE__, __LINE__, #c);     \
            std::fprintf(stderr, __VA_ARGS__);                                    \
            std::fprintf(stderr, "]\n");                                          \
            ++g_failures;                                                         \
        }                                                                         \
    } while (0)

namespace {

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
Finder g_finder;
std::string& logged() { return g_finder.logger.last; }
bool logged_has(std::string const& s) { return logged().find(s) != std::string::npos; }

// ---- a test IExprBuilder ---------------------------------------------------------------------
// TensorRT's IDimensionExpr / IExprBuilder forward their (non-virtual) methods to an
// implementation behind mImpl (apiv::VDimensionExpr / VExprBuilder, NvInferImpl.h), the same
// three / three virtuals in 10.3, 10.16 and 11.1 (11.x only made the destructors pure, with inline
// definitions). A test double derives from the public class and points mImpl at its own.
class TestExpr final : public IDimensionExpr {
public:
    TestExpr(bool constant, int64_t value) : impl_(constant, value) { mImpl = &impl_; }
    ~TestExpr() noexcept override = default;

private:
    struct Impl final : apiv::VDimensionExpr {
        Impl(bool c, int64_t v) : constant(c), value(v) {}
        bool isConstant() const override { return constant; }
        int64_t getConstantValue() const override { return constant ? value : -1; }
        bool isSizeTensor() const override { return false; }
        bool constant;
        int64_t value;
    } impl_;
};

class TestExprBuilder final : public IExprBuilder {
public:
    TestExprBuilder() { mImpl = &impl_; }
    ~TestExprBuilder() noexcept override = default;
    IDimensionExpr const* symbol() { return impl_.make(false, -1); }  // a dynamic dim
    int constants_made() const { return impl_.constants; }

private:
    struct Impl final : apiv::VExprBuilder {
        IDimensionExpr const* constant(int64_t value) override {
            ++constants;
            return make(true, value);
        }
        IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a,
                                        IDimensionExpr const& b) override {
            if (!a.isConstant() || !b.isConstant()) return make(false, -1);
            int64_t const x = a.getConstantValue(), y = b.getConstantValue();
            switch (op) {
            case DimensionOperation::kSUM: return make(true, x + y);
            case DimensionOperation::kPROD: return make(true, x * y);
            case DimensionOperation::kMAX: return make(true, x > y ? x : y);
            case DimensionOperation::kMIN: return make(true, x < y ? x : y);
            case DimensionOperation::kSUB: return make(true, x - y);
            case DimensionOperation::kEQUAL: return make(true, x == y);
            case DimensionOperation::kLESS: return make(true, x < y);
            case DimensionOperation::kFLOOR_DIV: return y ? make(true, x / y - ((x % y) && ((x < 0) != (y < 0)))) : nullptr;
            case DimensionOperation::kCEIL_DIV: return y ? make(true, (x + y - 1) / y) : nullptr;
            }
            return nullptr;
        }
        IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override {
            return make(false, -1);
        }
        IDimensionExpr const* make(bool c, int64_t v) {
            exprs.emplace_back(new TestExpr(c, v));
            return exprs.back().get();
        }
        std::deque<std::unique_ptr<TestExpr>> exprs;
        int constants = 0;
    } impl_;
};

// TensorRT passes a context with its GPU allocator and error recorder; the plugin uses neither.
class TestResourceContext final : public IPluginResourceContext {
public:
    IGpuAllocator* getGpuAllocator() const noexcept override { return nullptr; }
    IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
    ~TestResourceContext() noexcept override = default;
};

// ---- tensors ----------------------------------------------------------------------------------
char const* const kNames[9] = {"'q'", "'k'", "'v'", "'win_a'", "'pos_a'", "'win_b'", "'pos_b'", "'bias'", "'output'"};

// Run-time descs of the 8 inputs + the output: N rows, C = 128 (4 heads x 32), S = 8 (S2 = 64,
// bias side 15), Wa = 3, Wb = 2; q / k / v / output of type t.
struct Shapes {
    PluginTensorDesc d[9]{};
    explicit Shapes(int64_t n = 10, DataType t = DataType::kFLOAT) {
        for (int i : {0, 1, 2, 8}) set(i, {n, 128});
        set(3, {3, 64});
        set(4, {n});
        set(5, {2, 64});
        set(6, {n});
        set(7, {4, 15, 15});
        for (int i = 0; i < 9; ++i) {
            d[i].format = TensorFormat::kLINEAR;
            d[i].type = i >= 3 && i <= 6 ? DataType::kINT32 : i == 7 ? DataType::kFLOAT : t;
        }
    }
    void set(int i, std::initializer_list<int64_t> dims) {
        d[i].dims.nbDims = int32_t(dims.size());
        int j = 0;
        for (int64_t v : dims) d[i].dims.d[j++] = v;
    }
};

// The type rule of the op contract (op.yaml), written out independently of the plugin.
bool type_ok(int pos, DataType t, DataType q) {
    switch (pos) {
    case 0: return t == DataType::kFLOAT || t == DataType::kHALF;
    case 1:
    case 2:
    case 8: return t == q;
    case 7: return t == DataType::kFLOAT;
    default: return t == DataType::kINT32;
    }
}

// ---- attributes -------------------------------------------------------------------------------
// One attribute field with its own storage (8 bytes, aligned for int64 / double).
struct Field {
    char const* name;
    PluginFieldType type;
    int32_t length;
    alignas(8) unsigned char bytes[16];
    bool null_data = false;
    template <typename T> static Field of(char const* name, PluginFieldType type, T value) {
        Field f{name, type, 1, {}};
        static_assert(sizeof(T) <= sizeof(f.bytes), "field value too large");
        std::memcpy(f.bytes, &value, sizeof(T));
        return f;
    }
};

// The creator's input: num_heads 4, head_dim 32, window 8, scale 1/sqrt(32), mode m; bit k of
// wide (k = 0..4 in that order) selects INT64 / FLOAT64 for attribute k.
std::vector<Field> attributes(unsigned wide = 0, int32_t mode = 1) {
    auto int_field = [&](char const* name, int32_t v, unsigned bit) {
        return wide & bit ? Field::of(name, PluginFieldType::kINT64, int64_t(v))
                          : Field::of(name, PluginFieldType::kINT32, v);
    };
    return {int_field("num_heads", 4, 1u), int_field("head_dim", 32, 2u), int_field("window", 8, 4u),
            wide & 8u ? Field::of("scale", PluginFieldType::kFLOAT64, double(0.17677669f))
                      : Field::of("scale", PluginFieldType::kFLOAT32, 0.17677669f),
            int_field("mode", mode, 16u),
            // what TensorRT's ONNX parser adds (ignored by the creator)
            Field::of("plugin_version", PluginFieldType::kCHAR, '1'),
            Field::of("plugin_namespace", PluginFieldType::kCHAR, 's')};
}

struct Collection {
    std::vector<PluginField> fields;
    PluginFieldCollection fc{};
    explicit Collection(std::vector<Field>& src) {
        for (Field& f : src) fields.emplace_back(f.name, f.null_data ? nullptr : f.bytes, f.type, f.length);
        fc.nbFields = int32_t(fields.size());
        fc.fields = fields.data();
    }
};

IPluginV3* create(IPluginCreatorV3One* creator, std::vector<Field> attrs, TensorRTPhase phase = TensorRTPhase::kBUILD) {
    Collection c(attrs);
    return creator->createPlugin("swa", &c.fc, phase);
}

size_t field_size(PluginFieldType t) {
    switch (t) {
    case PluginFieldType::kINT32:
    case PluginFieldType::kFLOAT32: return 4;
    case PluginFieldType::kINT64:
    case PluginFieldType::kFLOAT64: return 8;
    default: return 1;
    }
}

// Same names, types, lengths and bytes, field by field.
bool same_fields(PluginFieldCollection const* a, PluginFieldCollection const* b) {
    if (!a || !b || a->nbFields != b->nbFields) return false;
    for (int32_t i = 0; i < a->nbFields; ++i) {
        PluginField const &x = a->fields[i], &y = b->fields[i];
        if (std::strcmp(x.name, y.name) || x.type != y.type || x.length != y.length || !x.data || !y.data ||
            std::memcmp(x.data, y.data, field_size(x.type) * size_t(x.length)))
            return false;
    }
    return true;
}

template <typename T> T* capability(IPluginV3* p, PluginCapabilityType t) {
    return static_cast<T*>(p->getCapabilityInterface(t));
}

// ---- the checks -------------------------------------------------------------------------------
void check_creator(IPluginCreatorV3One* creator) {
    EXPECT(std::strcmp(creator->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0);
    EXPECT(!std::strcmp(creator->getPluginName(), "SparseWindowAttention"));
    EXPECT(!std::strcmp(creator->getPluginVersion(), "1"));
    EXPECT(!std::strcmp(creator->getPluginNamespace(), "span_deploy"));
    PluginFieldCollection const* names = creator->getFieldNames();
    EXPECT(names && names->nbFields == 5);
    if (names && names->nbFields == 5) {
        char const* want[5] = {"num_heads", "head_dim", "window", "scale", "mode"};
        for (int i = 0; i < 5; ++i) {
            EXPECT_AT(!std::strcmp(names->fields[i].name, want[i]), "field %d", i);
            EXPECT_AT(names->fields[i].type == (i == 3 ? PluginFieldType::kFLOAT32 : PluginFieldType::kINT32), "field %d", i);
        }
    }

    // Every INT32 / INT64 x FLOAT32 / FLOAT64 mix gives the same plugin, serialised as INT32 / FLOAT32.
    std::unique_ptr<IPluginV3> ref(create(creator, attributes()));
    EXPECT(ref != nullptr);
    if (!ref) return;
    PluginFieldCollection const* ref_fields =
        capability<IPluginV3OneRuntime>(ref.get(), PluginCapabilityType::kRUNTIME)->getFieldsToSerialize();
    for (unsigned wide = 0; wide < 32; ++wide) {
        std::unique_ptr<IPluginV3> p(create(creator, attributes(wide)));
        EXPECT_AT(p != nullptr, "wide mask %u", wide);
        if (p)
            EXPECT_AT(same_fields(capability<IPluginV3OneRuntime>(p.get(), PluginCapabilityType::kRUNTIME)
                                      ->getFieldsToSerialize(),
                                  ref_fields),
                      "wide mask %u", wide);
    }

    char const* names5[5] = {"num_heads", "head_dim", "window", "scale", "mode"};
    auto refused = [&](std::vector<Field> attrs, char const* expect_in_log, char const* what) {
        logged().clear();
        std::unique_ptr<IPluginV3> p(create(creator, std::move(attrs)));
        EXPECT_AT(p == nullptr, "%s accepted", what);
        EXPECT_AT(logged_has(expect_in_log), "%s: log '%s' lacks '%s'", what, logged().c_str(), expect_in_log);
    };
    for (int k = 0; k < 5; ++k) {
        // Every field type but the two accepted ones (values 0 .. kINT4 exist in every 10.x / 11.x header).
        for (int t = 0; t <= static_cast<int>(PluginFieldType::kINT4); ++t) {
            PluginFieldType const type = static_cast<PluginFieldType>(t);
            bool const accepted = k == 3 ? type == PluginFieldType::kFLOAT32 || type == PluginFieldType::kFLOAT64
                                         : type == PluginFieldType::kINT32 || type == PluginFieldType::kINT64;
            std::vector<Field> a = attributes();
            a[size_t(k)].type = type;
            std::string const what = std::string(names5[k]) + " as field type " + std::to_string(t);
            if (accepted) {
                std::unique_ptr<IPluginV3> p(create(creator, a));
                // the same 8 bytes read as another width: only check it does not crash
                (void)p;
            } else {
                refused(a, names5[k], what.c_str());
            }
        }
        for (int32_t len : {0, 2, -1}) {
            std::vector<Field> a = attributes();
            a[size_t(k)].length = len;
            refused(a, names5[k], (std::string(names5[k]) + " length " + std::to_string(len)).c_str());
        }
        {
            std::vector<Field> a = attributes();
            a[size_t(k)].null_data = true;
            refused(a, names5[k], (std::string(names5[k]) + " null data").c_str());
        }
        {
            std::vector<Field> a = attributes();
            a.erase(a.begin() + k);
            refused(a, "missing", (std::string(names5[k]) + " missing").c_str());
        }
    }
    // Values: beyond int32 as INT64, the CUDA limits, mode, non-positive or non-finite scale.
    {
        std::vector<Field> a = attributes(1u);
        a[0] = Field::of("num_heads", PluginFieldType::kINT64, (int64_t(1) << 32) + 4);
        refused(a, "num_heads", "num_heads 2^32 + 4 as INT64");
    }
    {
        std::vector<Field> a = attributes();
        a[3] = Field::of("scale", PluginFieldType::kFLOAT64, 1e300);
        refused(a, "scale", "scale 1e300 as FLOAT64");
    }
    struct Bad {
        int k;
        double v;
        char const* log;
    } bad[] = {{0, 0, "num_heads"},  {1, 0, "head_dim"},    {1, 512, "head_dim"}, {2, 0, "window"},
               {2, 56, "window"},    {4, 2, "mode"},        {4, -1, "mode"},      {3, 0, "scale"},
               {3, -1, "scale"},     {3, NAN, "scale"},     {3, INFINITY, "scale"}};
    for (Bad const& b : bad) {
        std::vector<Field> a = attributes();
        a[size_t(b.k)] = b.k == 3 ? Field::of("scale", PluginFieldType::kFLOAT32, float(b.v))
                                  : Field::of(names5[b.k], PluginFieldType::kINT32, int32_t(b.v));
        refused(a, b.log, (std::string(names5[b.k]) + " = " + std::to_string(b.v)).c_str());
    }
    // Unknown and unnamed fields are ignored; a null collection is refused.
    {
        std::vector<Field> a = attributes();
        a.push_back(Field::of("something_else", PluginFieldType::kINT32, int32_t(7)));
        a.push_back(Field::of(nullptr, PluginFieldType::kINT32, int32_t(7)));
        std::unique_ptr<IPluginV3> p(create(creator, a));
        EXPECT(p != nullptr);
    }
    EXPECT(creator->createPlugin("swa", nullptr, TensorRTPhase::kBUILD) == nullptr);
}

void check_build(IPluginV3* plugin) {
    auto* core = capability<IPluginV3OneCore>(plugin, PluginCapabilityType::kCORE);
    auto* build = capability<IPluginV3OneBuild>(plugin, PluginCapabilityType::kBUILD);
    EXPECT(core && build);
    if (!core || !build) return;
    EXPECT(!std::strcmp(core->getPluginName(), "SparseWindowAttention"));
    EXPECT(!std::strcmp(core->getPluginVersion(), "1"));
    EXPECT(!std::strcmp(core->getPluginNamespace(), "span_deploy"));
    EXPECT(plugin->getCapabilityInterface(static_cast<PluginCapabilityType>(7)) == nullptr);
    EXPECT(build->getNbOutputs() == 1);

    // Output type: q's.
    for (DataType q : {DataType::kHALF, DataType::kFLOAT}) {
        DataType in_types[8] = {q, q, q, DataType::kINT32, DataType::kINT32, DataType::kINT32, DataType::kINT32,
                                DataType::kFLOAT};
        DataType out_type = DataType::kINT8;
        EXPECT(build->getOutputDataTypes(&out_type, 1, in_types, 8) == 0 && out_type == q);
        EXPECT(build->getOutputDataTypes(&out_type, 1, in_types, 7) != 0);
    }

    // Output shape through the builder: (q's rows, C as a constant).
    {
        TestExprBuilder eb;
        DimsExprs in[8]{};
        for (auto& e : in) {
            e.nbDims = 2;
            e.d[0] = eb.symbol();
            e.d[1] = eb.symbol();
        }
        in[0].d[1] = eb.constant(128);
        int const made = eb.constants_made();
        DimsExprs out{};
        EXPECT(build->getOutputShapes(in, 8, nullptr, 0, &out, 1, eb) == 0);
        EXPECT(out.nbDims == 2 && out.d[0] == in[0].d[0]);
        EXPECT(out.d[1] && out.d[1]->isConstant() && out.d[1]->getConstantValue() == 128);
        EXPECT(eb.constants_made() == made + 1);
        in[0].d[1] = eb.symbol();  // q's columns dynamic: C is still known from the attributes
        EXPECT(build->getOutputShapes(in, 8, nullptr, 0, &out, 1, eb) == 0);
        EXPECT(out.d[1] && out.d[1]->isConstant() && out.d[1]->getConstantValue() == 128);
        EXPECT(build->getOutputShapes(in, 7, nullptr, 0, &out, 1, eb) != 0);
        EXPECT(build->getOutputShapes(in, 8, nullptr, 0, &out, 2, eb) != 0);
        in[0].nbDims = 3;
        in[0].d[2] = eb.symbol();
        logged().clear();
        EXPECT(build->getOutputShapes(in, 8, nullptr, 0, &out, 1, eb) != 0);
        EXPECT(logged_has("'q'"));
    }

    // supportsFormatCombination: every position x every DataType of this header, for q float32 and
    // float16; every non-linear format refused; out-of-range positions and counts refused.
    int const n_types = EnumMax<DataType>();
    int const n_formats = EnumMax<TensorFormat>();
    EXPECT(n_types >= 10 && n_formats >= 13);
    for (DataType q : {DataType::kFLOAT, DataType::kHALF}) {
        Shapes s(10, q);
        DynamicPluginTensorDesc base[9]{};
        for (int i = 0; i < 9; ++i) base[i].desc = s.d[i];
        for (int pos = 0; pos < 9; ++pos) {
            EXPECT_AT(build->supportsFormatCombination(pos, base, 8, 1), "pos %d valid", pos);
            for (int t = 0; t < n_types; ++t) {
                DynamicPluginTensorDesc io[9];
                std::memcpy(io, base, sizeof io);
                io[pos].desc.type = static_cast<DataType>(t);
                bool const want = type_ok(pos, io[pos].desc.type, q);
                EXPECT_AT(build->supportsFormatCombination(pos, io, 8, 1) == want, "pos %d type %d (q type %d)", pos, t,
                          static_cast<int>(q));
            }
            for (int f = 0; f < n_formats; ++f) {
                if (static_cast<TensorFormat>(f) == TensorFormat::kLINEAR) continue;
                DynamicPluginTensorDesc io[9];
                std::memcpy(io, base, sizeof io);
                io[pos].desc.format = static_cast<TensorFormat>(f);
                EXPECT_AT(!build->supportsFormatCombination(pos, io, 8, 1), "pos %d format %d", pos, f);
            }
        }
        EXPECT(!build->supportsFormatCombination(9, base, 8, 1));
        EXPECT(!build->supportsFormatCombination(-1, base, 8, 1));
        EXPECT(!build->supportsFormatCombination(0, base, 7, 1));
        EXPECT(!build->supportsFormatCombination(0, base, 8, 2));
    }

    // configurePlugin: types of every input and the output, then shapes (-1 = dynamic).
    {
        Shapes ok;
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
        for (int pos = 0; pos < 9; ++pos)
            for (int t = 0; t < n_types; ++t) {
                DataType const type = static_cast<DataType>(t);
                if (type_ok(pos, type, DataType::kFLOAT)) continue;
                dynamic_rows(ok);
                dyn[pos].desc.type = type;
                logged().clear();
                EXPECT_AT(build->configurePlugin(dyn, 8, dyn + 8, 1) != 0, "pos %d type %d", pos, t);
                // a wrong q type is reported on q; k / v / output then disagree with nothing else
                EXPECT_AT(logged_has(kNames[pos]), "pos %d type %d: %s", pos, t, logged().c_str());
            }
        dynamic_rows(ok);
        dyn[3].desc.format = TensorFormat::kHWC;
        logged().clear();
        EXPECT(build->configurePlugin(dyn, 8, dyn + 8, 1) != 0 && logged_has("'win_a'"));
        dynamic_rows(ok);
        for (int i : {0, 1, 2, 8}) dyn[i].desc.type = DataType::kHALF;  // float16 throughout: fine
        EXPECT(build->configurePlugin(dyn, 8, dyn + 8, 1) == 0);

        dynamic_rows(ok);
        dyn[4].desc.dims.d[0] = 11;  // pos_a rows known (11), q's dynamic: fine
        EXPECT(build->configurePlugin(dyn, 8, dyn + 8, 1) == 0);
        dyn[1].desc.dims.d[0] = 12;  // k known as 12: then pos_a (11) disagrees
        logged().clear();
        EXPECT(build->configurePlugin(dyn, 8, dyn + 8, 1) != 0);
        EXPECT(logged_has("'pos_a'"));
        dynamic_rows(ok);
        dyn[0].desc.dims.d[0] = 10;             // q fixed at 10 rows
        dyn[6].min.d[0] = dyn[6].max.d[0] = 9;  // pos_b: dynamic, but its profile allows 9 only
        logged().clear();
        EXPECT(build->configurePlugin(dyn, 8, dyn + 8, 1) != 0);
        EXPECT(logged_has("'pos_b'"));
        dynamic_rows(ok);
        dyn[2].desc.dims.d[1] = 127;  // v columns != num_heads * head_dim
        logged().clear();
        EXPECT(build->configurePlugin(dyn, 8, dyn + 8, 1) != 0);
        EXPECT(logged_has("'v'"));
        EXPECT(build->configurePlugin(dyn, 7, dyn + 8, 1) != 0);
    }
}

void check_serialisation(IPluginCreatorV3One* creator, IPluginV3* plugin) {
    auto* runtime = capability<IPluginV3OneRuntime>(plugin, PluginCapabilityType::kRUNTIME);
    PluginFieldCollection const* ser = runtime->getFieldsToSerialize();
    EXPECT(ser && ser->nbFields == 5);
    if (!ser || ser->nbFields != 5) return;
    int32_t const want_i[5] = {4, 32, 8, 0, 1};
    for (int i = 0; i < 5; ++i) {
        PluginField const& f = ser->fields[i];
        EXPECT_AT(f.length == 1 && f.data, "field %d", i);
        if (i == 3)
            EXPECT(f.type == PluginFieldType::kFLOAT32 && *static_cast<float const*>(f.data) == 0.17677669f);
        else
            EXPECT_AT(f.type == PluginFieldType::kINT32 && *static_cast<int32_t const*>(f.data) == want_i[i], "field %d", i);
    }
    // Deserialisation: the runtime phase of the creator gets exactly these fields back.
    std::unique_ptr<IPluginV3> restored(creator->createPlugin("swa", ser, TensorRTPhase::kRUNTIME));
    EXPECT(restored != nullptr);
    if (restored)
        EXPECT(same_fields(capability<IPluginV3OneRuntime>(restored.get(), PluginCapabilityType::kRUNTIME)
                               ->getFieldsToSerialize(),
                           ser));
    // clone: a separate object with its own interfaces and the same fields.
    std::unique_ptr<IPluginV3> copy(plugin->clone());
    EXPECT(copy != nullptr && copy.get() != plugin);
    if (copy) {
        auto* copy_rt = capability<IPluginV3OneRuntime>(copy.get(), PluginCapabilityType::kRUNTIME);
        EXPECT(copy_rt != runtime && same_fields(copy_rt->getFieldsToSerialize(), ser));
    }
    // attachToContext: TensorRT's per-execution-context clone.
    TestResourceContext ctx;
    std::unique_ptr<IPluginV3> attached(runtime->attachToContext(&ctx));
    EXPECT(attached != nullptr && attached.get() != plugin);
    if (attached)
        EXPECT(same_fields(capability<IPluginV3OneRuntime>(attached.get(), PluginCapabilityType::kRUNTIME)
                               ->getFieldsToSerialize(),
                           ser));
}

void check_run_time(IPluginCreatorV3One* creator, IPluginV3* plugin) {
    auto* runtime = capability<IPluginV3OneRuntime>(plugin, PluginCapabilityType::kRUNTIME);
    void const* no_inputs[8] = {};
    void* no_outputs[1] = {};
    int const n_types = EnumMax<DataType>();
    auto refused_both = [&](Shapes const& bad, char const* name, std::string const& what) {
        logged().clear();
        EXPECT_AT(runtime->onShapeChange(bad.d, 8, bad.d + 8, 1) != 0, "onShapeChange %s", what.c_str());
        EXPECT_AT(logged_has(name), "onShapeChange %s: log '%s' lacks %s", what.c_str(), logged().c_str(), name);
        logged().clear();
        EXPECT_AT(runtime->enqueue(bad.d, bad.d + 8, no_inputs, no_outputs, nullptr, nullptr) != 0, "enqueue %s",
                  what.c_str());
        EXPECT_AT(logged_has(name), "enqueue %s: log '%s' lacks %s", what.c_str(), logged().c_str(), name);
    };

    for (DataType q : {DataType::kFLOAT, DataType::kHALF}) {
        Shapes ok(10, q);
        EXPECT(runtime->onShapeChange(ok.d, 8, ok.d + 8, 1) == 0);
    }
    {
        Shapes ok;
        EXPECT(runtime->onShapeChange(ok.d, 7, ok.d + 8, 1) != 0);
        EXPECT(runtime->onShapeChange(ok.d, 8, ok.d + 8, 2) != 0);
    }
    // Shapes: every dim that an attribute or q's rows fix, off by one; one dim too many.
    Shapes ok;
    for (int i = 0; i < 8; ++i) {
        for (int axis = 0; axis < ok.d[i].dims.nbDims; ++axis) {
            if (axis == 0 && (i == 0 || i == 3 || i == 5)) continue;  // N, Wa, Wb are free
            Shapes bad;
            bad.d[i].dims.d[axis] += 1;
            refused_both(bad, kNames[i], std::string(kNames[i]) + " axis " + std::to_string(axis));
        }
        Shapes bad_rank;
        bad_rank.d[i].dims.d[bad_rank.d[i].dims.nbDims++] = 1;
        refused_both(bad_rank, kNames[i], std::string(kNames[i]) + " rank + 1");
    }
    // The output: (N, C) exactly.
    for (int variant = 0; variant < 3; ++variant) {
        Shapes bad;
        if (variant == 0) bad.d[8].dims.d[0] += 1;
        if (variant == 1) bad.d[8].dims.d[1] -= 1;
        if (variant == 2) bad.set(8, {10 * 128});
        refused_both(bad, "'output'", "output variant " + std::to_string(variant));
    }
    // Types: every wrong DataType at every position (q float32), and float16 k with float32 q.
    for (int pos = 0; pos < 9; ++pos)
        for (int t = 0; t < n_types; ++t) {
            DataType const type = static_cast<DataType>(t);
            if (type_ok(pos, type, DataType::kFLOAT)) continue;
            Shapes bad;
            bad.d[pos].type = type;
            refused_both(bad, kNames[pos], std::string(kNames[pos]) + " type " + std::to_string(t));
        }
    {
        Shapes mixed;
        mixed.d[0].type = DataType::kHALF;  // a valid q type, but k (float32) no longer matches it
        refused_both(mixed, "'k'", "float16 q, float32 k");
        Shapes half_bias(10, DataType::kHALF);
        half_bias.d[7].type = DataType::kHALF;  // bias stays float32 with float16 q
        refused_both(half_bias, "'bias'", "float16 bias");
        Shapes bad_format;
        bad_format.d[6].format = TensorFormat::kCHW32;
        refused_both(bad_format, "'pos_b'", "pos_b format");
    }
    // Tables without a window while there are rows.
    {
        Shapes no_a;
        no_a.set(3, {0, 64});
        refused_both(no_a, "'win_a'", "Wa = 0");
        Shapes no_b;
        no_b.set(5, {0, 64});
        refused_both(no_b, "'win_b'", "Wb = 0 (mode 1)");
        // N = 0: nothing to attend, no windows needed; enqueue returns before any CUDA call.
        Shapes empty(0);
        empty.set(3, {0, 64});
        empty.set(5, {0, 64});
        EXPECT(runtime->onShapeChange(empty.d, 8, empty.d + 8, 1) == 0);
        EXPECT(runtime->enqueue(empty.d, empty.d + 8, no_inputs, no_outputs, nullptr, nullptr) == 0);
    }

    // mode 0: win_b / pos_b shapes are ignored (any), their type is still int32; the rest is checked.
    std::unique_ptr<IPluginV3> p0(create(creator, attributes(0, 0), TensorRTPhase::kRUNTIME));
    EXPECT(p0 != nullptr);
    if (p0) {
        auto* rt0 = capability<IPluginV3OneRuntime>(p0.get(), PluginCapabilityType::kRUNTIME);
        Shapes s;
        s.set(5, {1, 1, 1});
        s.set(6, {3});
        EXPECT(rt0->onShapeChange(s.d, 8, s.d + 8, 1) == 0);
        s.set(5, {0, 64});  // no B windows: fine in mode 0
        EXPECT(rt0->onShapeChange(s.d, 8, s.d + 8, 1) == 0);
        s.d[6].type = DataType::kINT64;
        logged().clear();
        EXPECT(rt0->onShapeChange(s.d, 8, s.d + 8, 1) != 0 && logged_has("'pos_b'"));
        s.d[6].type = DataType::kINT32;
        s.set(4, {9});
        logged().clear();
        EXPECT(rt0->onShapeChange(s.d, 8, s.d + 8, 1) != 0 && logged_has("'pos_a'"));
        EXPECT(rt0->enqueue(s.d, s.d + 8, no_inputs, no_outputs, nullptr, nullptr) != 0);
    }
}

}  // namespace

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
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    auto get_creators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    auto set_finder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"));
    EXPECT(get_creators != nullptr && set_finder != nullptr);
    if (!get_creators || !set_finder) return 1;
    set_finder(&g_finder);  // what TensorRT does right after loading the library
    int32_t n = 0;
    IPluginCreatorInterface* const* creators = get_creators(n);
    EXPECT(n == 1 && creators && creators[0]);
    if (n != 1 || !creators || !creators[0]) return 1;
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);

    check_creator(creator);
    std::unique_ptr<IPluginV3> plugin(create(creator, attributes()));
    EXPECT(plugin != nullptr);
    if (plugin) {
        check_build(plugin.get());
        check_serialisation(creator, plugin.get());
        check_run_time(creator, plugin.get());
    }
    if (g_failures) std::fprintf(stderr, "last plugin message: %s\n", logged().c_str());
    set_finder(nullptr);

    std::printf("TRT plugin smoke (TensorRT %d.%d.%d headers): %s\n", NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR,
                NV_TENSORRT_PATCH, g_failures ? "FAILED" : "OK");
    return g_failures ? 1 : 0;
}
