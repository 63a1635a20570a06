#include "actors/service.h"

#include <cstdio>
#include <thread>

#include "actors/roles.h"
#include "actors/run_phases.h"
#include "base/log.h"

namespace grpo::actors {
namespace {

bool is_cluster_prefix(const std::string& p) { return p.rfind("ipc://", 0) == 0 || p.rfind("tcp://", 0) == 0; }

// Waits for a role's failure report or a signal. Returns the exit code.
int serve_until_signal(caf::scoped_actor& supervisor) {
  int code = 0;
  bool running = true;
  while (running) {
    supervisor->receive(
        [&](done_atom, const std::string& role, const std::string& detail) {
          // A generator or verifier scaled away exits 0, so `grpo up` does not restart it.
          if (detail == "retired") {
            GRPO_LOG(kInfo) << role << " retired by the coordinator (scaled down); exiting";
          } else {
            GRPO_LOG(kError) << role << " " << detail;
            code = 1;
          }
          running = false;
        },
        caf::after(std::chrono::milliseconds(200)) >> [&] {
          if (g_interrupts.load() > 0) running = false;
        });
  }
  return code;
}

}  // namespace

const char* service_roles() { return "coordinator, buffer, broadcaster, generator, verifier, learner"; }

int run_service(const Config& config, const std::string& role, int id) {
  int code = 0;
  auto in = load_run_inputs(config, /*write_resolved=*/role == "coordinator", &code);
  if (!in) return code;
  const RunSettings& st = in->settings;
  if (!is_cluster_prefix(st.endpoint_prefix)) {
    std::fprintf(stderr, "error: %s: run.endpoint_prefix: '%s' is in-process only; services need ipc:// or tcp://HOST:PORT\n",
                 config.origin("run.endpoint_prefix").c_str(), st.endpoint_prefix.c_str());
    return 2;
  }
  auto count = [&](const std::string& r) {
    if (r == "generator") return st.generators;
    if (r == "verifier") return st.verifiers;
    if (r == "learner") return st.learners;
    if (r == "broadcaster") return st.broadcasters;
    return 1;
  };
  if (role != "coordinator" && role != "buffer" && role != "broadcaster" && role != "generator" &&
      role != "verifier" && role != "learner") {
    std::fprintf(stderr, "error: --role: unknown role '%s' (roles: %s)\n", role.c_str(), service_roles());
    return 2;
  }
  // Generators and verifiers may be scaled past the config's count while the run is live
  // (grpoctl scale); the other roles have exactly the config's.
  const bool scalable = role == "generator" || role == "verifier";
  if (id < 0 || (scalable ? id >= kMaxScaledWorkers : id >= count(role))) {
    if (scalable)
      std::fprintf(stderr, "error: --id: %s %d is out of range: ids go from 0 to %d\n", role.c_str(), id, kMaxScaledWorkers - 1);
    else
      std::fprintf(stderr, "error: --id: %s %d does not exist: the config has %d\n", role.c_str(), id, count(role));
    return 2;
  }

  // Role-specific state that must exist before the actor system starts.
  std::optional<PolicyStart> policy;
  std::shared_ptr<storage::RolloutStore> store;
  std::shared_ptr<storage::StateStore> state;
  CoordinatorStart start;
  const int64_t step = checkpoint_step(st);
  if (role == "learner") {
    policy = prepare_policy(*in, /*run_sft=*/id == 0, &code);
    if (!policy) return code;
  } else if (role == "buffer") {
    store = open_buffer_store(st, step, &code);
    if (!store) return code;
  } else if (role == "coordinator") {
    auto state_or = storage::StateStore::open(st.run_dir + "/coordinator");
    if (!state_or.ok()) {
      std::fprintf(stderr, "error: coordinator store: %s\n", state_or.status().message().c_str());
      return 1;
    }
    state = std::move(state_or).value();
    start.learner_step = static_cast<uint64_t>(step);
    start.dataset = in->dataset;
    start.restore_pipeline = true;
  }

  caf::actor_system_config cfg;
  caf::actor_system sys{configure_actor_system(cfg)};
  caf::scoped_actor supervisor{sys};
  RoleContext ctx{st, cluster::Transport::create(), supervisor};
  caf::actor actor;
  if (role == "coordinator") actor = spawn_coordinator(sys, ctx, state, start);
  else if (role == "buffer") actor = spawn_buffer(sys, ctx, store);
  else if (role == "broadcaster") actor = spawn_broadcaster(sys, ctx, id);
  else if (role == "generator") actor = spawn_generator(sys, ctx, id);
  else if (role == "verifier") actor = spawn_verifier(sys, ctx, id);
  else actor = spawn_learner(sys, ctx, id, policy->trainer, static_cast<uint64_t>(policy->step), policy->sft_pass);
  GRPO_LOG(kInfo) << "service " << role << " " << id << ": up (" << st.endpoint_prefix << ")";

  int exit_code = 0;
  if (role == "learner") {
    supervisor->send(actor, start_atom::value);
    exit_code = supervise_until_learner_done(supervisor, actor);
  } else {
    exit_code = serve_until_signal(supervisor);
  }
  ctx.stopping->store(true);
  supervisor->send_exit(actor, caf::exit_reason::user_shutdown);
  if (role != "learner" || id != 0 || exit_code != 0) return exit_code;
  return finish_run(*in, *policy->trainer, policy->sft_pass);
}

}  // namespace grpo::actors
