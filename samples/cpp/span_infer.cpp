// span_infer: one slide's prediction with the span-deploy C runtime (span_deploy.h): no Python anywhere.
//
//   span_infer [--backend auto|ort|trt] [--ops-lib PATH] [--plugin-lib PATH] [--device N] [--threads N]
//              [--threshold T] MODEL FEATURES [COORDS.npy]
//
// MODEL     a span-deploy export (model.onnx), a TensorRT engine (model.engine + model.engine.json; runtimes
//           built with TensorRT) or a model directory (DIR/deploy.json)
// FEATURES  a folder holding features.npy + coords.npy (or feats.npy + cords.npy, x.npy + pos.npy),
//           a features .npy followed by its COORDS.npy, or an .h5 feature file (official feats/cords,
//           x/pos, TRIDENT/CLAM features/coords) when built with HDF5
//           features: float32 (N, F) ('<f4'; '<f8' is converted); coords: (N, 2) raw level-0 pixel
//           coordinates on the 224-px grid ('<i8' '<i4', or '<f8' '<f4')
// Prints the prediction as one JSON object on stdout (the keys of `span-deploy predict`, plus
// slide_embedding_length); errors go to stderr with exit status 1 (2 for a usage error).
#include <span_deploy/span_deploy.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "npy.h"

#ifdef SPAN_INFER_HDF5
#include <hdf5.h>
#endif

namespace fs = std::filesystem;

namespace {

struct Slide {
  std::vector<float> feats;     // (n, f)
  std::vector<int64_t> coords;  // (n, 2) when integer
  std::vector<double> coords_f; // (n, 2) when floating point
  int64_t n = 0, f = 0;
};

[[noreturn]] void fail(const std::string& msg) { throw std::runtime_error(msg); }

// (N, F) or (1, N, F) (CLAM/TRIDENT keep a batch axis); coords (N, 2) or (1, N, 2).
std::vector<int64_t> squeeze(std::vector<int64_t> shape) {
  if (shape.size() == 3 && shape[0] == 1) shape.erase(shape.begin());
  return shape;
}

void check_shapes(const std::string& where, std::vector<int64_t> fs_, std::vector<int64_t> cs, Slide& s) {
  fs_ = squeeze(fs_);
  cs = squeeze(cs);
  auto str = [](const std::vector<int64_t>& v) {
    std::string o = "(";
    for (size_t i = 0; i < v.size(); ++i) o += (i ? ", " : "") + std::to_string(v[i]);
    return o + (v.size() == 1 ? ",)" : ")");
  };
  if (fs_.size() != 2) fail(where + ": features must be 2-D (N, F), got shape " + str(fs_));
  if (cs.size() != 2 || cs[1] != 2) fail(where + ": coordinates must have shape (N, 2), got " + str(cs));
  if (fs_[0] != cs[0])
    fail(where + ": " + std::to_string(fs_[0]) + " feature rows but " + std::to_string(cs[0]) + " coordinates");
  if (fs_[0] == 0) fail(where + ": the slide is empty (0 patches); nothing to predict");
  s.n = fs_[0];
  s.f = fs_[1];
}

Slide read_npy_pair(const fs::path& feats_path, const fs::path& coords_path) {
  const npy::Array fa = npy::read(feats_path.string());
  const npy::Array ca = npy::read(coords_path.string());
  if (!fa.is_float())
    fail(feats_path.string() + ": features have dtype " + fa.descr + "; expected floating point ('<f4')");
  Slide s;
  check_shapes(feats_path.string() + " + " + coords_path.string(), fa.shape, ca.shape, s);
  s.feats = fa.as<float>();
  if (ca.is_float()) s.coords_f = ca.as<double>();
  else s.coords = ca.as<int64_t>();
  return s;
}

#ifdef SPAN_INFER_HDF5
struct H5 {
  hid_t id;
  herr_t (*close)(hid_t);
  ~H5() { if (id >= 0) close(id); }
};

std::vector<int64_t> h5_shape(hid_t d) {
  H5 sp{H5Dget_space(d), H5Sclose};
  const int nd = H5Sget_simple_extent_ndims(sp.id);
  std::vector<hsize_t> dims(nd > 0 ? static_cast<size_t>(nd) : 0);
  if (nd > 0) H5Sget_simple_extent_dims(sp.id, dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

Slide read_h5(const fs::path& path) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const std::string p = path.string();
  H5 file{H5Fopen(p.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose};
  if (file.id < 0) fail(p + ": not a readable HDF5 file");
  static const char* names[3][2] = {{"feats", "cords"}, {"x", "pos"}, {"features", "coords"}};
  for (auto& nm : names) {
    if (H5Lexists(file.id, nm[0], H5P_DEFAULT) <= 0 || H5Lexists(file.id, nm[1], H5P_DEFAULT) <= 0) continue;
    H5 fd{H5Dopen2(file.id, nm[0], H5P_DEFAULT), H5Dclose};
    H5 cd{H5Dopen2(file.id, nm[1], H5P_DEFAULT), H5Dclose};
    if (fd.id < 0 || cd.id < 0) fail(p + ": cannot open datasets " + nm[0] + "/" + nm[1]);
    Slide s;
    check_shapes(p, h5_shape(fd.id), h5_shape(cd.id), s);
    {
      H5 t{H5Dget_type(fd.id), H5Tclose};
      if (H5Tget_class(t.id) != H5T_FLOAT) fail(p + ": features are not floating point");
    }
    s.feats.resize(static_cast<size_t>(s.n * s.f));
    if (H5Dread(fd.id, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, s.feats.data()) < 0)
      fail(p + ": cannot read " + nm[0]);
    H5 ct{H5Dget_type(cd.id), H5Tclose};
    const H5T_class_t cls = H5Tget_class(ct.id);
    if (cls == H5T_INTEGER) {
      s.coords.resize(static_cast<size_t>(2 * s.n));
      if (H5Dread(cd.id, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, s.coords.data()) < 0)
        fail(p + ": cannot read " + nm[1]);
    } else if (cls == H5T_FLOAT) {
      s.coords_f.resize(static_cast<size_t>(2 * s.n));
      if (H5Dread(cd.id, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, s.coords_f.data()) < 0)
        fail(p + ": cannot read " + nm[1]);
    } else {
      fail(p + ": coordinates are not numbers");
    }
    return s;
  }
  fail(p + ": no feature/coordinate datasets; expected feats+cords (official), x+pos, or features+coords (TRIDENT/CLAM)");
}
#endif

Slide read_slide(const fs::path& features, const fs::path& coords) {
  if (!coords.empty()) return read_npy_pair(features, coords);
  if (fs::is_directory(features)) {
    static const char* pairs[3][2] = {{"features.npy", "coords.npy"}, {"feats.npy", "cords.npy"}, {"x.npy", "pos.npy"}};
    for (auto& pr : pairs)
      if (fs::is_regular_file(features / pr[0]) && fs::is_regular_file(features / pr[1]))
        return read_npy_pair(features / pr[0], features / pr[1]);
    fail(features.string() + ": a feature folder must hold features.npy + coords.npy (or feats.npy + cords.npy, "
                             "x.npy + pos.npy)");
  }
  if (!fs::exists(features)) fail("feature file not found: " + features.string());
  const std::string ext = features.extension().string();
  if (ext == ".h5" || ext == ".hdf5") {
#ifdef SPAN_INFER_HDF5
    return read_h5(features);
#else
    fail(features.string() + ": this span_infer was built without HDF5; install the HDF5 C library and rebuild, or "
                             "convert the file to features.npy + coords.npy");
#endif
  }
  if (ext == ".npy") fail(features.string() + ": a features .npy needs its coordinates .npy as the next argument");
  fail(features.string() + ": unknown feature file type (expected a folder of .npy files, FEATS.npy COORDS.npy, or .h5)");
}

// ---- JSON output -----------------------------------------------------------------------------------

std::string num(double v, int digits) {
  if (!std::isfinite(v)) return "null";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

std::string f32_list(const float* p, int64_t n) {
  std::string o = "[";
  for (int64_t i = 0; i < n; ++i) o += (i ? ", " : "") + num(p[i], 9);
  return o + "]";
}

std::string f64_list(const std::vector<double>& v) {
  std::string o = "[";
  for (size_t i = 0; i < v.size(); ++i) o += (i ? ", " : "") + num(v[i], 17);
  return o + "]";
}

std::string quoted(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') { o += '\\'; o += c; }
    else if (static_cast<unsigned char>(c) < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); o += b; }
    else o += c;
  }
  return o + "\"";
}

struct Result {
  span_result* h = nullptr;
  ~Result() { span_result_free(h); }
  span_tensor get(const char* name) const {
    span_tensor t;
    if (span_result_find(h, name, &t) != SPAN_OK) fail(span_last_error());
    return t;
  }
  int64_t numel(const span_tensor& t) const {
    int64_t n = 1;
    for (int i = 0; i < t.ndim; ++i) n *= t.shape[i];
    return n;
  }
  const float* f32(const span_tensor& t) const { return static_cast<const float*>(t.data); }
};

struct Model {
  span_model* h = nullptr;
  ~Model() { span_model_free(h); }
};

void usage(const char* argv0) {
  std::cerr << "usage: " << argv0 << " [--backend auto|ort|trt] [--ops-lib PATH] [--plugin-lib PATH] [--device N]\n"
            << "       [--threads N] [--threshold T] MODEL FEATURES [COORDS.npy]\n"
            << "  MODEL     model.onnx (span-deploy export), model.engine (TensorRT, with its .json) or a model\n"
            << "            directory (deploy.json)\n"
            << "  FEATURES  a folder with features.npy + coords.npy, FEATS.npy COORDS.npy, or an .h5 (HDF5 builds)\n"
            << "  --backend auto (default: by the file; a model directory by its target), ort or trt\n"
            << "            (this runtime: " << span_runtime_backends() << ")\n"
            << "  --ops-lib libspan_deploy_ops.so for attention=plugin exports (default: $SPAN_DEPLOY_OPS_LIB, next to\n"
            << "            libspan_deploy_runtime, or in the model's folder)\n"
            << "  --plugin-lib  libspan_deploy_trt_plugin.so for attention=plugin engines (default:\n"
            << "            $SPAN_DEPLOY_TRT_PLUGIN_LIB, next to libspan_deploy_runtime, or in the model's folder)\n"
            << "  --device  TensorRT: CUDA device (default 0)\n"
            << "  --threads ONNX Runtime intra-op threads (default: its own)\n"
            << "  --threshold segmentation: a patch is positive at probability >= T (default: the model's)\n";
}

int run(int argc, char** argv) {
  std::string ops_lib, plugin_lib, backend;
  int threads = 0, device = 0;
  double threshold = -1.0;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) { usage(argv[0]); throw std::invalid_argument(a + " needs a value"); }
      return argv[++i];
    };
    if (a == "--ops-lib") ops_lib = value();
    else if (a == "--plugin-lib") plugin_lib = value();
    else if (a == "--backend") {
      backend = value();
      if (backend != "auto" && backend != "ort" && backend != "trt")
        throw std::invalid_argument("--backend must be auto, ort or trt, got " + backend);
    } else if (a == "--device") {
      const std::string v = value();
      char* end = nullptr;
      const long d = std::strtol(v.c_str(), &end, 10);
      if (!end || *end || v.empty() || d < 0 || d > 1024) throw std::invalid_argument("--device must be an integer >= 0, got " + v);
      device = static_cast<int>(d);
    } else if (a == "--threads") {
      const std::string v = value();
      char* end = nullptr;
      const long t = std::strtol(v.c_str(), &end, 10);
      if (!end || *end || t < 0 || t > 4096) throw std::invalid_argument("--threads must be an integer >= 0, got " + v);
      threads = static_cast<int>(t);
    } else if (a == "--threshold") {
      const std::string v = value();
      char* end = nullptr;
      threshold = std::strtod(v.c_str(), &end);
      if (!end || *end || !(threshold > 0.0 && threshold < 1.0))
        throw std::invalid_argument("--threshold must lie strictly between 0 and 1, got " + v);
    } else if (a == "-h" || a == "--help") { usage(argv[0]); return 0; }
    else if (a.size() > 1 && a[0] == '-' && a[1] == '-') { usage(argv[0]); throw std::invalid_argument("unknown option " + a); }
    else pos.push_back(a);
  }
  if (pos.size() < 2 || pos.size() > 3) { usage(argv[0]); throw std::invalid_argument("expected MODEL FEATURES [COORDS.npy]"); }

  const Slide slide = read_slide(pos[1], pos.size() == 3 ? fs::path(pos[2]) : fs::path());
  Model model;
  span_open_options opts;
  span_open_options_init(&opts);
  opts.backend = backend.empty() ? nullptr : backend.c_str();
  opts.ops_library = ops_lib.empty() ? nullptr : ops_lib.c_str();
  opts.plugin_library = plugin_lib.empty() ? nullptr : plugin_lib.c_str();
  opts.threads = threads;
  opts.device = device;
  if (span_model_open_ex(pos[0].c_str(), &opts, &model.h) != SPAN_OK) fail(span_last_error());
  const std::string task = span_model_task(model.h);
  if (threshold > 0.0 && task != "segmentation") fail("--threshold applies to segmentation models; this one is " + task);
  Result r;
  const span_status st = slide.coords_f.empty()
      ? span_model_run(model.h, slide.feats.data(), slide.n, slide.f, slide.coords.data(), &r.h)
      : span_model_run_f64(model.h, slide.feats.data(), slide.n, slide.f, slide.coords_f.data(), &r.h);
  if (st != SPAN_OK) fail(pos[1] + ": " + span_last_error());

  std::ostringstream o;
  o << "{\"task\": " << quoted(task) << ", \"model\": " << quoted(pos[0]) << ", \"backend\": "
    << quoted(std::string("cpp-") + span_model_backend(model.h));
  const span_tensor emb = r.get("slide_embedding");
  if (task == "segmentation") {
    const span_tensor z = r.get("patch_logits"), p = r.get("patch_scores");
    const float t = static_cast<float>(threshold > 0.0 ? threshold : span_model_threshold(model.h));
    const int64_t n = r.numel(z);
    std::string labels = "[";
    int64_t positive = 0;
    for (int64_t i = 0; i < n; ++i) {
      const bool on = r.f32(p)[i] >= t;
      positive += on;
      labels += (i ? ", " : "") + std::string(on ? "1" : "0");
    }
    o << ", \"patch_logits\": " << f32_list(r.f32(z), n) << ", \"patch_probabilities\": " << f32_list(r.f32(p), n)
      << ", \"patch_labels\": " << labels << "], \"threshold\": " << num(threshold > 0.0 ? threshold : span_model_threshold(model.h), 17)
      << ", \"num_positive\": " << positive << ", \"num_patches\": " << n;
  } else {
    const span_tensor lt = r.get("logits");
    const int64_t c = r.numel(lt);
    const float* z = r.f32(lt);
    o << ", \"logits\": " << f32_list(z, c);
    if (task == "survival") {  // float32 as the official evaluation: sigmoid, cumprod(1 - h), -sum
      std::vector<float> hz(static_cast<size_t>(c)), sv(static_cast<size_t>(c));
      float acc = 1.0f, sum = 0.0f;
      for (int64_t i = 0; i < c; ++i) {
        hz[static_cast<size_t>(i)] = 1.0f / (1.0f + std::exp(-z[i]));
        acc *= 1.0f - hz[static_cast<size_t>(i)];
        sv[static_cast<size_t>(i)] = acc;
        sum += acc;
      }
      o << ", \"hazards\": " << f32_list(hz.data(), c) << ", \"survival\": " << f32_list(sv.data(), c)
        << ", \"risk\": " << num(-sum, 9);
    } else {  // softmax in float64, as prediction.py
      double mx = -INFINITY, tot = 0.0;
      for (int64_t i = 0; i < c; ++i) mx = std::fmax(mx, z[i]);
      std::vector<double> p(static_cast<size_t>(c));
      for (int64_t i = 0; i < c; ++i) tot += p[static_cast<size_t>(i)] = std::exp(double(z[i]) - mx);
      int64_t best = 0;
      for (int64_t i = 0; i < c; ++i) {
        p[static_cast<size_t>(i)] /= tot;
        if (p[static_cast<size_t>(i)] > p[static_cast<size_t>(best)]) best = i;
      }
      o << ", \"probabilities\": " << f64_list(p) << ", \"predicted_class\": " << best;
    }
    o << ", \"num_patches\": " << r.numel(r.get("patch_scores"));
  }
  o << ", \"slide_embedding\": " << f32_list(r.f32(emb), r.numel(emb)) << ", \"slide_embedding_length\": " << r.numel(emb);
  const span_tensor sizes = r.get("stage_sizes");
  o << ", \"stage_sizes\": [";
  for (int64_t i = 0; i < sizes.shape[0]; ++i) o << (i ? ", " : "") << static_cast<const int64_t*>(sizes.data)[i];
  o << "], \"stage_global_tokens\": [";
  for (int s = 0; s < sizes.shape[0]; ++s) {
    const span_tensor g = r.get(("stage" + std::to_string(s) + "_globals").c_str());
    o << (s ? ", " : "") << "[";
    const int64_t rows = g.ndim ? g.shape[0] : 0, cols = g.ndim > 1 ? g.shape[1] : 1;
    for (int64_t i = 0; i < rows; ++i) o << (i ? ", " : "") << f32_list(r.f32(g) + i * cols, cols);
    o << "]";
  }
  const span_tensor tm = r.get("timings");
  const double* tv = static_cast<const double*>(tm.data);
  o << "], \"timings\": {\"rulebook\": " << num(tv[0], 6) << ", \"compute\": " << num(tv[1], 6)
    << ", \"total\": " << num(tv[2], 6) << "}}";
  std::cout << o.str() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::invalid_argument& e) {
    std::cerr << "span_infer: usage error: " << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "span_infer: error: " << e.what() << '\n';
  }
  return 1;
}
