// src/io/config.cpp: the key=value configuration (see config.h).
#include "io/config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

#include "common.h"

namespace pompc::io {

std::string format_double(double x) {
  char buf[400];
  // Plain decimals for everyday magnitudes (0.0003 rather than 3e-04), exponents otherwise;
  // both are the shortest text that reads back as exactly x.
  const double a = std::fabs(x);
  const bool plain = a == 0 || (a >= 1e-5 && a < 1e16);
  const auto r = plain ? std::to_chars(buf, buf + sizeof buf, x, std::chars_format::fixed)
                       : std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, r.ptr);
}

namespace {

const char* type_name(ConfigType t) {
  switch (t) {
    case ConfigType::Int:
      return "int";
    case ConfigType::Float:
      return "float";
    case ConfigType::Bool:
      return "bool";
    case ConfigType::String:
      return "string";
    case ConfigType::Enum:
      return "enum";
  }
  return "?";
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += sep;
    out += v[i];
  }
  return out;
}

std::string bound_text(const ConfigKey& k, double v) {
  if (k.type == ConfigType::Int) return std::to_string(static_cast<int64_t>(v));
  return format_double(v);
}

// "in [1, 16]", "at least 0", "at most 2", "any" (Int / Float keys).
std::string range_text(const ConfigKey& k) {
  const bool lo = std::isfinite(k.min), hi = std::isfinite(k.max);
  if (lo && hi) return "in [" + bound_text(k, k.min) + ", " + bound_text(k, k.max) + "]";
  if (lo) return "at least " + bound_text(k, k.min);
  if (hi) return "at most " + bound_text(k, k.max);
  return "any value";
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string trim(std::string_view s) {
  size_t a = 0, b = s.size();
  while (a < b && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r')) ++a;
  while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\r')) --b;
  return std::string(s.substr(a, b - a));
}

}  // namespace

ConfigKey ConfigKey::Int(std::string name, int64_t def, int64_t min, int64_t max,
                         std::string help) {
  ConfigKey k;
  k.name = std::move(name);
  k.type = ConfigType::Int;
  k.default_value = std::to_string(def);
  k.min = static_cast<double>(min);
  k.max = static_cast<double>(max);
  k.help = std::move(help);
  return k;
}

ConfigKey ConfigKey::Float(std::string name, double def, double min, double max, std::string help) {
  ConfigKey k;
  k.name = std::move(name);
  k.type = ConfigType::Float;
  k.default_value = format_double(def);
  k.min = min;
  k.max = max;
  k.help = std::move(help);
  return k;
}

ConfigKey ConfigKey::Bool(std::string name, bool def, std::string help) {
  ConfigKey k;
  k.name = std::move(name);
  k.type = ConfigType::Bool;
  k.default_value = def ? "true" : "false";
  k.help = std::move(help);
  return k;
}

ConfigKey ConfigKey::String(std::string name, std::string def, std::string help) {
  ConfigKey k;
  k.name = std::move(name);
  k.type = ConfigType::String;
  k.default_value = std::move(def);
  k.help = std::move(help);
  return k;
}

ConfigKey ConfigKey::Enum(std::string name, std::string def, std::vector<std::string> choices,
                          std::string help) {
  ConfigKey k;
  k.name = std::move(name);
  k.type = ConfigType::Enum;
  k.default_value = std::move(def);
  k.choices = std::move(choices);
  k.help = std::move(help);
  return k;
}

Config::Config(std::vector<ConfigKey> table, std::vector<Preset> presets)
    : table_(std::move(table)), presets_(std::move(presets)) {
  std::set<std::string> names;
  for (const ConfigKey& k : table_) {
    POMPC_REQUIRE(!k.name.empty() && k.name.find_first_of("= \t\n#") == std::string::npos,
                  "config table: key name '%s' must be non-empty without '=', '#' or spaces",
                  k.name.c_str());
    POMPC_REQUIRE(names.insert(k.name).second, "config table: key %s is declared twice",
                  k.name.c_str());
    POMPC_REQUIRE(k.type != ConfigType::Enum || !k.choices.empty(),
                  "config table: enum key %s has no allowed values", k.name.c_str());
    POMPC_REQUIRE(k.min <= k.max, "config table: key %s has min > max", k.name.c_str());
  }
  values_.resize(table_.size());
  for (size_t i = 0; i < table_.size(); ++i) {
    try {
      values_[i] = parse_value(table_[i], table_[i].default_value);
    } catch (const Error& e) {
      throw Error(strfmt("config table: the default of %s is invalid: %s", table_[i].name.c_str(),
                         e.what()));
    }
  }
  std::set<std::string> preset_names;
  for (const Preset& p : presets_)
    POMPC_REQUIRE(preset_names.insert(p.name).second, "config presets: %s is declared twice",
                  p.name.c_str());
  if (!presets_.empty()) {
    POMPC_REQUIRE(has("preset") && table_[index_of("preset")].type == ConfigType::Enum,
                  "config table: presets need an enum key named preset");
  }
  if (has("preset") && table_[index_of("preset")].type == ConfigType::Enum) {
    for (const std::string& c : table_[index_of("preset")].choices)
      POMPC_REQUIRE(c == "none" || preset_names.count(c),
                    "config table: preset value %s has no Preset definition", c.c_str());
  }
  // Every preset must be valid against the table (checked on a scratch copy).
  for (const Preset& p : presets_) {
    Config scratch = *this;
    scratch.presets_.clear();
    for (const std::string& kv : p.settings) {
      const size_t eq = kv.find('=');
      POMPC_REQUIRE(eq != std::string::npos, "preset %s: expected key=value, got '%s'",
                    p.name.c_str(), kv.c_str());
      POMPC_REQUIRE(kv.substr(0, eq) != "preset", "preset %s must not set preset", p.name.c_str());
      try {
        scratch.set(kv.substr(0, eq), std::string_view(kv).substr(eq + 1));
      } catch (const Error& e) {
        throw Error(strfmt("preset %s: %s", p.name.c_str(), e.what()));
      }
    }
  }
}

std::vector<std::string> Config::key_names() const {
  std::vector<std::string> names;
  for (const ConfigKey& k : table_) names.push_back(k.name);
  return names;
}

bool Config::has(std::string_view key) const {
  for (const ConfigKey& k : table_)
    if (k.name == key) return true;
  return false;
}

size_t Config::index_of(std::string_view key) const {
  for (size_t i = 0; i < table_.size(); ++i)
    if (table_[i].name == key) return i;
  std::vector<std::string> names;
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const ConfigKey& k : table_) {
    names.push_back(k.name);
    const size_t d = edit_distance(key, k.name);
    if (d < best_d) best_d = d, best = k.name;
  }
  std::sort(names.begin(), names.end());
  const size_t limit = std::max<size_t>(2, key.size() / 3);
  std::string suggest = best_d <= limit ? strfmt(" (did you mean '%s'?)", best.c_str()) : "";
  throw Error(strfmt("unknown config key '%.*s'%s; valid keys: %s", static_cast<int>(key.size()),
                     key.data(), suggest.c_str(), join(names, ", ").c_str()));
}

Config::Slot Config::parse_value(const ConfigKey& k, std::string_view value) const {
  Slot s;
  const char* n = k.name.c_str();
  const std::string v(value);
  switch (k.type) {
    case ConfigType::Int: {
      int64_t x = 0;
      const auto r = std::from_chars(v.data(), v.data() + v.size(), x);
      if (r.ec != std::errc() || r.ptr != v.data() + v.size()) {
        // Integral numbers in other notations (1e6, 2000000.0).
        double d = 0;
        const auto rd = std::from_chars(v.data(), v.data() + v.size(), d);
        const bool ok = rd.ec == std::errc() && rd.ptr == v.data() + v.size() && std::isfinite(d) &&
                        d == std::floor(d) && std::fabs(d) < 9.2e18;
        POMPC_REQUIRE(ok, "config key %s=%s is not valid: it must be an integer %s", n, v.c_str(),
                      range_text(k).c_str());
        x = static_cast<int64_t>(d);
      }
      POMPC_REQUIRE(static_cast<double>(x) >= k.min && static_cast<double>(x) <= k.max,
                    "config key %s=%s is out of range: it must be %s", n, v.c_str(),
                    range_text(k).c_str());
      s.i = x;
      break;
    }
    case ConfigType::Float: {
      double x = 0;
      const auto r = std::from_chars(v.data(), v.data() + v.size(), x);
      POMPC_REQUIRE(r.ec == std::errc() && r.ptr == v.data() + v.size() && std::isfinite(x),
                    "config key %s=%s is not valid: it must be a finite number %s", n, v.c_str(),
                    range_text(k).c_str());
      POMPC_REQUIRE(x >= k.min && x <= k.max, "config key %s=%s is out of range: it must be %s", n,
                    v.c_str(), range_text(k).c_str());
      s.f = x;
      break;
    }
    case ConfigType::Bool:
      if (v == "true" || v == "1")
        s.b = true;
      else if (v == "false" || v == "0")
        s.b = false;
      else
        throw Error(strfmt("config key %s=%s is not valid: it must be true or false (or 1/0)", n,
                           v.c_str()));
      break;
    case ConfigType::Enum:
      POMPC_REQUIRE(std::find(k.choices.begin(), k.choices.end(), v) != k.choices.end(),
                    "config key %s=%s is not valid: it must be one of %s", n, v.c_str(),
                    join(k.choices, ", ").c_str());
      s.s = v;
      break;
    case ConfigType::String:
      POMPC_REQUIRE(v.find('\n') == std::string::npos, "config key %s: the value must be one line",
                    n);
      s.s = v;
      break;
  }
  return s;
}

void Config::set(std::string_view key, std::string_view value) {
  const size_t i = index_of(key);
  values_[i] = parse_value(table_[i], value);
}

void Config::apply_preset(std::string_view name) {
  if (name == "none") return;
  for (const Preset& p : presets_) {
    if (p.name != name) continue;
    for (const std::string& kv : p.settings) {
      const size_t eq = kv.find('=');
      set(std::string_view(kv).substr(0, eq), std::string_view(kv).substr(eq + 1));
    }
    return;
  }
}

void Config::apply(const std::vector<std::string>& args) {
  // Split and check every argument first, so a typo is reported before anything changes.
  std::vector<std::pair<std::string, std::string>> kvs;
  for (const std::string& a : args) {
    const size_t eq = a.find('=');
    POMPC_REQUIRE(eq != std::string::npos && eq > 0,
                  "expected key=value, got '%s' (keys are listed by `pompc help`)", a.c_str());
    kvs.emplace_back(trim(std::string_view(a).substr(0, eq)),
                     trim(std::string_view(a).substr(eq + 1)));
    const size_t i = index_of(kvs.back().first);
    parse_value(table_[i], kvs.back().second);
  }
  if (!presets_.empty()) {
    std::string preset = table_[index_of("preset")].default_value;
    for (const auto& [k, v] : kvs)
      if (k == "preset") preset = v;
    apply_preset(preset);
  }
  for (const auto& [k, v] : kvs) set(k, v);
}

const ConfigKey& Config::key_typed(std::string_view key, ConfigType t1, ConfigType t2,
                                   size_t* idx) const {
  *idx = index_of(key);
  const ConfigKey& k = table_[*idx];
  POMPC_REQUIRE(k.type == t1 || k.type == t2, "config key %s has type %s, not %s", k.name.c_str(),
                type_name(k.type), type_name(t1));
  return k;
}

int64_t Config::get_int(std::string_view key) const {
  size_t i;
  key_typed(key, ConfigType::Int, ConfigType::Int, &i);
  return values_[i].i;
}

double Config::get_float(std::string_view key) const {
  size_t i;
  key_typed(key, ConfigType::Float, ConfigType::Float, &i);
  return values_[i].f;
}

bool Config::get_bool(std::string_view key) const {
  size_t i;
  key_typed(key, ConfigType::Bool, ConfigType::Bool, &i);
  return values_[i].b;
}

const std::string& Config::get_string(std::string_view key) const {
  size_t i;
  key_typed(key, ConfigType::String, ConfigType::Enum, &i);
  return values_[i].s;
}

std::string Config::value_text(std::string_view key) const {
  const size_t i = index_of(key);
  const Slot& s = values_[i];
  switch (table_[i].type) {
    case ConfigType::Int:
      return std::to_string(s.i);
    case ConfigType::Float:
      return format_double(s.f);
    case ConfigType::Bool:
      return s.b ? "true" : "false";
    case ConfigType::String:
    case ConfigType::Enum:
      return s.s;
  }
  return "";
}

std::string Config::to_lines() const {
  std::string out;
  for (const ConfigKey& k : table_) out += k.name + "=" + value_text(k.name) + "\n";
  return out;
}

std::string Config::help_text() const {
  std::string out;
  for (const ConfigKey& k : table_) {
    std::string what;
    if (k.type == ConfigType::Int || k.type == ConfigType::Float)
      what = strfmt("%s %s", type_name(k.type), range_text(k).c_str());
    else if (k.type == ConfigType::Enum)
      what = "one of " + join(k.choices, "|");
    else
      what = type_name(k.type);
    out += strfmt("  %-22s %s (default %s): %s\n", k.name.c_str(), what.c_str(),
                  k.default_value.c_str(), k.help.c_str());
  }
  return out;
}

std::vector<std::string> Config::parse_lines(std::string_view text) {
  std::vector<std::string> out;
  size_t p = 0;
  while (p <= text.size()) {
    size_t e = text.find('\n', p);
    if (e == std::string_view::npos) e = text.size();
    std::string line = trim(text.substr(p, e - p));
    if (!line.empty() && line[0] != '#') out.push_back(std::move(line));
    p = e + 1;
  }
  return out;
}

}  // namespace pompc::io
