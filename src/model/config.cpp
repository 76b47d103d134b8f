// src/model/config.cpp: model_size presets, key=value parsing and validation. Run book: config.h.
#include "model/config.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <functional>

#include "common.h"
#include "op_types.h"

namespace pompc::model {
namespace {

struct SizePreset {
  int size, enc_dim, mlp_dim, latent_dim, num_enc_layers, num_q;
};
// SPEC section 1: (enc_dim, M, Z, encoder layers, Qn) per size.
constexpr SizePreset kSizes[] = {
    {1, 256, 384, 128, 2, 2},    {5, 256, 512, 512, 2, 5},      {19, 1024, 1024, 768, 3, 5},
    {48, 1792, 1792, 768, 4, 5}, {317, 4096, 4096, 1376, 5, 8},
};

long long parse_int(const std::string& key, const std::string& v) {
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  POMPC_REQUIRE(!v.empty() && end && *end == '\0' && errno == 0,
                "%s=%s: expected an integer, e.g. %s=3", key.c_str(), v.c_str(), key.c_str());
  return x;
}

int parse_i32(const std::string& key, const std::string& v) {
  const long long x = parse_int(key, v);
  POMPC_REQUIRE(x >= -2147483647LL && x <= 2147483647LL, "%s=%s: out of the int range", key.c_str(),
                v.c_str());
  return static_cast<int>(x);
}

float parse_float(const std::string& key, const std::string& v) {
  errno = 0;
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  POMPC_REQUIRE(!v.empty() && end && *end == '\0' && errno == 0 && std::isfinite(x),
                "%s=%s: expected a finite number, e.g. %s=0.5", key.c_str(), v.c_str(),
                key.c_str());
  return static_cast<float>(x);
}

bool parse_bool(const std::string& key, const std::string& v) {
  if (v == "true" || v == "1" || v == "on") return true;
  if (v == "false" || v == "0" || v == "off") return false;
  throw Error(strfmt("%s=%s: expected true or false", key.c_str(), v.c_str()));
}

std::string fmt_float(float x) {
  return strfmt("%.9g", static_cast<double>(x));
}

struct Key {
  const char* name;
  std::function<void(ModelConfig&, const std::string&)> set;
  std::function<std::string(const ModelConfig&)> get;
};

Key int_key(const char* name, int ModelConfig::*field) {
  return Key{name,
             [name, field](ModelConfig& c, const std::string& v) { c.*field = parse_i32(name, v); },
             [field](const ModelConfig& c) { return std::to_string(c.*field); }};
}

Key float_key(const char* name, float ModelConfig::*field) {
  return Key{
      name,
      [name, field](ModelConfig& c, const std::string& v) { c.*field = parse_float(name, v); },
      [field](const ModelConfig& c) { return fmt_float(c.*field); }};
}

// A key whose value is one of `names` (the enum's values in order).
template <typename E>
Key enum_key(const char* name, E ModelConfig::*field, std::vector<const char*> names) {
  return Key{name,
             [name, field, names](ModelConfig& c, const std::string& v) {
               std::string list;
               for (size_t i = 0; i < names.size(); ++i) {
                 if (v == names[i]) {
                   c.*field = static_cast<E>(i);
                   return;
                 }
                 list += std::string(i ? ", " : "") + names[i];
               }
               throw Error(strfmt("%s=%s: expected one of %s", name, v.c_str(), list.c_str()));
             },
             [field, names](const ModelConfig& c) {
               return std::string(names[static_cast<size_t>(c.*field)]);
             }};
}

Key bool_key(const char* name, bool ModelConfig::*field) {
  return Key{name,
             [name, field](ModelConfig& c, const std::string& v) { c.*field = parse_bool(name, v); },
             [field](const ModelConfig& c) { return std::string(c.*field ? "true" : "false"); }};
}

const std::vector<Key>& keys() {
  static const std::vector<Key> k = {
      Key{"model_size", [](ModelConfig& c, const std::string& v) { set_model_size(c, v); },
          [](const ModelConfig& c) { return std::to_string(c.model_size); }},
      int_key("obs_dim", &ModelConfig::obs_dim),
      int_key("action_dim", &ModelConfig::action_dim),
      int_key("enc_dim", &ModelConfig::enc_dim),
      int_key("mlp_dim", &ModelConfig::mlp_dim),
      int_key("latent_dim", &ModelConfig::latent_dim),
      int_key("num_enc_layers", &ModelConfig::num_enc_layers),
      int_key("num_q", &ModelConfig::num_q),
      int_key("num_bins", &ModelConfig::num_bins),
      float_key("vmin", &ModelConfig::vmin),
      float_key("vmax", &ModelConfig::vmax),
      int_key("simnorm_dim", &ModelConfig::simnorm_dim),
      float_key("dropout", &ModelConfig::dropout),
      float_key("log_std_min", &ModelConfig::log_std_min),
      float_key("log_std_max", &ModelConfig::log_std_max),
      enum_key("entropy_form", &ModelConfig::entropy_form, {"paper", "current"}),
      enum_key("policy_form", &ModelConfig::policy_form, {"squashed", "clamped"}),
      float_key("expl_log_std_min", &ModelConfig::expl_log_std_min),
      float_key("expl_log_std_max", &ModelConfig::expl_log_std_max),
      enum_key("critic", &ModelConfig::critic, {"q", "v"}),
      float_key("q_coef", &ModelConfig::q_coef),
      float_key("prior_coef", &ModelConfig::prior_coef),
      bool_key("prior_coef_per_action", &ModelConfig::prior_coef_per_action),
      enum_key("prior", &ModelConfig::prior, {"none", "planner", "intermediate", "learned"}),
      enum_key("divergence", &ModelConfig::divergence, {"reverse", "forward", "nll"}),
      enum_key("prior_scale", &ModelConfig::prior_scale, {"none", "own", "q"}),
      float_key("prior_scale_threshold", &ModelConfig::prior_scale_threshold),
      float_key("beta", &ModelConfig::beta),
      int_key("prior_samples", &ModelConfig::prior_samples),
      enum_key("prior_fit", &ModelConfig::prior_fit, {"reverse", "forward", "nll"}),
      float_key("min_std", &ModelConfig::min_std),
      bool_key("kl_critic", &ModelConfig::kl_critic),
      float_key("rho", &ModelConfig::rho),
      float_key("lr", &ModelConfig::lr),
      float_key("enc_lr_scale", &ModelConfig::enc_lr_scale),
      float_key("grad_clip_norm", &ModelConfig::grad_clip_norm),
      float_key("tau", &ModelConfig::tau),
      float_key("discount", &ModelConfig::discount),
      float_key("entropy_coef", &ModelConfig::entropy_coef),
      float_key("consistency_coef", &ModelConfig::consistency_coef),
      float_key("reward_coef", &ModelConfig::reward_coef),
      float_key("value_coef", &ModelConfig::value_coef),
      int_key("batch_size", &ModelConfig::batch_size),
      int_key("horizon", &ModelConfig::horizon),
      Key{"seed",
          [](ModelConfig& c, const std::string& v) {
            const long long x = parse_int("seed", v);
            POMPC_REQUIRE(x >= 0, "seed=%s: must be >= 0", v.c_str());
            c.seed = static_cast<uint64_t>(x);
          },
          [](const ModelConfig& c) { return std::to_string(c.seed); }},
      Key{"tf32", [](ModelConfig& c, const std::string& v) { c.tf32 = parse_bool("tf32", v); },
          [](const ModelConfig& c) { return std::string(c.tf32 ? "true" : "false"); }},
  };
  return k;
}

}  // namespace

void set_model_size(ModelConfig& cfg, const std::string& size) {
  std::string s = size;
  if (!s.empty() && (s.back() == 'M' || s.back() == 'm')) s.pop_back();
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  for (const SizePreset& p : kSizes) {
    if (!s.empty() && end && *end == '\0' && v == p.size) {
      cfg.model_size = p.size;
      cfg.enc_dim = p.enc_dim;
      cfg.mlp_dim = p.mlp_dim;
      cfg.latent_dim = p.latent_dim;
      cfg.num_enc_layers = p.num_enc_layers;
      cfg.num_q = p.num_q;
      return;
    }
  }
  throw Error(strfmt("model_size=%s is not one of 1, 5, 19, 48, 317 (millions of parameters)",
                     size.c_str()));
}

float discount_for_episode_length(int episode_length) {
  POMPC_REQUIRE(episode_length >= 1, "episode_length (%d) must be >= 1", episode_length);
  const double frac = episode_length / 5.0;
  return static_cast<float>(std::clamp((frac - 1.0) / frac, 0.95, 0.995));
}

PolicyHead ModelConfig::policy_head(bool explore) const {
  PolicyHead h;
  h.log_std_min = explore ? expl_log_std_min : log_std_min;
  h.log_std_max = explore ? expl_log_std_max : log_std_max;
  h.entropy_form = entropy_form;
  h.form = policy_form;
  return h;
}

void ModelConfig::set(const std::string& key, const std::string& value) {
  for (const Key& k : keys()) {
    if (key == k.name) {
      k.set(*this, value);
      return;
    }
  }
  std::string names;
  for (const Key& k : keys()) names += std::string(names.empty() ? "" : ", ") + k.name;
  throw Error(
      strfmt("unknown model setting '%s'; the settings are: %s", key.c_str(), names.c_str()));
}

std::vector<std::pair<std::string, std::string>> ModelConfig::items() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Key& k : keys()) out.emplace_back(k.name, k.get(*this));
  return out;
}

void ModelConfig::validate() const {
  POMPC_REQUIRE(obs_dim >= 1, "obs_dim (%d) must be >= 1: set it to the task's observation size",
                obs_dim);
  POMPC_REQUIRE(action_dim >= 1, "action_dim (%d) must be >= 1: set it to the task's action size",
                action_dim);
  POMPC_REQUIRE(enc_dim >= 1 && mlp_dim >= 1, "enc_dim (%d) and mlp_dim (%d) must be >= 1", enc_dim,
                mlp_dim);
  POMPC_REQUIRE(simnorm_dim == kSimNormGroup,
                "simnorm_dim (%d) must be %d: the SimNorm ops group the latent by %d", simnorm_dim,
                kSimNormGroup, kSimNormGroup);
  POMPC_REQUIRE(latent_dim >= simnorm_dim && latent_dim % simnorm_dim == 0,
                "latent_dim (%d) must be a positive multiple of simnorm_dim (%d), e.g. %d",
                latent_dim, simnorm_dim,
                std::max(simnorm_dim, (latent_dim + simnorm_dim - 1) / simnorm_dim * simnorm_dim));
  POMPC_REQUIRE(num_enc_layers >= 1, "num_enc_layers (%d) must be >= 1", num_enc_layers);
  POMPC_REQUIRE(num_q >= 2 && num_q <= 64,
                "num_q (%d) must be in [2, 64]: min2 / avg2 pick two distinct heads", num_q);
  POMPC_REQUIRE(num_bins >= 2,
                "num_bins (%d) must be >= 2 (two-hot regression; plain MSE heads are not "
                "implemented)",
                num_bins);
  POMPC_REQUIRE(vmin < vmax, "vmin (%g) must be < vmax (%g)", static_cast<double>(vmin),
                static_cast<double>(vmax));
  POMPC_REQUIRE(dropout >= 0.0f && dropout < 1.0f, "dropout (%g) must be in [0, 1)",
                static_cast<double>(dropout));
  POMPC_REQUIRE(log_std_min < log_std_max, "log_std_min (%g) must be < log_std_max (%g)",
                static_cast<double>(log_std_min), static_cast<double>(log_std_max));
  POMPC_REQUIRE(rho > 0.0f && rho <= 1.0f, "rho (%g) must be in (0, 1]", static_cast<double>(rho));
  POMPC_REQUIRE(lr > 0.0f && enc_lr_scale > 0.0f, "lr (%g) and enc_lr_scale (%g) must be > 0",
                static_cast<double>(lr), static_cast<double>(enc_lr_scale));
  POMPC_REQUIRE(grad_clip_norm > 0.0f, "grad_clip_norm (%g) must be > 0",
                static_cast<double>(grad_clip_norm));
  POMPC_REQUIRE(tau > 0.0f && tau <= 1.0f, "tau (%g) must be in (0, 1]", static_cast<double>(tau));
  POMPC_REQUIRE(discount > 0.0f && discount <= 1.0f, "discount (%g) must be in (0, 1]",
                static_cast<double>(discount));
  POMPC_REQUIRE(
      entropy_coef >= 0.0f && consistency_coef >= 0.0f && reward_coef >= 0.0f && value_coef >= 0.0f,
      "entropy_coef, consistency_coef, reward_coef and value_coef must be >= 0");
  // The CUDA RunningScale sorts the batch in one block (kernels/scale.cu, kScaleMaxN = 4096).
  POMPC_REQUIRE(batch_size >= 1 && batch_size <= 4096, "batch_size (%d) must be in [1, 4096]",
                batch_size);
  POMPC_REQUIRE(horizon >= 1 && horizon <= 64, "horizon (%d) must be in [1, 64]", horizon);
  POMPC_REQUIRE(expl_log_std_min < expl_log_std_max,
                "expl_log_std_min (%g) must be < expl_log_std_max (%g)",
                static_cast<double>(expl_log_std_min), static_cast<double>(expl_log_std_max));
  // The policy objective (SPEC 4).
  POMPC_REQUIRE(q_coef >= 0.0f && prior_coef >= 0.0f,
                "q_coef (%g) and prior_coef (%g) must be >= 0 (PO-MPC: q_coef = 1 - lambda, "
                "prior_coef = lambda)",
                static_cast<double>(q_coef), static_cast<double>(prior_coef));
  POMPC_REQUIRE(q_coef > 0.0f || prior != Prior::none,
                "q_coef=0 with prior=none leaves the policy nothing to learn from: set q_coef > 0 "
                "or choose a prior");
  POMPC_REQUIRE(prior != Prior::none || prior_coef == 0.0f,
                "prior_coef (%g) needs a prior: set prior=planner|intermediate|learned or "
                "prior_coef=0",
                static_cast<double>(prior_coef));
  POMPC_REQUIRE(critic == Critic::q || q_coef == 0.0f,
                "critic=v has no action input, so the Q term has no gradient: set q_coef=0 (BMPC) "
                "or critic=q");
  POMPC_REQUIRE(critic == Critic::q || prior != Prior::intermediate,
                "prior=intermediate weighs planner samples by Qbar(z, a): it needs critic=q");
  POMPC_REQUIRE(divergence != Divergence::nll || prior == Prior::planner,
                "divergence=nll is TD-M(PC)^2's planner log-likelihood: it needs prior=planner");
  POMPC_REQUIRE(prior_scale != PriorScale::q || q_coef > 0.0f,
                "prior_scale=q divides by S_Q, which only the Q term updates: set q_coef > 0 or "
                "prior_scale=own|none");
  POMPC_REQUIRE(prior_fit != Divergence::nll,
                "prior_fit=nll is not a divergence between Gaussians: use forward or reverse");
  POMPC_REQUIRE(!kl_critic || (prior == Prior::learned && critic == Critic::q && q_coef > 0.0f),
                "kl_critic=true regularises the Q target with log pi / pi_psi: it needs "
                "prior=learned, critic=q and q_coef > 0 (or set kl_critic=false)");
  POMPC_REQUIRE(prior_scale_threshold >= 0.0f, "prior_scale_threshold (%g) must be >= 0",
                static_cast<double>(prior_scale_threshold));
  POMPC_REQUIRE(min_std > 0.0f, "min_std (%g) must be > 0", static_cast<double>(min_std));
  POMPC_REQUIRE(beta > 0.0f,
                "beta (%g) must be > 0 (it divides Qbar / S_Q; large beta: the planner itself)",
                static_cast<double>(beta));
  POMPC_REQUIRE(prior_samples >= 1 && prior_samples <= 256, "prior_samples (%d) must be in [1, 256]",
                prior_samples);
  POMPC_REQUIRE(model_size == 1 || model_size == 5 || model_size == 19 || model_size == 48 ||
                    model_size == 317,
                "model_size (%d) is not one of 1, 5, 19, 48, 317", model_size);
}

}  // namespace pompc::model
