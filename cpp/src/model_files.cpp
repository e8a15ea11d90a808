#include "model_files.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "errors.h"
#include "json.h"

namespace fs = std::filesystem;

namespace span {

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(SPAN_ERR_IO, "cannot read " + p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool plain_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find_first_of("/\\") == std::string::npos;
}

std::string lower_ext(const fs::path& p) {
  std::string e = p.extension().string();
  for (char& c : e) if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return e;
}

ModelFile resolve_dir(const fs::path& path, const std::string& backend, bool have_trt) {
  const fs::path f = path / "deploy.json";
  if (!fs::is_regular_file(f))
    fail(SPAN_ERR_MODEL, path.string() + " is a folder but not a span-deploy model directory (no deploy.json); write "
                                         "one with `span-deploy export --target NAME -o DIR`, or pass a model file");
  json::Value doc;
  try {
    doc = json::parse(read_text(f));
  } catch (const json::ParseError& e) {
    fail(SPAN_ERR_MODEL, f.string() + ": not readable JSON (" + e.what() + "); re-export the model directory");
  }
  const json::Value* format = doc.find("format");
  if (!format || !format->is_string() || format->string != "span-deploy-model-dir")
    fail(SPAN_ERR_MODEL, f.string() + ": not a span-deploy deploy.json (format 'span-deploy-model-dir' missing)");
  const json::Value* fv = doc.find("format_version");
  if (!fv || !fv->integral || fv->integer != 1)
    fail(SPAN_ERR_MODEL, f.string() + ": deploy.json format version " +
                             (fv && fv->integral ? std::to_string(fv->integer) : std::string("?")) +
                             "; this span-deploy reads version 1; re-export the model directory");
  const json::Value* files = doc.find("files");
  const json::Value* onnx = files ? files->find("onnx") : nullptr;
  const json::Value* meta = doc.find("metadata");
  const json::Value* att = meta ? meta->find("attention") : nullptr;
  if (!files || !files->is_object() || !onnx || !onnx->is_string() || !meta || !meta->is_object() || !att ||
      !att->is_string() || (att->string != "plugin" && att->string != "portable"))
    fail(SPAN_ERR_MODEL, f.string() + ": deploy.json is damaged (files / metadata missing); re-export the model directory");
  auto named_file = [&](const char* key, const json::Value& v) {
    const std::string name = v.is_string() ? v.string : std::string();
    if (!plain_name(name))
      fail(SPAN_ERR_MODEL, f.string() + ": files." + key + " must be a file name inside the folder, not '" + name + "'");
    if (!fs::is_regular_file(path / name))
      fail(SPAN_ERR_MODEL, path.string() + ": deploy.json names " + name + " (" + key + ") but the folder has no such "
                                           "file; copy the whole folder, or re-export it");
    return name;
  };
  ModelFile m;
  m.directory = true;
  m.folder = path.string();
  m.onnx = (path / named_file("onnx", *onnx)).string();
  std::string engine;
  if (const json::Value* e = files->find("engine"); e && !e->is_null()) engine = named_file("engine", *e);
  if (const json::Value* libs = doc.find("plugin_library"); libs && libs->is_object()) {
    if (const json::Value* o = libs->find("ort"); o && o->is_string() && plain_name(o->string)) m.ops_name = o->string;
    if (const json::Value* t = libs->find("trt"); t && t->is_string() && plain_name(t->string)) m.plugin_name = t->string;
  }
  std::string target_backend = "ort", target_name = "?";
  if (const json::Value* t = doc.find("target"); t && t->is_object()) {
    if (const json::Value* b = t->find("backend"); b && b->is_string()) target_backend = b->string;
    if (const json::Value* n = t->find("name"); n && n->is_string()) target_name = n->string;
  }
  std::string use = backend;
  if (use == "auto") use = target_backend == "trt" && !engine.empty() && have_trt ? "trt" : "ort";
  if (use == "trt") {
    if (engine.empty())
      fail(SPAN_ERR_MODEL, path.string() + ": " +
                               (target_backend == "trt" ? "target " + target_name + " runs on TensorRT but "
                                                        : std::string("backend trt was asked for but ")) +
                               "the folder holds no engine yet; build it on the machine that will run it: "
                               "`span-deploy build-engine " + path.string() + "` (or open it with backend ort, "
                               "which runs its " + fs::path(m.onnx).filename().string() + " on ONNX Runtime)");
    m.backend = "trt";
    m.file = (path / engine).string();
  } else {
    m.backend = "ort";
    m.file = m.onnx;
  }
  return m;
}

}  // namespace

std::string normalise_backend(const std::string& backend) {
  if (backend.empty() || backend == "auto") return "auto";
  if (backend == "ort" || backend == "trt") return backend;
  fail(SPAN_ERR_INVALID_ARGUMENT, "backend '" + backend + "': expected auto (or empty), ort or trt");
}

bool looks_like_engine(const std::string& path) {
  const fs::path p(path);
  const std::string ext = lower_ext(p);
  if (ext == ".engine" || ext == ".plan" || ext == ".trt") return true;
  std::error_code ec;
  return ext != ".onnx" && fs::is_regular_file(path + ".json", ec);
}

ModelFile resolve_model(const std::string& path_in, const std::string& backend_in, bool have_trt) {
  if (path_in.empty()) fail(SPAN_ERR_INVALID_ARGUMENT, "no model path given");
  const std::string backend = normalise_backend(backend_in);
  const fs::path path(path_in);
  std::error_code ec;
  if (fs::is_directory(path, ec)) return resolve_dir(path, backend, have_trt);
  const bool engine = looks_like_engine(path_in);
  if (!fs::is_regular_file(path, ec))
    fail(SPAN_ERR_IO, std::string(engine ? "engine file not found: " : "model file not found: ") + path.string());
  ModelFile m;
  m.folder = path.parent_path().string();
  m.file = path.string();
  if (backend == "ort" && engine)
    fail(SPAN_ERR_MODEL, path.string() + " is a TensorRT engine; backend ort runs ONNX exports (model.onnx): open the "
                                         "ONNX the engine was built from, or use backend trt");
  if (backend == "trt" && lower_ext(path) == ".onnx")
    fail(SPAN_ERR_MODEL, path.string() + " is an ONNX export, not a TensorRT engine; build one with `span-deploy "
                                         "build-engine " + path.string() + "` and open the .engine, or use backend ort");
  m.backend = backend == "auto" ? (engine ? "trt" : "ort") : backend;
  return m;
}

}  // namespace span
