#include "base/config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <toml++/toml.h>

namespace grpo {
namespace {

const char* type_name(ConfigType t) {
  switch (t) {
    case ConfigType::kInt: return "an integer";
    case ConfigType::kDouble: return "a number";
    case ConfigType::kBool: return "a boolean";
    case ConfigType::kString: return "a string";
    case ConfigType::kPath: return "a path string";
  }
  return "?";
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string fmt_number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

ConfigSchema& ConfigSchema::add(ConfigKey key) {
  GRPO_CHECK_MSG(index_.count(key.name) == 0, "duplicate config key " + key.name);
  index_[key.name] = keys_.size();
  keys_.push_back(std::move(key));
  return *this;
}

const ConfigKey* ConfigSchema::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &keys_[it->second];
}

std::string ConfigSchema::suggest(const std::string& name) const {
  std::string best;
  size_t best_d = 4;
  for (const auto& k : keys_) {
    size_t d = edit_distance(name, k.name);
    if (d < best_d) {
      best_d = d;
      best = k.name;
    }
  }
  return best;
}

// Validates one TOML node against its key and stores it.
struct ConfigBuilder {
  static Status store(Config& cfg, const ConfigKey& key, const toml::node& node,
                      const std::string& where) {
    Config::Value v;
    v.type = key.type;
    v.origin = where;
    auto type_error = [&]() {
      return invalid_argument(where + ": " + key.name + ": expected " + type_name(key.type));
    };
    switch (key.type) {
      case ConfigType::kInt: {
        auto x = node.value_exact<int64_t>();
        if (!x) return type_error();
        if (static_cast<double>(*x) < key.min)
          return invalid_argument(where + ": " + key.name + ": must be >= " + fmt_number(key.min) +
                                  ", got " + std::to_string(*x));
        if (static_cast<double>(*x) > key.max)
          return invalid_argument(where + ": " + key.name + ": must be <= " + fmt_number(key.max) +
                                  ", got " + std::to_string(*x));
        v.i = *x;
        break;
      }
      case ConfigType::kDouble: {
        std::optional<double> x;
        if (node.is_floating_point()) x = node.value_exact<double>();
        else if (node.is_integer()) x = static_cast<double>(*node.value_exact<int64_t>());
        if (!x) return type_error();
        if (!std::isfinite(*x))
          return invalid_argument(where + ": " + key.name + ": must be finite");
        if (*x < key.min)
          return invalid_argument(where + ": " + key.name + ": must be >= " + fmt_number(key.min) +
                                  ", got " + fmt_number(*x));
        if (*x > key.max)
          return invalid_argument(where + ": " + key.name + ": must be <= " + fmt_number(key.max) +
                                  ", got " + fmt_number(*x));
        v.d = *x;
        break;
      }
      case ConfigType::kBool: {
        auto x = node.value_exact<bool>();
        if (!x) return type_error();
        v.b = *x;
        break;
      }
      case ConfigType::kString:
      case ConfigType::kPath: {
        auto x = node.value_exact<std::string>();
        if (!x) return type_error();
        if (!key.choices.empty() &&
            std::find(key.choices.begin(), key.choices.end(), *x) == key.choices.end()) {
          std::string all;
          for (const auto& c : key.choices) all += (all.empty() ? "" : ", ") + c;
          return invalid_argument(where + ": " + key.name + ": must be one of " + all + ", got '" +
                                  *x + "'");
        }
        if (key.type == ConfigType::kPath && !x->empty() && !std::filesystem::exists(*x))
          return invalid_argument(where + ": " + key.name + ": file '" + *x + "' does not exist");
        v.s = *x;
        break;
      }
    }
    cfg.values_[key.name] = std::move(v);
    return ok_status();
  }

  static Status walk(Config& cfg, const ConfigSchema& schema, const toml::table& table,
                     const std::string& prefix, const std::string& source) {
    for (const auto& [k, node] : table) {
      std::string name = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
      std::string where = source + ":" + std::to_string(node.source().begin.line);
      if (const toml::table* sub = node.as_table()) {
        // A table is valid when some key lives under it.
        bool known = false;
        for (const auto& key : schema.keys())
          if (key.name.rfind(name + ".", 0) == 0) known = true;
        if (!known) {
          std::string hint = schema.suggest(name);
          return invalid_argument(where + ": unknown section '" + name + "'" +
                                  (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
        }
        GRPO_RETURN_IF_ERROR(walk(cfg, schema, *sub, name, source));
        continue;
      }
      const ConfigKey* key = schema.find(name);
      if (!key) {
        std::string hint = schema.suggest(name);
        return invalid_argument(where + ": unknown key '" + name + "'" +
                                (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
      }
      GRPO_RETURN_IF_ERROR(store(cfg, *key, node, where));
    }
    return ok_status();
  }
};

Status Config::set_from_text(const ConfigKey& key, const std::string& value_text,
                             const std::string& where) {
  // Parse the value as TOML; a bare word that is not valid TOML is taken as a string.
  toml::table t;
  try {
    t = toml::parse("v = " + value_text);
  } catch (const toml::parse_error&) {
    if (key.type == ConfigType::kString || key.type == ConfigType::kPath) {
      toml::table s;
      s.insert("v", value_text);
      return ConfigBuilder::store(*this, key, *s.get("v"), where);
    }
    return invalid_argument(where + ": " + key.name + ": cannot parse value '" + value_text +
                            "' as " + type_name(key.type));
  }
  return ConfigBuilder::store(*this, key, *t.get("v"), where);
}

StatusOr<Config> Config::parse(const ConfigSchema& schema, const std::string& text,
                               const std::string& source,
                               const std::vector<std::string>& overrides) {
  Config cfg;
  cfg.source_ = source;
  for (const auto& key : schema.keys()) {
    GRPO_RETURN_IF_ERROR(cfg.set_from_text(key, key.default_value, "default")
                             .with_context("schema default of " + key.name));
    cfg.values_[key.name].origin = "default";
  }
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return invalid_argument(source + ":" + std::to_string(e.source().begin.line) + ": " +
                            std::string(e.description()));
  }
  GRPO_RETURN_IF_ERROR(ConfigBuilder::walk(cfg, schema, root, "", source));
  for (const auto& ov : overrides) {
    auto eq = ov.find('=');
    if (eq == std::string::npos || eq == 0)
      return invalid_argument("command line: override '" + ov + "' is not key=value");
    std::string name = ov.substr(0, eq);
    const ConfigKey* key = schema.find(name);
    if (!key) {
      std::string hint = schema.suggest(name);
      return invalid_argument("command line: unknown key '" + name + "'" +
                              (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
    }
    GRPO_RETURN_IF_ERROR(cfg.set_from_text(*key, ov.substr(eq + 1), "command line"));
  }
  return cfg;
}

StatusOr<Config> Config::load(const ConfigSchema& schema, const std::string& path,
                              const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in) return not_found(path + ": cannot open config file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(schema, ss.str(), path, overrides);
}

const Config::Value& Config::lookup(const std::string& key, ConfigType want) const {
  auto it = values_.find(key);
  GRPO_CHECK_MSG(it != values_.end(), "config key not in schema: " + key);
  bool string_like = want == ConfigType::kString || want == ConfigType::kPath;
  bool have_string = it->second.type == ConfigType::kString || it->second.type == ConfigType::kPath;
  GRPO_CHECK_MSG(it->second.type == want || (string_like && have_string),
                 "config key read with the wrong type: " + key);
  return it->second;
}

int64_t Config::get_int(const std::string& key) const { return lookup(key, ConfigType::kInt).i; }
double Config::get_double(const std::string& key) const {
  return lookup(key, ConfigType::kDouble).d;
}
bool Config::get_bool(const std::string& key) const { return lookup(key, ConfigType::kBool).b; }
std::string Config::get_string(const std::string& key) const {
  return lookup(key, ConfigType::kString).s;
}
std::string Config::origin(const std::string& key) const {
  auto it = values_.find(key);
  return it == values_.end() ? "" : it->second.origin;
}

std::string Config::dump() const {
  std::ostringstream os;
  for (const auto& [name, v] : values_) {
    os << name << " = ";
    switch (v.type) {
      case ConfigType::kInt: os << v.i; break;
      case ConfigType::kDouble: os << v.d; break;
      case ConfigType::kBool: os << (v.b ? "true" : "false"); break;
      default: os << '"' << v.s << '"'; break;
    }
    os << '\n';
  }
  return os.str();
}

}  // namespace grpo
