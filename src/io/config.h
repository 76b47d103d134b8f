// src/io/config.h: key=value configuration against a table of known keys, with presets.
//
// Run book
//   table                every key is declared once (ConfigKey::Int/Float/Bool/String/Enum):
//                        name, type, default, inclusive range (Int/Float) or allowed values
//                        (Enum), one line of help. The table is validated when a Config is made
//                        (unique names, defaults valid), so a bad default fails the first test.
//   values               Config::apply({"horizon=5", "lr=1e-3", ...}) sets keys in order (later
//                        wins). Int accepts integers and integral numbers like 1e6; Float any
//                        finite number; Bool true/false/1/0; Enum one of its values; String
//                        anything (including '=' after the first). Spaces, tabs and CRs around
//                        a key or a value are dropped, as parse_lines() drops them around a line,
//                        so a value reads back from to_lines() as it was set. Errors name the fix:
//                          unknown config key 'horizn' (did you mean 'horizon'?); valid keys: ...
//                          config key horizon=40 is out of range: it must be in [1, 16]
//                          config key prior=x is not valid: it must be one of planner, learned
//   presets              a Preset is a named list of key=value pairs. When the table has a key
//                        named "preset" (an Enum whose values are the preset names, plus "none"
//                        if wanted), apply() first applies the chosen preset (the last preset=
//                        argument, else the key's default), then every argument in order: the
//                        user's overrides always win over the preset.
//   printing             to_lines() prints every key as `key=value` in table order (floats in
//                        shortest round-trip form), for the run directory's config.txt and for
//                        checkpoint metadata; parse_lines() reads that text back (blank lines
//                        and lines starting with '#' are skipped), and apply() of it rebuilds an
//                        identical Config (the round trip is tested).
//   tests                build/test_emu -ts=io -tc='*config*'
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace pompc::io {

enum class ConfigType { Int, Float, Bool, String, Enum };

struct ConfigKey {
  std::string name;
  ConfigType type = ConfigType::String;
  std::string default_value;                              // as text
  double min = -std::numeric_limits<double>::infinity();  // Int / Float, inclusive
  double max = std::numeric_limits<double>::infinity();   // Int / Float, inclusive
  std::vector<std::string> choices;                       // Enum
  std::string help;                                       // one line

  static ConfigKey Int(std::string name, int64_t def, int64_t min, int64_t max, std::string help);
  static ConfigKey Float(std::string name, double def, double min, double max, std::string help);
  static ConfigKey Bool(std::string name, bool def, std::string help);
  static ConfigKey String(std::string name, std::string def, std::string help);
  static ConfigKey Enum(std::string name, std::string def, std::vector<std::string> choices,
                        std::string help);
};

struct Preset {
  std::string name;
  std::vector<std::string> settings;  // key=value pairs
};

class Config {
 public:
  // Validates the table and the presets; every key starts at its default.
  explicit Config(std::vector<ConfigKey> table, std::vector<Preset> presets = {});

  // Applies the preset (see the run book), then `args` in order.
  void apply(const std::vector<std::string>& args);
  // One validated assignment (no preset logic).
  void set(std::string_view key, std::string_view value);

  int64_t get_int(std::string_view key) const;
  double get_float(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  const std::string& get_string(std::string_view key) const;  // String and Enum keys
  std::string value_text(std::string_view key) const;         // canonical text of any key
  bool has(std::string_view key) const;
  std::vector<std::string> key_names() const;  // table order

  std::string to_lines() const;   // "key=value\n" for every key, table order
  std::string help_text() const;  // one line per key: name, type, default, range, help

  // key=value lines of a config file (skips blank lines and '#' comments).
  static std::vector<std::string> parse_lines(std::string_view text);

 private:
  struct Slot {
    int64_t i = 0;
    double f = 0;
    bool b = false;
    std::string s;
  };
  size_t index_of(std::string_view key) const;  // throws "unknown config key" with suggestions
  const ConfigKey& key_typed(std::string_view key, ConfigType t1, ConfigType t2, size_t* idx) const;
  Slot parse_value(const ConfigKey& k, std::string_view value) const;
  void apply_preset(std::string_view name);

  std::vector<ConfigKey> table_;
  std::vector<Preset> presets_;
  std::vector<Slot> values_;
};

// Shortest text that parses back to exactly `x` ("0.0003", "1e-05", "20").
std::string format_double(double x);

}  // namespace pompc::io
