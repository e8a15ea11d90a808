/* span_deploy.h: the span-deploy C runtime. Runs an exported SPAN model (model.onnx written by
 * `span-deploy export`, or a model directory) on one slide through ONNX Runtime, or a TensorRT engine
 * (model.engine + model.engine.json written by `span-deploy build-engine`) when the runtime was built
 * with TensorRT (span_runtime_backends()), with the host rulebook (span_deploy/rulebook in Python)
 * computed in C++: no Python anywhere.
 *
 * Conventions
 *  - Every function that can fail returns a span_status; SPAN_OK (0) is success. On failure
 *    span_last_error() gives a message for this thread (what was wrong and what to do), valid until
 *    the next span_* call on the same thread. No C++ exception crosses this interface.
 *  - Handles are opaque; each span_*_free accepts NULL. Pointers inside a span_tensor stay valid until
 *    the handle they came from is freed.
 *  - Thread safety: a span_model is immutable after span_model_open; any number of threads may call
 *    span_model_run / span_rulebook_for_model on one model at once (each call builds its own rulebook
 *    and result). ONNX Runtime: sessions' Run is thread-safe, the calls run concurrently. TensorRT:
 *    an execution context is not thread-safe, so each run takes one from the model's pool of
 *    span_open_options.trt_contexts contexts (default 1), waiting while all are busy: with the
 *    default the runs of one model are serialised (each context has its own CUDA stream and device
 *    buffers; more contexts run slides concurrently at the cost of GPU memory). Results and
 *    rulebooks are not shared between calls; use one from several threads only for reading.
 *  - Patch arrays of a result are in the caller's input row order (row i = coordinates row i).
 */
#ifndef SPAN_DEPLOY_SPAN_DEPLOY_H
#define SPAN_DEPLOY_SPAN_DEPLOY_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#if defined(SPAN_DEPLOY_BUILDING)
#define SPAN_API __declspec(dllexport)
#else
#define SPAN_API __declspec(dllimport)
#endif
#else
#define SPAN_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define SPAN_DEPLOY_VERSION "0.1.0"
/* The rulebook tables this runtime builds (span_deploy/rulebook/TABLES.md, RULEBOOK_VERSION). */
#define SPAN_RULEBOOK_VERSION 1
#define SPAN_MAX_DIMS 4

typedef enum span_status {
  SPAN_OK = 0,
  SPAN_ERR_INVALID_ARGUMENT = 1, /* a NULL handle or pointer, a negative count, threads < 0 */
  SPAN_ERR_IO = 2,               /* a file or folder that is missing or unreadable (model, ops library) */
  SPAN_ERR_MODEL = 3,            /* not a span-deploy export / model directory, damaged metadata, another
                                    rulebook version, inputs or outputs that do not match the contract */
  SPAN_ERR_CONFIG = 4,           /* a config JSON that is not valid JSON or not a span-deploy config */
  SPAN_ERR_FEATURES = 5,         /* features of the wrong width, NaN / Inf features */
  SPAN_ERR_RULEBOOK = 6,         /* coordinates the rulebook refuses (Python's RulebookError): none, NaN,
                                    two patches in one grid cell, a grid too large, no conv output sites */
  SPAN_ERR_RUNTIME = 7,          /* ONNX Runtime, TensorRT or CUDA failed to load or run the model; a TensorRT
                                    engine opened by a runtime built without TensorRT, or without libnvinfer */
  SPAN_ERR_NOT_FOUND = 8,        /* no table / output of that name, index out of range */
  SPAN_ERR_INTERNAL = 9,         /* out of memory, or a bug */
  SPAN_ERR_PROFILE = 10          /* TensorRT: the slide does not fit the engine's optimisation profile (more
                                    patches than its max tokens): rebuild the engine, or run it on ONNX Runtime */
} span_status;

typedef enum span_dtype {
  SPAN_DTYPE_FLOAT32 = 1,
  SPAN_DTYPE_INT32 = 2,
  SPAN_DTYPE_INT64 = 3,
  SPAN_DTYPE_FLOAT64 = 4
} span_dtype;

/* A named, C-order, read-only array owned by a result or rulebook handle. */
typedef struct span_tensor {
  const char* name;
  span_dtype dtype;
  int32_t ndim;
  int64_t shape[SPAN_MAX_DIMS];
  const void* data; /* may be NULL when the tensor has no elements */
} span_tensor;

typedef struct span_model span_model;
typedef struct span_result span_result;
typedef struct span_rulebook span_rulebook;

/* ---- library ---------------------------------------------------------------------------------- */
SPAN_API const char* span_version(void);
/* The message of this thread's last failed call ("" when none). */
SPAN_API const char* span_last_error(void);
/* "SPAN_OK", "SPAN_ERR_RULEBOOK", ... */
SPAN_API const char* span_status_name(span_status status);

/* ---- model ------------------------------------------------------------------------------------ */
/* Open a span-deploy ONNX export (model.onnx) or a model directory (DIR/deploy.json names the ONNX);
 * span_model_open_ex below with backend "auto" (so a TensorRT engine opens too where the runtime has
 * TensorRT).
 * ops_library: libspan_deploy_ops.so, needed by attention=plugin exports; NULL or "" looks in
 * $SPAN_DEPLOY_OPS_LIB, next to this library, then in the model's folder. Portable exports need none.
 * threads: ONNX Runtime intra-op threads, 0 = its default. */
SPAN_API span_status span_model_open(const char* path, const char* ops_library, int32_t threads,
                                     span_model** out);

/* span_model_open with more options, and TensorRT engines. Fill the struct with span_open_options_init
 * (defaults, struct_size), then set what you need; fields added later go at the end, and a caller
 * built against an older header keeps working (the runtime reads only struct_size bytes).
 * Which file runs where (backend NULL, "" or "auto"):
 *   model.onnx                      ONNX Runtime (as span_model_open)
 *   model.engine (.plan, .trt; or any non-.onnx file with a PATH.json sidecar)   TensorRT
 *   a model directory               TensorRT when deploy.json's target.backend is trt, files.engine names
 *                                   an engine and this runtime has TensorRT; else its ONNX on ONNX Runtime
 * backend "ort" / "trt" forces one (an error when the path has no file for it).
 * A TensorRT engine needs its sidecar ENGINE.json (config, names, max_tokens), libnvinfer of the
 * TensorRT major version the runtime was built with (loaded when the first engine is opened;
 * $SPAN_DEPLOY_NVINFER_LIB overrides the file), a CUDA GPU, and for attention=plugin engines the plugin
 * library libspan_deploy_trt_plugin.so: plugin_library, else $SPAN_DEPLOY_TRT_PLUGIN_LIB, next to this
 * library, then in the model's folder (not needed when SparseWindowAttention/1/span_deploy is
 * registered already). TensorRT's messages go to stderr at warning level and up
 * ($SPAN_DEPLOY_TRT_LOG: none | error | warning | info | verbose); its errors are also part of
 * span_last_error(). */
typedef struct span_open_options {
  uint32_t struct_size;       /* sizeof(span_open_options) */
  const char* backend;        /* NULL / "" / "auto", "ort", "trt" */
  const char* ops_library;    /* ONNX Runtime custom-op library (as span_model_open's), NULL: looked for */
  const char* plugin_library; /* TensorRT plugin library, NULL: looked for */
  int32_t threads;            /* ONNX Runtime intra-op threads, 0 = its default */
  int32_t device;             /* TensorRT: CUDA device ordinal (default 0) */
  int32_t trt_contexts;       /* TensorRT: execution contexts, i.e. concurrent runs of this model (0 = 1) */
} span_open_options;

SPAN_API void span_open_options_init(span_open_options* options);
/* options NULL: the defaults. */
SPAN_API span_status span_model_open_ex(const char* path, const span_open_options* options, span_model** out);
/* "ort", or "ort,trt" when this runtime was built with TensorRT (it can open engines). */
SPAN_API const char* span_runtime_backends(void);
SPAN_API void span_model_free(span_model* model);
SPAN_API const char* span_model_task(const span_model* model);      /* classification|survival|segmentation */
SPAN_API const char* span_model_attention(const span_model* model); /* plugin | portable */
SPAN_API const char* span_model_precision(const span_model* model); /* fp32 | fp16 (trt: the engine's) */
SPAN_API const char* span_model_backend(const span_model* model);   /* ort | trt */
SPAN_API const char* span_model_onnx_path(const span_model* model); /* the file opened: the ONNX, or the engine (trt) */
SPAN_API const char* span_model_metadata_json(const span_model* model); /* the export's span_deploy metadata
                                                                           (trt: the engine sidecar's) */
SPAN_API int64_t span_model_feat_dim(const span_model* model);      /* F */
SPAN_API int64_t span_model_num_outputs(const span_model* model);   /* C (classes / survival bins), 1 for segmentation */
SPAN_API double span_model_threshold(const span_model* model);      /* segmentation: positive at probability >= it */

/* Run one slide: feats (n, f) float32 C order, coords (n, 2) raw level-0 pixel coordinates on the
 * 224-px grid (the official `cords`), in the same row order. Result tensors (input row order):
 *   classification / survival: logits (C), slide_embedding (E), stage{s}_globals (G, D_s),
 *     patch_features (n, D_0), patch_scores (n), stage_sizes int64 (stages), timings float64
 *     (rulebook, compute, total seconds; trt: compute includes the GPU copies)
 *   segmentation: patch_logits (n), patch_scores (n) = sigmoid(patch_logits), slide_embedding,
 *     stage{s}_globals, patch_features, stage_sizes, timings */
/* TensorRT: a slide the engine's optimisation profile cannot take is SPAN_ERR_PROFILE. */
SPAN_API span_status span_model_run(const span_model* model, const float* feats, int64_t n, int64_t f,
                                    const int64_t* coords, span_result** out);
/* The same with float64 coordinates (some feature files store them as floats). */
SPAN_API span_status span_model_run_f64(const span_model* model, const float* feats, int64_t n, int64_t f,
                                        const double* coords, span_result** out);

/* ---- result ----------------------------------------------------------------------------------- */
SPAN_API void span_result_free(span_result* result);
SPAN_API size_t span_result_count(const span_result* result);
SPAN_API span_status span_result_get(const span_result* result, size_t index, span_tensor* out);
SPAN_API span_status span_result_find(const span_result* result, const char* name, span_tensor* out);

/* ---- rulebook alone --------------------------------------------------------------------------- */
/* Build the host rulebook of one slide for a config: config_json is the `config` object of an
 * export's metadata (SpanConfig.to_dict() as JSON), or the whole metadata object (with "config").
 * Tables: first the engine inputs of the tensor contract except feats, in graph order (s{s}_win_u,
 * s{s}_pos_u, ..., d{i}_gather; int32 / float32 as io.engine_inputs), then sort_index int64 (N),
 * norm_coords int32 (N, 2), patch_rows int64 (N), padding int64 (left_a, left_b, right_a, right_b,
 * lead, trail), stage_sizes int64 (S), stage{s}_coords int64 (n_s, 2), stage{s}_grid int64 (2),
 * stage{s}_shift int32 (shift active, small grid). */
SPAN_API span_status span_rulebook_build(const char* config_json, const int64_t* coords, int64_t n,
                                         span_rulebook** out);
SPAN_API span_status span_rulebook_build_f64(const char* config_json, const double* coords, int64_t n,
                                             span_rulebook** out);
SPAN_API span_status span_rulebook_for_model(const span_model* model, const int64_t* coords, int64_t n,
                                             span_rulebook** out);
SPAN_API void span_rulebook_free(span_rulebook* rulebook);
SPAN_API size_t span_rulebook_count(const span_rulebook* rulebook);
/* How many of the tables (the first ones) are engine inputs. */
SPAN_API size_t span_rulebook_num_engine_inputs(const span_rulebook* rulebook);
SPAN_API span_status span_rulebook_get(const span_rulebook* rulebook, size_t index, span_tensor* out);
SPAN_API span_status span_rulebook_find(const span_rulebook* rulebook, const char* name, span_tensor* out);

#ifdef __cplusplus
}
#endif

#endif /* SPAN_DEPLOY_SPAN_DEPLOY_H */
