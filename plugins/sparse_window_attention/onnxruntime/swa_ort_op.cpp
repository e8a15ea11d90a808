// ONNX Runtime custom-op library: span_deploy::SparseWindowAttention (contract: ../op.yaml, ../README.md).
// Four kernels share one schema: {CPU, CUDA} x {float32, float16}; ORT picks by EP and q's type.
// Built against the ORT 1.21 headers with ORT_API_MANUAL_INIT, so it loads into any runtime
// that still serves API version 21 (every ORT >= 1.21).
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <atomic>
#include <vector>

#include "swa_kernels.h"

namespace {

using span_deploy::SwaHalf;
using span_deploy::SwaParams;

constexpr const char* kDomain = "span_deploy";
constexpr const char* kOpName = "SparseWindowAttention";
constexpr size_t kNumInputs = 8;
// ParallelFor tasks: about kTasks of them (load balance up to ~16 threads), at least kMinRowsPerTask
// rows each. Long row runs keep a window's queries in one task, so its key rows are read once
// instead of once per 32-row slice (measured: stage 0 at 100k rows was bound by those re-reads).
constexpr int64_t kMinRowsPerTask = 32;
constexpr int64_t kTasks = 64;

struct Attributes {
    int64_t num_heads = 0, head_dim = 0, window = 0, mode = 0;
    float scale = 0.f;
};

Attributes read_attributes(const OrtKernelInfo* info) {
    Ort::ConstKernelInfo ki(info);
    Attributes a;
    a.num_heads = ki.GetAttribute<int64_t>("num_heads");
    a.head_dim = ki.GetAttribute<int64_t>("head_dim");
    a.window = ki.GetAttribute<int64_t>("window");
    a.scale = ki.GetAttribute<float>("scale");
    a.mode = ki.GetAttribute<int64_t>("mode");
    if (a.num_heads <= 0 || a.head_dim <= 0 || a.window <= 0 || (a.mode != 0 && a.mode != 1))
        throw std::invalid_argument("SparseWindowAttention: need num_heads, head_dim, window > 0 and mode in {0, 1}");
    if (a.num_heads > INT32_MAX || a.head_dim > INT32_MAX || a.window > INT32_MAX)
        throw std::invalid_argument("SparseWindowAttention: num_heads, head_dim and window must fit int32");
    return a;
}

// Checks the input shapes against the attributes (the shared check of kernels/, op.yaml) and
// fills the size and table part of SwaParams. win_b / pos_b are ignored when mode == 0.
SwaParams make_params(const Attributes& a, Ort::KernelContext& ctx) {
    SwaParams p;
    p.num_heads = int32_t(a.num_heads);
    p.head_dim = int32_t(a.head_dim);
    p.window = int32_t(a.window);
    p.mode = int32_t(a.mode);
    p.scale = a.scale;
    const size_t count = ctx.GetInputCount();
    span_deploy::SwaShape shapes[span_deploy::kSwaNumInputs];
    for (size_t i = 0; i < std::min(count, kNumInputs); ++i) {
        const std::vector<int64_t> dims = ctx.GetInput(i).GetTensorTypeAndShapeInfo().GetShape();
        shapes[i] = span_deploy::swa_shape(dims.data(), int64_t(dims.size()));
    }
    const std::string err = span_deploy::swa_check_shapes(p, shapes, int32_t(count));
    if (!err.empty()) throw std::invalid_argument("SparseWindowAttention: " + err);
    p.win_a = ctx.GetInput(3).GetTensorData<int32_t>();
    p.pos_a = ctx.GetInput(4).GetTensorData<int32_t>();
    p.bias = ctx.GetInput(7).GetTensorData<float>();
    if (p.mode == 1) {
        p.win_b = ctx.GetInput(5).GetTensorData<int32_t>();
        p.pos_b = ctx.GetInput(6).GetTensorData<int32_t>();
    }
    return p;
}

template <typename T> struct Storage;  // ORT element type -> kernel element type
template <> struct Storage<float> { using type = float; };
template <> struct Storage<Ort::Float16_t> { using type = SwaHalf; };

template <typename T> struct RowTask {
    const SwaParams* p;
    const T *q, *k, *v;
    T* out;
    int64_t rows_per_task = kMinRowsPerTask;
};

template <typename T, bool kCuda>
struct SwaKernel {
    explicit SwaKernel(const OrtKernelInfo* info) : attrs(read_attributes(info)) {}

    OrtStatusPtr ComputeV2(OrtKernelContext* context) noexcept {
        try {
            Ort::KernelContext ctx(context);
            const SwaParams p = make_params(attrs, ctx);
            using S = typename Storage<T>::type;
            auto data = [&](size_t i) { return reinterpret_cast<const S*>(ctx.GetInput(i).GetTensorData<T>()); };
            const int64_t C = int64_t(p.num_heads) * p.head_dim;
            S* out = reinterpret_cast<S*>(ctx.GetOutput(0, {p.n, C}).GetTensorMutableData<T>());
            if (p.n == 0) return nullptr;
            if constexpr (kCuda) {
                std::string err = span_deploy::swa_check_cuda_limits(p);
                if (!err.empty()) throw std::invalid_argument("SparseWindowAttention (CUDA): " + err);
                const auto stream = static_cast<cudaStream_t>(ctx.GetGPUComputeStream());
                const int rc = span_deploy::swa_forward_cuda(p, data(0), data(1), data(2), out, stream);
                if (rc != 0)
                    throw std::runtime_error(std::string("SparseWindowAttention CUDA launch failed: ") +
                                             span_deploy::swa_cuda_error_string(rc));
            } else {
                const std::string err = span_deploy::swa_check_tables_host(p);
                if (!err.empty()) throw std::invalid_argument("SparseWindowAttention: " + err);
                RowTask<S> task{&p, data(0), data(1), data(2), out};
                const int64_t rows_per_task = std::max(kMinRowsPerTask, (p.n + kTasks - 1) / kTasks);
                task.rows_per_task = rows_per_task;
                const size_t tasks = size_t((p.n + rows_per_task - 1) / rows_per_task);
                // ORT's intra-op pool (runs inline with intra_op_num_threads = 1).
                ctx.ParallelFor(
                    [](void* user, size_t t) {
                        const auto* tk = static_cast<const RowTask<S>*>(user);
                        const int64_t b = int64_t(t) * tk->rows_per_task;
                        const int64_t e = std::min(tk->p->n, b + tk->rows_per_task);
                        span_deploy::swa_forward_cpu_rows(*tk->p, tk->q, tk->k, tk->v, tk->out, b, e);
                    },
                    tasks, 0, &task);
            }
            return nullptr;
        } catch (const Ort::Exception& e) {
            return Ort::Status(e).release();
        } catch (const std::exception& e) {
            return Ort::Status(e).release();
        }
    }

    Attributes attrs;
};

template <typename T, bool kCuda>
struct SwaOp : Ort::CustomOpBase<SwaOp<T, kCuda>, SwaKernel<T, kCuda>, true> {
    SwaOp() {
        // Output = q's shape. Rows are symbolic: copy q's symbolic dim names, since a bare -1 would
        // be taken as a value by ORT's shape inference (and break e.g. a following Concat).
        this->InferOutputShapeFn = [](const OrtCustomOp*, OrtShapeInferContext* ctx) -> OrtStatusPtr {
            const OrtApi& api = Ort::GetApi();
            OrtTensorTypeAndShapeInfo* in = nullptr;  // owned by ctx
            if (OrtStatusPtr st = api.ShapeInferContext_GetInputTypeShape(ctx, 0, &in)) return st;
            size_t rank = 0;
            if (OrtStatusPtr st = api.GetDimensionsCount(in, &rank)) return st;
            std::vector<int64_t> dims(rank);
            std::vector<const char*> names(rank, "");
            if (OrtStatusPtr st = api.GetDimensions(in, dims.data(), rank)) return st;
            if (OrtStatusPtr st = api.GetSymbolicDimensions(in, names.data(), rank)) return st;
            // An unnamed dynamic dim gets a name of its own: one shared name would tell ORT that the
            // row counts of different stages are equal, and its buffer planner would act on that.
            static std::atomic<unsigned> counter{0};
            std::vector<std::string> fresh(rank);
            for (size_t i = 0; i < rank; ++i)
                if (dims[i] < 0 && (names[i] == nullptr || names[i][0] == '\0')) {
                    fresh[i] = "swa_rows_" + std::to_string(counter++);
                    names[i] = fresh[i].c_str();
                }
            ONNXTensorElementDataType type;
            if (OrtStatusPtr st = api.GetTensorElementType(in, &type)) return st;
            OrtTensorTypeAndShapeInfo* out = nullptr;
            if (OrtStatusPtr st = api.CreateTensorTypeAndShapeInfo(&out)) return st;
            OrtStatusPtr st = api.SetTensorElementType(out, type);
            if (!st) st = api.SetDimensions(out, dims.data(), rank);
            if (!st) st = api.SetSymbolicDimensions(out, names.data(), rank);
            if (!st) st = api.ShapeInferContext_SetOutputTypeShape(ctx, 0, out);
            api.ReleaseTensorTypeAndShapeInfo(out);
            return st;
        };
    }

    OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const noexcept {
        try {
            *kernel = new SwaKernel<T, kCuda>(info);
            return nullptr;
        } catch (const Ort::Exception& e) {
            return Ort::Status(e).release();
        } catch (const std::exception& e) {
            return Ort::Status(e).release();
        }
    }

    const char* GetName() const { return kOpName; }
    const char* GetExecutionProviderType() const { return kCuda ? "CUDAExecutionProvider" : nullptr; }
    size_t GetInputTypeCount() const { return kNumInputs; }
    ONNXTensorElementDataType GetInputType(size_t i) const {
        if (i <= 2) return Ort::TypeToTensorType<T>::type;
        return i == 7 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT : ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
    }
    size_t GetOutputTypeCount() const { return 1; }
    ONNXTensorElementDataType GetOutputType(size_t) const { return Ort::TypeToTensorType<T>::type; }
};

SwaOp<float, false> g_cpu_f32;
SwaOp<Ort::Float16_t, false> g_cpu_f16;
#ifdef SPAN_WITH_CUDA
SwaOp<float, true> g_cuda_f32;
SwaOp<Ort::Float16_t, true> g_cuda_f16;
#endif

// A domain must outlive every session that registered it; keep them for the process lifetime.
std::mutex g_domains_mutex;
std::vector<Ort::CustomOpDomain> g_domains;

}  // namespace

// The library is built with hidden visibility; this is its one exported symbol.
extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options,
                                                                const OrtApiBase* api_base) {
    const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
    if (!api) {
        // Runtime older than the headers: report through the oldest API table, which every runtime has.
        return api_base->GetApi(1)->CreateStatus(
            ORT_FAIL, "libspan_deploy_ops needs ONNX Runtime >= 1.21 (C API version 21)");
    }
    Ort::InitApi(api);
    try {
        Ort::CustomOpDomain domain(kDomain);
        domain.Add(&g_cpu_f32);
        domain.Add(&g_cpu_f16);
#ifdef SPAN_WITH_CUDA
        domain.Add(&g_cuda_f32);
        domain.Add(&g_cuda_f16);
#endif
        Ort::UnownedSessionOptions(options).Add(domain);
        std::lock_guard<std::mutex> lock(g_domains_mutex);
        g_domains.push_back(std::move(domain));
    } catch (const Ort::Exception& e) {
        return Ort::Status(e).release();
    }
    return nullptr;
}
