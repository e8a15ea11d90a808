// The C interface (span_deploy.h): opaque handles over the C++ parts; every exception stops here.
#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "errors.h"
#include "json.h"
#include "model.h"
#include "rulebook.h"
#include "span_deploy/span_deploy.h"

struct span_model {
  std::unique_ptr<span::Model> impl;
};

struct span_result {
  std::vector<span::Tensor> tensors;
};

struct span_rulebook {
  std::vector<span::Tensor> tables;
  size_t num_inputs = 0;
};

namespace {

thread_local std::string t_last_error;

template <typename F>
span_status guard(F&& body) noexcept {
  try {
    body();
    return SPAN_OK;
  } catch (const span::Error& e) {
    t_last_error = e.what();
    return e.code();
  } catch (const std::bad_alloc&) {
    t_last_error = "out of memory";
    return SPAN_ERR_INTERNAL;
  } catch (const std::exception& e) {
    try { t_last_error = std::string("internal error: ") + e.what(); } catch (...) {}
    return SPAN_ERR_INTERNAL;
  } catch (...) {
    t_last_error = "internal error (unknown exception)";
    return SPAN_ERR_INTERNAL;
  }
}

void need(const void* p, const char* what) {
  if (!p) span::fail(SPAN_ERR_INVALID_ARGUMENT, std::string(what) + " must not be NULL");
}

void fill(const span::Tensor& t, span_tensor* out) {
  std::memset(out, 0, sizeof *out);
  if (t.shape.size() > SPAN_MAX_DIMS) span::fail(SPAN_ERR_INTERNAL, "tensor " + t.name + " has too many dims");
  out->name = t.name.c_str();
  out->dtype = t.dtype;
  out->ndim = static_cast<int32_t>(t.shape.size());
  for (size_t i = 0; i < t.shape.size(); ++i) out->shape[i] = t.shape[i];
  out->data = t.data();
}

span_status get(const std::vector<span::Tensor>& v, size_t index, span_tensor* out) {
  return guard([&] {
    need(out, "out");
    if (index >= v.size())
      span::fail(SPAN_ERR_NOT_FOUND, "index " + std::to_string(index) + " out of range (" + std::to_string(v.size()) + " tensors)");
    fill(v[index], out);
  });
}

span_status find(const std::vector<span::Tensor>& v, const char* name, span_tensor* out, const char* what) {
  return guard([&] {
    need(name, "name");
    need(out, "out");
    for (const span::Tensor& t : v)
      if (t.name == name) return fill(t, out);
    std::string names;
    for (const span::Tensor& t : v) names += (names.empty() ? "" : ", ") + t.name;
    span::fail(SPAN_ERR_NOT_FOUND, std::string("no ") + what + " named '" + name + "' (have: " + names + ")");
  });
}

span::Config parse_config(const char* config_json) {
  need(config_json, "config_json");
  span::json::Value doc;
  try {
    doc = span::json::parse(config_json);
  } catch (const span::json::ParseError& e) {
    span::fail(SPAN_ERR_CONFIG, std::string("config JSON: ") + e.what());
  }
  return span::config_from_json(doc, "config JSON");
}

template <typename C>
span_status build_rb(const span::Config& cfg, const C* coords, int64_t n, span_rulebook** out) {
  return guard([&] {
    need(out, "out");
    *out = nullptr;
    if (n < 0) span::fail(SPAN_ERR_INVALID_ARGUMENT, "negative patch count");
    if (n > 0) need(coords, "coords");
    const span::Rulebook rb = span::build_rulebook(coords, n, cfg);
    auto h = std::make_unique<span_rulebook>();
    h->tables = span::all_tables(rb, cfg);
    h->num_inputs = span::engine_input_names(cfg).size() - 1;  // all but feats
    *out = h.release();
  });
}

template <typename C>
span_status run(const span_model* model, const float* feats, int64_t n, int64_t f, const C* coords, span_result** out) {
  return guard([&] {
    need(out, "out");
    *out = nullptr;
    need(model, "model");
    auto h = std::make_unique<span_result>();
    h->tensors = span::run_model(*model->impl, feats, n, f, coords);
    *out = h.release();
  });
}

}  // namespace

extern "C" {

const char* span_version(void) { return SPAN_DEPLOY_VERSION; }

const char* span_last_error(void) { return t_last_error.c_str(); }

const char* span_status_name(span_status status) {
  switch (status) {
    case SPAN_OK: return "SPAN_OK";
    case SPAN_ERR_INVALID_ARGUMENT: return "SPAN_ERR_INVALID_ARGUMENT";
    case SPAN_ERR_IO: return "SPAN_ERR_IO";
    case SPAN_ERR_MODEL: return "SPAN_ERR_MODEL";
    case SPAN_ERR_CONFIG: return "SPAN_ERR_CONFIG";
    case SPAN_ERR_FEATURES: return "SPAN_ERR_FEATURES";
    case SPAN_ERR_RULEBOOK: return "SPAN_ERR_RULEBOOK";
    case SPAN_ERR_RUNTIME: return "SPAN_ERR_RUNTIME";
    case SPAN_ERR_NOT_FOUND: return "SPAN_ERR_NOT_FOUND";
    case SPAN_ERR_INTERNAL: return "SPAN_ERR_INTERNAL";
    case SPAN_ERR_PROFILE: return "SPAN_ERR_PROFILE";
  }
  return "SPAN_ERR_UNKNOWN";
}

span_status span_model_open(const char* path, const char* ops_library, int32_t threads, span_model** out) {
  return guard([&] {
    need(out, "out");
    *out = nullptr;
    need(path, "path");
    if (threads < 0) span::fail(SPAN_ERR_INVALID_ARGUMENT, "threads must be >= 0 (0: ONNX Runtime's default)");
    span::OpenOptions o;
    o.ops_library = ops_library ? ops_library : "";
    o.threads = threads;
    auto h = std::make_unique<span_model>();
    h->impl = span::open_model(path, o);
    *out = h.release();
  });
}

void span_open_options_init(span_open_options* options) {
  if (!options) return;
  std::memset(options, 0, sizeof *options);
  options->struct_size = static_cast<uint32_t>(sizeof *options);
  options->trt_contexts = 1;
}

span_status span_model_open_ex(const char* path, const span_open_options* options, span_model** out) {
  return guard([&] {
    need(out, "out");
    *out = nullptr;
    need(path, "path");
    span::OpenOptions o;
    if (options) {
      const size_t size = options->struct_size;
      if (size < offsetof(span_open_options, backend) + sizeof(const char*))
        span::fail(SPAN_ERR_INVALID_ARGUMENT, "options->struct_size is " + std::to_string(size) +
                                                  "; set it with span_open_options_init (sizeof(span_open_options))");
      // the fields a caller's (possibly older, shorter) struct has
      auto has = [&](size_t offset, size_t bytes) { return offset + bytes <= size; };
      if (options->backend) o.backend = options->backend;
      if (has(offsetof(span_open_options, ops_library), sizeof(const char*)) && options->ops_library)
        o.ops_library = options->ops_library;
      if (has(offsetof(span_open_options, plugin_library), sizeof(const char*)) && options->plugin_library)
        o.plugin_library = options->plugin_library;
      if (has(offsetof(span_open_options, threads), sizeof(int32_t))) o.threads = options->threads;
      if (has(offsetof(span_open_options, device), sizeof(int32_t))) o.device = options->device;
      if (has(offsetof(span_open_options, trt_contexts), sizeof(int32_t)))
        o.trt_contexts = options->trt_contexts > 0 ? options->trt_contexts : 1;
      if (has(offsetof(span_open_options, trt_contexts), sizeof(int32_t)) && options->trt_contexts < 0)
        span::fail(SPAN_ERR_INVALID_ARGUMENT, "trt_contexts must be >= 0 (0: one)");
    }
    if (o.backend.empty()) o.backend = "auto";
    auto h = std::make_unique<span_model>();
    h->impl = span::open_model(path, o);
    *out = h.release();
  });
}

const char* span_runtime_backends(void) { return span::runtime_backends(); }

void span_model_free(span_model* model) { delete model; }

const char* span_model_task(const span_model* m) { return m ? m->impl->cfg.task.c_str() : ""; }
const char* span_model_backend(const span_model* m) { return m ? m->impl->backend.c_str() : ""; }
const char* span_model_attention(const span_model* m) { return m ? m->impl->attention.c_str() : ""; }
const char* span_model_precision(const span_model* m) { return m ? m->impl->precision.c_str() : ""; }
const char* span_model_onnx_path(const span_model* m) { return m ? m->impl->onnx_path.c_str() : ""; }
const char* span_model_metadata_json(const span_model* m) { return m ? m->impl->metadata_json.c_str() : ""; }
int64_t span_model_feat_dim(const span_model* m) { return m ? m->impl->cfg.feat_dim : 0; }
int64_t span_model_num_outputs(const span_model* m) { return m ? m->impl->cfg.num_outputs : 0; }
double span_model_threshold(const span_model* m) { return m ? m->impl->cfg.threshold : 0.0; }

span_status span_model_run(const span_model* model, const float* feats, int64_t n, int64_t f, const int64_t* coords,
                           span_result** out) {
  return run(model, feats, n, f, coords, out);
}

span_status span_model_run_f64(const span_model* model, const float* feats, int64_t n, int64_t f, const double* coords,
                               span_result** out) {
  return run(model, feats, n, f, coords, out);
}

void span_result_free(span_result* result) { delete result; }
size_t span_result_count(const span_result* r) { return r ? r->tensors.size() : 0; }

span_status span_result_get(const span_result* r, size_t index, span_tensor* out) {
  if (!r) return guard([] { need(nullptr, "result"); });
  return get(r->tensors, index, out);
}

span_status span_result_find(const span_result* r, const char* name, span_tensor* out) {
  if (!r) return guard([] { need(nullptr, "result"); });
  return find(r->tensors, name, out, "result tensor");
}

span_status span_rulebook_build(const char* config_json, const int64_t* coords, int64_t n, span_rulebook** out) {
  span::Config cfg;
  const span_status st = guard([&] { cfg = parse_config(config_json); });
  if (st != SPAN_OK) {
    if (out) *out = nullptr;
    return st;
  }
  return build_rb(cfg, coords, n, out);
}

span_status span_rulebook_build_f64(const char* config_json, const double* coords, int64_t n, span_rulebook** out) {
  span::Config cfg;
  const span_status st = guard([&] { cfg = parse_config(config_json); });
  if (st != SPAN_OK) {
    if (out) *out = nullptr;
    return st;
  }
  return build_rb(cfg, coords, n, out);
}

span_status span_rulebook_for_model(const span_model* model, const int64_t* coords, int64_t n, span_rulebook** out) {
  if (!model) {
    if (out) *out = nullptr;
    return guard([] { need(nullptr, "model"); });
  }
  return build_rb(model->impl->cfg, coords, n, out);
}

void span_rulebook_free(span_rulebook* rb) { delete rb; }
size_t span_rulebook_count(const span_rulebook* rb) { return rb ? rb->tables.size() : 0; }
size_t span_rulebook_num_engine_inputs(const span_rulebook* rb) { return rb ? rb->num_inputs : 0; }

span_status span_rulebook_get(const span_rulebook* rb, size_t index, span_tensor* out) {
  if (!rb) return guard([] { need(nullptr, "rulebook"); });
  return get(rb->tables, index, out);
}

span_status span_rulebook_find(const span_rulebook* rb, const char* name, span_tensor* out) {
  if (!rb) return guard([] { need(nullptr, "rulebook"); });
  return find(rb->tables, name, out, "rulebook table");
}

}  // extern "C"
