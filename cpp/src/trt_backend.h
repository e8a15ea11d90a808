// The TensorRT engine path (trt_backend.cpp, compiled only with SPAN_DEPLOY_WITH_TENSORRT): libnvinfer
// loaded at run time (dlopen of libnvinfer.so.<major of the headers>), the span-deploy plugin library
// through TensorRT's plugin registry, one deserialised engine per model and a small pool of execution
// contexts (one CUDA stream and grow-only device buffers each). This header needs neither TensorRT
// nor CUDA headers; model.cpp drives it (rulebook, contract checks, output mapping shared with ORT).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine_meta.h"
#include "span_deploy/span_deploy.h"

namespace span {

struct TrtEngine;  // trt_backend.cpp

struct TrtOpenArgs {
  std::string engine_path;
  std::string engine_bytes;      // the serialised engine (read and checked against the sidecar)
  std::string built_with;        // the sidecar's TensorRT version, for messages ("" unknown)
  bool needs_plugin = false;     // attention=plugin: SparseWindowAttention/1/span_deploy must be registered
  std::function<std::string()> find_plugin;  // the plugin library to load when the creator is not registered yet
  int64_t max_tokens = -1;       // the sidecar's; -1: from the profile's feats rows
  int device = 0;                // CUDA device ordinal
  int contexts = 1;              // execution contexts (concurrent runs) at most
};

struct TrtTensorInfo {
  std::string name;
  bool input = false;
  std::string dtype;  // float32 | float16 | int32 | int64 | another TensorRT type's name
};

// One engine input of a run: C-order host data (float32 or int32), converted to the engine's type.
struct TrtInput {
  std::string name;
  span_dtype dtype = SPAN_DTYPE_FLOAT32;
  const void* data = nullptr;
  std::vector<int64_t> shape;
};

struct TrtOutput {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;  // float32 (float16 outputs converted)
};

// Throws span::Error (SPAN_ERR_RUNTIME for TensorRT / CUDA failures, with what TensorRT logged).
std::shared_ptr<TrtEngine> trt_open(const TrtOpenArgs& args);
const std::vector<TrtTensorInfo>& trt_tensors(const TrtEngine& e);
const ProfileShapes& trt_profile(const TrtEngine& e);  // optimisation profile 0 of the engine's inputs
int64_t trt_max_tokens(const TrtEngine& e);
// One slide (thread-safe: each call takes an idle execution context, waiting while all are busy).
std::vector<TrtOutput> trt_run(const TrtEngine& e, const std::vector<TrtInput>& inputs);
// "MAJOR.MINOR.PATCH" of the TensorRT headers compiled against.
std::string trt_header_version();

}  // namespace span
