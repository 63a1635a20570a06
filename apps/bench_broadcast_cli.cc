// The options and report of the weight-broadcast benchmark (see apps/bench_broadcast_cli.h).
#include "apps/bench_broadcast_cli.h"

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "apps/cli_util.h"
#include "base/log.h"
#include "cluster/bench_broadcast.h"

namespace grpo::apps {
namespace {

struct BroadcastArgs {
  cluster::BroadcastBenchOptions o;
  std::string receivers = "1,4,8";
  bool json = false;
};

int run_bench_broadcast(BroadcastArgs a) {
  auto counts = parse_id_list(a.receivers, "--receivers");
  if (!counts.ok()) {
    std::fprintf(stderr, "error: --receivers: '%s' is not a comma-separated list of receiver counts (e.g. 1,4,8)\n",
                 a.receivers.c_str());
    return 2;
  }
  a.o.receivers.assign(counts->begin(), counts->end());
  // The receivers join and leave a source per configuration; their membership lines are noise here.
  if (log::level() < log::kWarn) log::set_level(log::kWarn);
  auto r = cluster::bench_broadcast(a.o);
  if (!r.ok()) {
    std::fprintf(stderr, "error: %s\n", r.status().message().c_str());
    return r.status().code() == StatusCode::kInvalidArgument ? 2 : 1;
  }
  auto seconds_of = [&](int n) -> double {
    for (const auto& row : r->rows)
      if (row.receivers == n) return row.seconds;
    return 0;
  };
  const double one = seconds_of(1), eight = seconds_of(8);
  if (a.json) {
    // Ordered: raw_seconds and receivers first, as scripts expect; details after.
    nlohmann::ordered_json receivers = nlohmann::ordered_json::object();
    nlohmann::ordered_json samples = nlohmann::ordered_json::object();
    nlohmann::ordered_json cpu = nlohmann::ordered_json::object();
    for (const auto& row : r->rows) {
      receivers[std::to_string(row.receivers)] = row.seconds;
      samples[std::to_string(row.receivers)] = row.samples;
      cpu[std::to_string(row.receivers)] = row.cpu_seconds;
    }
    nlohmann::ordered_json j;
    j["raw_seconds"] = r->raw_seconds;
    j["receivers"] = receivers;
    j["raw_samples"] = r->raw_samples;
    j["samples"] = samples;
    j["raw_cpu_seconds"] = r->raw_cpu_seconds;
    j["cpu_seconds"] = cpu;
    j["bytes"] = a.o.bytes;
    j["chunk_bytes"] = a.o.chunk_bytes;
    j["repeats"] = a.o.repeats;
    j["chains"] = a.o.chains;
    j["cores"] = std::thread::hardware_concurrency();
    if (one > 0 && eight > 0) j["ratio_8_vs_1"] = eight / one;
    if (one > 0 && r->raw_seconds > 0) j["ratio_1_vs_raw"] = one / r->raw_seconds;
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  const double mb = static_cast<double>(a.o.bytes) / (1 << 20);
  std::printf("weight broadcast of %.0f MiB in %.2f MiB chunks over tcp://127.0.0.1, %d chain(s), median of %d, %u core(s)\n",
              mb, static_cast<double>(a.o.chunk_bytes) / (1 << 20), a.o.chains, a.o.repeats,
              std::thread::hardware_concurrency());
  std::printf("  %-28s %9.3f s  %8.0f MiB/s  %6.2f CPU-s\n", "raw ZeroMQ PUSH/PULL", r->raw_seconds,
              mb / r->raw_seconds, r->raw_cpu_seconds);
  for (const auto& row : r->rows) {
    std::printf("  %-28s %9.3f s  %8.0f MiB/s  %6.2f CPU-s  %5.2fx raw",
                (std::to_string(row.receivers) + " receiver(s), chained").c_str(), row.seconds, mb / row.seconds,
                row.cpu_seconds, row.seconds / r->raw_seconds);
    if (one > 0) std::printf("  %5.2fx 1 receiver", row.seconds / one);
    std::printf("\n");
  }
  if (one > 0 && eight > 0) std::printf("8 receivers / 1 receiver: %.2fx (target <= 1.5x)\n", eight / one);
  if (one > 0) std::printf("1 receiver / raw:         %.2fx (target <= 2x)\n", one / r->raw_seconds);
  return 0;
}

}  // namespace

std::function<int()> add_bench_broadcast_options(CLI::App* cmd) {
  auto b = std::make_shared<BroadcastArgs>();
  cmd->add_option("--bytes", b->o.bytes, "weight blob size (default 256 MiB)")->check(CLI::Range(uint64_t{1}, uint64_t{8} << 30));
  cmd->add_option("--chunk-bytes", b->o.chunk_bytes, "chunk size (default 4 MiB)")->check(CLI::Range(4096u, 256u << 20));
  cmd->add_option("--receivers", b->receivers, "receiver counts, e.g. 1,4,8");
  cmd->add_option("--repeats", b->o.repeats, "timed transfers per count; the median is reported")->check(CLI::Range(1, 100));
  cmd->add_option("--chains", b->o.chains, "chains the receivers are split into (default 1)")->check(CLI::Range(1, 64));
  cmd->add_flag("--json", b->json, "print JSON");
  return [b]() { return run_bench_broadcast(*b); };
}

}  // namespace grpo::apps
