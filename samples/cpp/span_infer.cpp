// span_infer: run an exported SPAN ONNX model (attention='plugin') on precomputed engine inputs
// with the ONNX Runtime C++ API and the span-deploy custom-op library.
//
//   span_infer OPS_LIBRARY MODEL.onnx INPUT_DIR
//
// INPUT_DIR is written by samples/cpp/prepare_inputs.py: manifest.txt (one line per input, in graph
// order: `name dtype dim0 dim1 ...`, dtype float32|int32) and NAME.bin (raw little-endian data).
// Prints `logits: v0 v1 ...` (output 0) and the length of the slide_embedding output.
#include <onnxruntime_cxx_api.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

struct Input {
  std::string name;
  ONNXTensorElementDataType type;
  std::vector<int64_t> shape;
  std::vector<char> data;  // raw bytes, little-endian (the host byte order on every supported target)
};

[[noreturn]] void fail(const std::string& msg) { throw std::runtime_error(msg); }

size_t element_size(ONNXTensorElementDataType t) {
  return t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || t == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 ? 4 : 0;
}

const char* type_name(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    default: return "other";
  }
}

std::vector<Input> read_inputs(const fs::path& dir) {
  const fs::path manifest = dir / "manifest.txt";
  std::ifstream in(manifest);
  if (!in) fail("cannot open " + manifest.string() + " (run samples/cpp/prepare_inputs.py first)");
  std::vector<Input> inputs;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::istringstream ls(line);
    Input x;
    std::string dtype;
    if (!(ls >> x.name >> dtype)) fail(manifest.string() + ":" + std::to_string(lineno) + ": expected `name dtype dims...`");
    if (dtype == "float32") x.type = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    else if (dtype == "int32") x.type = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
    else fail(manifest.string() + ":" + std::to_string(lineno) + ": unsupported dtype '" + dtype + "' (float32|int32)");
    size_t count = 1;
    std::string tok;
    while (ls >> tok) {
      long long d = -1;
      try { size_t used = 0; d = std::stoll(tok, &used); if (used != tok.size()) d = -1; } catch (...) {}
      if (d < 0) fail(manifest.string() + ":" + std::to_string(lineno) + ": bad dimension '" + tok + "'");
      x.shape.push_back(d);
      count *= static_cast<size_t>(d);
    }
    const fs::path bin = dir / (x.name + ".bin");
    std::ifstream f(bin, std::ios::binary | std::ios::ate);
    if (!f) fail("missing input file " + bin.string());
    const auto size = static_cast<size_t>(f.tellg());
    const size_t want = count * element_size(x.type);
    if (size != want)
      fail(bin.string() + ": size mismatch: " + std::to_string(size) + " bytes, manifest says " +
           std::to_string(want) + " (" + std::to_string(count) + " x " + dtype + ")");
    x.data.resize(size);
    f.seekg(0);
    if (size && !f.read(x.data.data(), static_cast<std::streamsize>(size))) fail("cannot read " + bin.string());
    inputs.push_back(std::move(x));
  }
  if (inputs.empty()) fail(manifest.string() + ": no inputs listed");
  return inputs;
}

int run(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: " << (argc ? argv[0] : "span_infer") << " OPS_LIBRARY MODEL.onnx INPUT_DIR\n"
              << "  OPS_LIBRARY  libspan_deploy_ops.so (tools/build_native.sh builds it into build/lib)\n"
              << "  INPUT_DIR    written by samples/cpp/prepare_inputs.py FEATURES.h5 MODEL.onnx INPUT_DIR\n";
    return 2;
  }
  const fs::path ops_lib = argv[1], model = argv[2], dir = argv[3];
  if (!fs::is_regular_file(ops_lib)) fail("custom-op library not found: " + ops_lib.string());
  if (!fs::is_regular_file(model)) fail("model not found: " + model.string());
  std::vector<Input> inputs = read_inputs(dir);

  Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "span_infer");  // WARNING would report benign buffer-reuse shape notes
  Ort::SessionOptions opts;
  opts.RegisterCustomOpsLibrary(ops_lib.c_str());
  Ort::Session session(env, model.c_str(), opts);

  // The manifest must list the model's inputs, in graph order, with the model's element types.
  Ort::AllocatorWithDefaultOptions alloc;
  const size_t n_in = session.GetInputCount();
  if (n_in != inputs.size())
    fail("the model has " + std::to_string(n_in) + " inputs but the manifest lists " + std::to_string(inputs.size()) +
         " (prepared for a different model?)");
  for (size_t i = 0; i < n_in; ++i) {
    const std::string name = session.GetInputNameAllocated(i, alloc).get();
    if (name != inputs[i].name) fail("input " + std::to_string(i) + ": model expects '" + name + "', manifest has '" + inputs[i].name + "'");
    const auto t = session.GetInputTypeInfo(i).GetTensorTypeAndShapeInfo().GetElementType();
    if (t != inputs[i].type)
      fail("input '" + name + "': model expects " + type_name(t) + ", manifest has " + type_name(inputs[i].type));
  }

  const auto mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  std::vector<Ort::Value> values;
  std::vector<const char*> in_names;
  for (auto& x : inputs) {
    values.push_back(Ort::Value::CreateTensor(mem, x.data.data(), x.data.size(), x.shape.data(), x.shape.size(), x.type));
    in_names.push_back(x.name.c_str());
  }

  // Fetch output 0 (logits) and slide_embedding.
  std::vector<std::string> out_names_s{session.GetOutputNameAllocated(0, alloc).get()};
  for (size_t i = 1; i < session.GetOutputCount(); ++i) {
    std::string n = session.GetOutputNameAllocated(i, alloc).get();
    if (n == "slide_embedding") out_names_s.push_back(n);
  }
  std::vector<const char*> out_names;
  for (auto& n : out_names_s) out_names.push_back(n.c_str());

  auto outs = session.Run(Ort::RunOptions{nullptr}, in_names.data(), values.data(), values.size(),
                          out_names.data(), out_names.size());

  auto print = [](const char* label, const Ort::Value& v) {
    const auto info = v.GetTensorTypeAndShapeInfo();
    if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) fail(std::string(label) + ": not float32");
    const float* p = v.GetTensorData<float>();
    std::cout << label << ":";
    std::cout.precision(9);
    for (size_t i = 0; i < info.GetElementCount(); ++i) std::cout << ' ' << p[i];
    std::cout << '\n';
    return info.GetElementCount();
  };
  print("logits", outs[0]);  // output 0
  if (out_names_s.size() > 1)
    std::cout << "slide_embedding length: " << outs[1].GetTensorTypeAndShapeInfo().GetElementCount() << '\n';
  else
    std::cout << "slide_embedding: (not an output of this model)\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const Ort::Exception& e) {
    std::cerr << "span_infer: onnxruntime error: " << e.what() << '\n';
  } catch (const std::exception& e) {
    std::cerr << "span_infer: error: " << e.what() << '\n';
  }
  return 1;
}
