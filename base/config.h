// TOML configuration with a declared schema: every key has a type, a default, a range and a doc line.
//
// Loading checks the whole file before anything runs. An unknown key, a wrong type, an out-of-range
// value or a missing file for a path key fails with one line naming the file, the line and the key:
//   configs/local.toml:12: generator.replicas: must be >= 0, got -1
// `key=value` overrides (from the command line) are checked the same way and win over the file.
// A Config is immutable after loading and may be read from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/status.h"

namespace grpo {

enum class ConfigType { kInt, kDouble, kBool, kString, kPath };

struct ConfigKey {
  std::string name;  // dotted: "generator.replicas"
  ConfigType type = ConfigType::kInt;
  std::string default_value;  // in TOML value syntax: "1", "0.5", "true", "\"text\""
  double min = -1e300;        // inclusive bounds for numbers
  double max = 1e300;
  std::string doc;
  std::vector<std::string> choices;  // for strings: the allowed values (empty = any)
};

class ConfigSchema {
 public:
  ConfigSchema& add(ConfigKey key);
  const ConfigKey* find(const std::string& name) const;
  const std::vector<ConfigKey>& keys() const { return keys_; }
  // The closest known key name by edit distance, or "" if nothing is close.
  std::string suggest(const std::string& name) const;

 private:
  std::vector<ConfigKey> keys_;
  std::map<std::string, size_t> index_;
};

class Config {
 public:
  // Reads and validates `path`, then applies `overrides` ("a.b=value").
  static StatusOr<Config> load(const ConfigSchema& schema, const std::string& path,
                               const std::vector<std::string>& overrides = {});
  // Same for TOML text; `source` names it in errors.
  static StatusOr<Config> parse(const ConfigSchema& schema, const std::string& text,
                                const std::string& source,
                                const std::vector<std::string>& overrides = {});

  int64_t get_int(const std::string& key) const;
  double get_double(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  // "file:line" where the key was set, "command line", or "default".
  std::string origin(const std::string& key) const;
  // Source file of the config ("" for text).
  const std::string& source() const { return source_; }
  // All values as TOML text, one `key = value` per line (for logging and run directories).
  std::string dump() const;

 private:
  struct Value {
    ConfigType type = ConfigType::kInt;
    int64_t i = 0;
    double d = 0;
    bool b = false;
    std::string s;
    std::string origin = "default";
  };
  const Value& lookup(const std::string& key, ConfigType want) const;
  Status set_from_text(const ConfigKey& key, const std::string& value_text,
                       const std::string& where);

  std::string source_;
  std::map<std::string, Value> values_;
  friend struct ConfigBuilder;
};

}  // namespace grpo
