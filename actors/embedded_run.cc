#include "actors/embedded_run.h"

#include <csignal>
#include <cstdio>

#include "actors/roles.h"
#include "actors/run_phases.h"
#include "base/log.h"
#include "runtime/checkpoint.h"

namespace grpo::actors {
namespace {

void on_signal(int) {
  if (g_interrupts.fetch_add(1) >= 1) std::_Exit(130);  // second Ctrl-C: leave now
}

}  // namespace

void install_interrupt_handlers() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
}

int run_embedded(const Config& config) {
  int code = 0;
  auto in = load_run_inputs(config, /*write_resolved=*/true, &code);
  if (!in) return code;
  const RunSettings& st = in->settings;

  // Policy: resume, or cold-start SFT.
  auto policy = prepare_policy(*in, /*run_sft=*/true, &code);
  if (!policy) return code;
  const int64_t step = policy->step;
  // Data-parallel learners 1..L-1 start from the newest checkpoint (written right after SFT on a
  // fresh run), which holds exactly learner 0's state: same weights, reference and optimiser.
  std::vector<std::shared_ptr<runtime::Trainer>> replicas;
  for (int r = 1; r < st.learners; ++r) {
    replicas.push_back(load_replica(*in, r, &code));
    if (!replicas.back()) return code;
  }

  // Durable state: buffer and coordinator stores; the buffer rewinds to the checkpoint's step so
  // groups consumed after it are trained on again (exactly once across the restart).
  auto store = open_buffer_store(st, step, &code);
  if (!store) return code;
  auto state_or = storage::StateStore::open(st.run_dir + "/coordinator");
  if (!state_or.ok()) {
    std::fprintf(stderr, "error: coordinator store: %s\n", state_or.status().message().c_str());
    return 1;
  }
  std::shared_ptr<storage::StateStore> state = std::move(state_or).value();
  CoordinatorStart start;
  start.learner_step = static_cast<uint64_t>(step);
  start.pending_groups = store->stats().pending;
  start.dataset = in->dataset;
  if (st.deterministic) {
    auto max_id = store->max_group_id();
    if (!max_id.ok()) {
      std::fprintf(stderr, "error: buffer store: %s\n", max_id.status().message().c_str());
      return 1;
    }
    start.reissue_from_group_id = *max_id + 1;
  }

  int exit_code = 0;
  {
    caf::actor_system_config cfg;
    caf::actor_system sys{configure_actor_system(cfg)};
    caf::scoped_actor supervisor{sys};
    RoleContext ctx{st, cluster::Transport::create(), supervisor};
    std::vector<caf::actor> actors;
    actors.push_back(spawn_coordinator(sys, ctx, state, start));
    actors.push_back(spawn_buffer(sys, ctx, store));
    actors.push_back(spawn_broadcaster(sys, ctx, 0));
    for (int i = 0; i < st.verifiers; ++i) actors.push_back(spawn_verifier(sys, ctx, i));
    for (int i = 0; i < st.generators; ++i) actors.push_back(spawn_generator(sys, ctx, i));
    caf::actor learner = spawn_learner(sys, ctx, 0, policy->trainer, static_cast<uint64_t>(step), policy->sft_pass);
    actors.push_back(learner);
    for (int r = 1; r < st.learners; ++r)
      actors.push_back(spawn_learner(sys, ctx, r, replicas[static_cast<size_t>(r - 1)], static_cast<uint64_t>(step),
                                     policy->sft_pass));
    GRPO_LOG(kInfo) << "embedded run: 1 coordinator, 1 buffer, 1 broadcaster, " << st.verifiers
                    << " verifier(s), " << st.generators << " generator(s), " << st.learners << " learner(s); GRPO steps "
                    << step << " -> " << st.grpo_steps << ", G=" << st.group_size << ", "
                    << st.groups_per_step << " groups/step, max_staleness " << st.max_staleness;
    supervisor->send(learner, start_atom::value);
    exit_code = supervise_until_learner_done(supervisor, learner);
    ctx.stopping->store(true);
    for (auto& a : actors) supervisor->send_exit(a, caf::exit_reason::user_shutdown);
  }
  if (exit_code == 130) {
    GRPO_LOG(kWarn) << "interrupted; the newest checkpoint is at step " << checkpoint_step(st)
                    << ". Run the same command again to resume.";
    return exit_code;
  }
  if (exit_code != 0) return exit_code;
  return finish_run(*in, *policy->trainer, policy->sft_pass);
}

}  // namespace grpo::actors
