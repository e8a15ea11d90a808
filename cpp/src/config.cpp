#include "config.h"

#include <cmath>

#include "errors.h"

namespace span {

int64_t Config::stage_dim(int s) const {
  int64_t d = embed_dim;
  for (int k = 0; k < s; ++k) d *= channel_factor;
  return d;
}

bool Config::has_shift(int stage) const {
  if (trans_type == "long" || trans_type == "swin") return true;
  bool decoded = false;
  for (int i = 0; i < num_decoder_stages(); ++i) decoded = decoded || decoder_target_stage(i) == stage;
  return decoded && (dtrans_type == "long" || dtrans_type == "swin");
}

namespace {

struct Reader {
  const json::Value& obj;
  const std::string& where;

  [[noreturn]] void bad(const std::string& key, const std::string& want) const {
    const json::Value* v = obj.find(key);
    fail(SPAN_ERR_CONFIG, where + ": config key '" + key + "' " +
                              (v ? std::string("is ") + json::type_name(v->type) : std::string("is missing")) +
                              "; expected " + want + " (is this a span-deploy export's config?)");
  }

  std::string str(const std::string& key, std::initializer_list<const char*> allowed = {}) const {
    const json::Value* v = obj.find(key);
    if (!v || !v->is_string()) bad(key, "a string");
    if (allowed.size()) {
      std::string list;
      for (const char* a : allowed) {
        if (v->string == a) return v->string;
        list += (list.empty() ? "" : ", ") + std::string(a);
      }
      fail(SPAN_ERR_CONFIG, where + ": config key '" + key + "' is '" + v->string + "'; expected one of " + list);
    }
    return v->string;
  }

  int64_t integer(const std::string& key, int64_t lo, int64_t hi) const {
    const json::Value* v = obj.find(key);
    if (!v || !v->is_number() || !std::isfinite(v->number) || v->number != std::floor(v->number)) bad(key, "an integer");
    const int64_t x = v->integral ? v->integer : static_cast<int64_t>(v->number);
    if (x < lo || x > hi)
      fail(SPAN_ERR_CONFIG, where + ": config key '" + key + "' is " + std::to_string(x) + "; expected " +
                                std::to_string(lo) + ".." + std::to_string(hi));
    return x;
  }
};

bool digits_1_to_9(const std::string& s) {
  for (char c : s)
    if (c < '1' || c > '9') return false;
  return true;
}

}  // namespace

Config config_from_json(const json::Value& doc, const std::string& where) {
  const json::Value* root = &doc;
  if (doc.is_object() && doc.find("config") && doc.find("config")->is_object()) root = doc.find("config");
  if (!root->is_object()) fail(SPAN_ERR_CONFIG, where + ": the config must be a JSON object (SpanConfig.to_dict())");
  const Reader r{*root, where};
  Config c;
  c.task = r.str("task", {"classification", "survival", "segmentation"});
  c.feat_dim = r.integer("feat_dim", 1, int64_t(1) << 24);
  c.embed_dim = r.integer("embed_dim", 1, int64_t(1) << 24);
  c.channel_factor = r.integer("channel_factor", 1, 64);
  c.encoder_string = r.str("encoder_string");
  if (c.encoder_string.empty() || c.encoder_string.size() > 16 || !digits_1_to_9(c.encoder_string))
    fail(SPAN_ERR_CONFIG, where + ": config key 'encoder_string' is '" + c.encoder_string +
                              "'; expected 1-16 digits 1-9 (layers per stage)");
  c.trans_type = r.str("trans_type", {"long", "long_noshift", "swin"});
  c.conv_type = r.str("conv_type", {"dwpatchconv", "patchconv", "patchmerge"});
  c.pos_emb = r.str("pos_emb", {"rpb", "alibi", "rope", "none"});
  // the ranges config.from_official accepts
  c.window_size = r.integer("window_size", 1, 27);
  c.kernel_size = r.integer("kernel_size", 1, 7);
  c.stride = r.integer("stride", 1, 7);
  c.dilation = r.integer("dilation", 1, 7);
  const json::Value* tokens = root->find("tokens");
  if (!tokens || !tokens->is_array()) r.bad("tokens", "an array");
  c.num_globals = static_cast<int64_t>(tokens->array.size());
  const json::Value* n_out = root->find("num_outputs");
  if (n_out && !n_out->is_null()) c.num_outputs = r.integer("num_outputs", 1, int64_t(1) << 30);
  if (c.task == "segmentation") {
    c.decoder_string = r.str("decoder_string");
    c.dtrans_type = r.str("dtrans_type", {"long", "long_noshift", "swin"});
    c.dconv_type = r.str("dconv_type", {"pixelshuffle", "patchinvs", "dwpatchinvs"});
    if (!digits_1_to_9(c.decoder_string) || c.decoder_string.size() + 1 != c.encoder_string.size())
      fail(SPAN_ERR_CONFIG, where + ": a segmentation config needs decoder_string of " +
                                std::to_string(c.encoder_string.size() - 1) + " digits 1-9, got '" + c.decoder_string + "'");
    const json::Value* t = root->find("threshold");
    if (!t || !t->is_number() || !(t->number > 0.0 && t->number < 1.0)) r.bad("threshold", "a number in (0, 1)");
    c.threshold = t->number;
    c.num_outputs = 1;
  } else {
    // dtrans_type etc. are in every to_dict(); a non-segmentation config has no decoder stages
    c.decoder_string.clear();
    c.dtrans_type = "long";
    c.dconv_type = "pixelshuffle";
  }
  return c;
}

}  // namespace span
