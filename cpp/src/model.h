// An opened span-deploy model: the ONNX Runtime session, the export's metadata and config; running a
// slide (rulebook, engine inputs, session, outputs mapped back to the input rows).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "rulebook.h"

namespace span {

struct Session;  // the ONNX Runtime parts (model.cpp)

struct Model {
  std::string onnx_path;      // the ONNX file opened
  std::string metadata_json;  // the span_deploy metadata string of the export
  std::string attention;      // plugin | portable
  std::string precision;      // fp32 | fp16
  Config cfg;
  std::shared_ptr<Session> session;
};

// `path`: a model.onnx or a model directory (deploy.json). Throws span::Error.
std::unique_ptr<Model> open_model(const std::string& path, const std::string& ops_library, int threads);

// The tensors of one slide's result (span_deploy.h lists them), input row order. Throws span::Error.
std::vector<Tensor> run_model(const Model& m, const float* feats, int64_t n, int64_t f, const int64_t* coords);
std::vector<Tensor> run_model(const Model& m, const float* feats, int64_t n, int64_t f, const double* coords);

// Parse the span_deploy metadata JSON of an export (checks as metadata.py's read_metadata,
// check_rulebook_version and config_from_metadata). Throws span::Error(SPAN_ERR_MODEL).
Config config_from_metadata(const std::string& metadata_json, const std::string& where, std::string* attention,
                            std::string* precision);

}  // namespace span
