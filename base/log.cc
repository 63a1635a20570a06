#include "base/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>

namespace grpo::log {
namespace {
std::atomic<int> g_level{kInfo};
std::mutex g_mu;
const char* kNames[] = {"D", "I", "W", "E", "-"};
}  // namespace

void set_level(Level level) { g_level.store(level); }
Level level() { return static_cast<Level>(g_level.load()); }

bool parse_level(const std::string& name, Level* out) {
  static const char* names[] = {"debug", "info", "warn", "error", "off"};
  for (int i = 0; i < 5; ++i) {
    if (name == names[i]) {
      *out = static_cast<Level>(i);
      return true;
    }
  }
  return false;
}

Line::Line(Level level, const char* file, int line) : level_(level) {
  const char* base = std::strrchr(file, '/');
  base = base ? base + 1 : file;
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  int ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
  char ms_buf[8];
  std::snprintf(ms_buf, sizeof(ms_buf), ".%03d", ms);
  os_ << buf << ms_buf << " " << kNames[level] << " " << base << ":" << line << "] ";
}

Line::~Line() {
  os_ << '\n';
  std::string s = os_.str();
  std::lock_guard<std::mutex> lock(g_mu);
  std::fwrite(s.data(), 1, s.size(), stderr);
  std::fflush(stderr);
}

}  // namespace grpo::log
