// An opened span-deploy model: an ONNX export on ONNX Runtime, or a TensorRT engine (when built with
// TensorRT); the metadata and config; running a slide (rulebook, engine inputs, the backend, outputs
// mapped back to the input rows: one code path around the two backends).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "json.h"
#include "rulebook.h"

namespace span {

struct Session;    // the ONNX Runtime parts (model.cpp)
struct TrtEngine;  // the TensorRT parts (trt_backend.cpp)

struct OpenOptions {
  std::string backend = "auto";  // auto | ort | trt
  std::string ops_library;       // ORT custom-op library ("" = look for it)
  std::string plugin_library;    // TensorRT plugin library ("" = look for it)
  int threads = 0;               // ORT intra-op threads
  int device = 0;                // CUDA device (trt)
  int trt_contexts = 1;          // TensorRT execution contexts (concurrent runs of one model)
};

struct Model {
  std::string backend;        // ort | trt
  std::string onnx_path;      // the file opened: the ONNX, or the engine (trt)
  std::string metadata_json;  // the span_deploy metadata string of the export (trt: from the engine's sidecar)
  std::string attention;      // plugin | portable
  std::string precision;      // fp32 | fp16
  Config cfg;
  bool half_feats = false;    // the graph takes float16 feats
  std::shared_ptr<Session> session;  // ort
  std::shared_ptr<TrtEngine> trt;    // trt
};

// `path`: a model.onnx, a TensorRT engine (model.engine + model.engine.json), or a model directory
// (deploy.json). Throws span::Error.
std::unique_ptr<Model> open_model(const std::string& path, const OpenOptions& options);

// The tensors of one slide's result (span_deploy.h lists them), input row order. Throws span::Error.
std::vector<Tensor> run_model(const Model& m, const float* feats, int64_t n, int64_t f, const int64_t* coords);
std::vector<Tensor> run_model(const Model& m, const float* feats, int64_t n, int64_t f, const double* coords);

// Parse the span_deploy metadata (JSON text, or the parsed object) of an export (checks as
// metadata.py's read_metadata, check_rulebook_version and config_from_metadata; `redo` is what the
// messages say to do). Throws span::Error(SPAN_ERR_MODEL).
Config config_from_metadata(const std::string& metadata_json, const std::string& where, std::string* attention,
                            std::string* precision);
Config config_from_metadata(const json::Value& meta, const std::string& where, std::string* attention,
                            std::string* precision, const std::string& redo = "re-export the model");

// "ort", or "ort,trt" when this runtime was built with TensorRT.
const char* runtime_backends();

}  // namespace span
