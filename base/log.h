// Leveled, thread-safe logging to stderr: `GRPO_LOG(kInfo) << "step " << n;`
//
// One line per statement, prefixed with time, level and a short source location. The global level is
// set once at start (from the config's run.log_level) and may be read from any thread.
#pragma once

#include <sstream>
#include <string>

namespace grpo::log {

enum Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

void set_level(Level level);
Level level();
// Parses "debug|info|warn|error|off"; returns false on an unknown name.
bool parse_level(const std::string& name, Level* out);

class Line {
 public:
  Line(Level level, const char* file, int line);
  ~Line();
  std::ostringstream& stream() { return os_; }

 private:
  Level level_;
  std::ostringstream os_;
};

struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace grpo::log

// Voidify turns the stream expression into void so the macro is one expression (safe in if/else).
#define GRPO_LOG(severity)                                   \
  (::grpo::log::severity < ::grpo::log::level())             \
      ? (void)0                                              \
      : ::grpo::log::Voidify() &                             \
            ::grpo::log::Line(::grpo::log::severity, __FILE__, __LINE__).stream()
