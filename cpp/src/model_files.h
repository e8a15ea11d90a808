// Which file to open, on which backend: a model.onnx, a TensorRT engine (model.engine + its .json
// sidecar), or a model directory (DIR/deploy.json, span_deploy/deploy/model_dir.py). Pure (JSON and the
// file system, no ONNX Runtime / TensorRT); unit-tested by span_deploy_selftest.
#pragma once

#include <string>

namespace span {

struct ModelFile {
  std::string backend;  // "ort" | "trt"
  std::string file;     // the model.onnx or engine to open
  std::string folder;   // the model's folder (the last place a plugin / custom-op library is looked for)
  std::string ops_name = "libspan_deploy_ops.so";            // deploy.json plugin_library.ort
  std::string plugin_name = "libspan_deploy_trt_plugin.so";  // deploy.json plugin_library.trt
  std::string onnx;     // a model directory's ONNX (also when its engine was chosen); "" for a lone file
  bool directory = false;
};

// "" / "auto" -> "auto"; "ort", "trt" as they are. Throws span::Error(SPAN_ERR_INVALID_ARGUMENT) otherwise.
std::string normalise_backend(const std::string& backend);

// A file is taken for a TensorRT engine when it ends in .engine / .plan / .trt, or when it is not an
// .onnx and has a sidecar (PATH.json).
bool looks_like_engine(const std::string& path);

// `backend` "auto": a file by its kind (looks_like_engine); a model directory by its deploy.json: the
// engine when its target's backend is trt, files.engine names one and `have_trt` (this runtime can run
// engines), else its ONNX (as runtimes without TensorRT always did). "ort" / "trt": that backend's file,
// or an error saying what to do. Throws span::Error (SPAN_ERR_IO: no such file; SPAN_ERR_MODEL: a
// damaged deploy.json, a file of the other backend's kind, no engine).
ModelFile resolve_model(const std::string& path, const std::string& backend, bool have_trt);

}  // namespace span
