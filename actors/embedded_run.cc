#include "actors/embedded_run.h"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "actors/roles.h"
#include "base/log.h"
#include "runtime/checkpoint.h"
#include "runtime/policy.h"
#include "runtime/recipe.h"

namespace grpo::actors {
namespace {

std::atomic<int> g_interrupts{0};

void on_signal(int) {
  if (g_interrupts.fetch_add(1) >= 1) std::_Exit(130);  // second Ctrl-C: leave now
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

StatusOr<runtime::EvalResult> evaluate_trainer(const runtime::Trainer& trainer, const RunSettings& st,
                                               const std::vector<runtime::Problem>& held_out) {
  auto policy = runtime::Policy::create(st.model, st.seed);
  GRPO_RETURN_IF_ERROR(policy->load_weights(trainer.export_weights()));
  runtime::EvalOptions eo = st.eval;
  eo.seed = st.eval_seed;
  return runtime::evaluate(*policy, held_out, runtime::TaskTokenizer(), eo);
}

void print_table(const RunSettings& st, double before, const runtime::EvalResult& after, int64_t step) {
  std::printf("\n");
  std::printf("Held-out evaluation: %lld prompts (seed %llu), pass@1 averaged over k=%d samples at T=%.2f, top-p %.2f\n",
              static_cast<long long>(after.prompts), static_cast<unsigned long long>(st.eval_seed),
              st.eval.samples_per_prompt, st.eval.temperature, st.eval.top_p);
  std::printf("+----------------------------------+-----------+\n");
  std::printf("| policy                           | pass@1    |\n");
  std::printf("+----------------------------------+-----------+\n");
  std::printf("| cold-start SFT (GRPO step 0)     | %8.1f%% |\n", 100 * before);
  std::string label = "after GRPO (step " + std::to_string(step) + ")";
  std::printf("| %-32s | %8.1f%% |\n", label.c_str(), 100 * after.pass_at_1);
  std::printf("+----------------------------------+-----------+\n");
  std::printf("| change                           | %+7.1f pt |\n", 100 * (after.pass_at_1 - before));
  std::printf("+----------------------------------+-----------+\n");
  std::printf("after GRPO: cons@%d %.1f%%, format %.1f%%, mean response %.1f tokens\n\n",
              st.eval.samples_per_prompt, 100 * after.cons_at_k, 100 * after.format_rate,
              after.mean_response_tokens);
  std::fflush(stdout);
}

}  // namespace

void install_interrupt_handlers() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
}

int run_embedded(const Config& config) {
  namespace fs = std::filesystem;
  auto t0 = std::chrono::steady_clock::now();
  auto settings_or = settings_from_config(config);
  if (!settings_or.ok()) {
    std::fprintf(stderr, "error: %s\n", settings_or.status().message().c_str());
    return 2;
  }
  const RunSettings st = std::move(settings_or).value();
  log::Level level = log::kInfo;
  log::parse_level(st.log_level, &level);
  log::set_level(level);

  // Datasets are read before anything else starts, so a bad file fails fast.
  std::vector<runtime::Problem> dataset, held_out;
  runtime::AdditionTask task(st.digits);
  if (!st.train_file.empty()) {
    auto d = runtime::AdditionTask::load_jsonl(st.train_file);
    if (!d.ok()) {
      std::fprintf(stderr, "error: %s (task.train_file)\n", d.status().message().c_str());
      return 2;
    }
    dataset = std::move(d).value();
  }
  if (!st.eval_file.empty()) {
    auto d = runtime::AdditionTask::load_jsonl(st.eval_file);
    if (!d.ok()) {
      std::fprintf(stderr, "error: %s (task.eval_file)\n", d.status().message().c_str());
      return 2;
    }
    held_out = std::move(d).value();
  } else {
    held_out = task.problems(st.eval_seed, static_cast<uint64_t>(st.eval_prompts));
  }

  std::error_code ec;
  fs::create_directories(st.run_dir, ec);
  if (ec) {
    std::fprintf(stderr, "error: cannot create run directory %s: %s\n", st.run_dir.c_str(), ec.message().c_str());
    return 2;
  }
  {
    std::ofstream out(st.run_dir + "/config.resolved.toml");
    out << "# resolved configuration of this run (source: " << config.source() << ")\n" << config.dump();
  }
  int threads = runtime::set_compute_threads(st.threads);
  runtime::Trainer::set_deterministic(st.deterministic);
  GRPO_LOG(kInfo) << "run directory " << st.run_dir << ", " << threads << " compute thread(s)";

  // Policy: resume, or cold-start SFT.
  runtime::TaskTokenizer tokenizer;
  runtime::ModelConfig model_cfg = st.model;
  model_cfg.vocab_size = tokenizer.vocab_size();
  RunSettings run = st;
  run.model = model_cfg;
  auto trainer_or = runtime::Trainer::create(model_cfg, st.sft_optimizer, st.seed);
  if (!trainer_or.ok()) {
    std::fprintf(stderr, "error: %s\n", trainer_or.status().message().c_str());
    return 2;
  }
  std::shared_ptr<runtime::Trainer> trainer = std::move(trainer_or).value();
  auto latest = runtime::latest_checkpoint(st.run_dir);
  if (!latest.ok()) {
    std::fprintf(stderr, "error: %s\n", latest.status().message().c_str());
    return 1;
  }
  int64_t step = 0;
  double sft_pass = -1;
  if (latest->has_value()) {
    const auto& info = **latest;
    trainer->reset_optimizer(st.grpo_optimizer);
    Status s = runtime::load_checkpoint(*trainer, info);
    if (!s.ok()) {
      std::fprintf(stderr, "error: %s\n", s.message().c_str());
      return 1;
    }
    step = info.step;
    sft_pass = info.sft_pass_at_1;
    GRPO_LOG(kInfo) << "resuming from the checkpoint at step " << step << " (" << info.path << ")";
  } else {
    GRPO_LOG(kInfo) << "cold-start SFT: " << st.sft.steps << " steps of " << st.sft.batch_size
                    << " synthetic reasoning traces (" << st.sft.traces << " distinct), "
                    << model_cfg.n_layers << " layers x " << model_cfg.dim << " wide";
    auto sft_t0 = std::chrono::steady_clock::now();
    Status s = runtime::run_sft(*trainer, task, tokenizer, st.sft, [&](int64_t i, const runtime::StepStats& x) {
      if ((i + 1) % 25 == 0 || i + 1 == st.sft.steps)
        GRPO_LOG(kInfo) << "sft step " << (i + 1) << "/" << st.sft.steps << " | loss " << x.loss
                        << " | lr " << x.lr << " | " << static_cast<int>(seconds_since(sft_t0)) << " s";
      return g_interrupts.load() == 0;
    });
    if (s.code() == StatusCode::kCancelled) {
      GRPO_LOG(kWarn) << "interrupted during cold-start SFT (" << s.message()
                      << "); nothing is saved before SFT ends, so the next run starts SFT again";
      return 130;
    }
    if (!s.ok()) {
      std::fprintf(stderr, "error: SFT failed: %s\n", s.message().c_str());
      return 1;
    }
    auto before = evaluate_trainer(*trainer, run, held_out);
    if (!before.ok()) {
      std::fprintf(stderr, "error: evaluation failed: %s\n", before.status().message().c_str());
      return 1;
    }
    sft_pass = before->pass_at_1;
    GRPO_LOG(kInfo) << "held-out pass@1 after SFT (where GRPO starts): " << 100 * sft_pass << "%";
    trainer->freeze_reference();
    trainer->reset_optimizer(st.grpo_optimizer);
    runtime::CheckpointInfo info;
    info.step = 0;
    info.sft_pass_at_1 = sft_pass;
    s = runtime::save_checkpoint(*trainer, st.run_dir, info, st.checkpoint_keep);
    if (!s.ok()) {
      std::fprintf(stderr, "error: %s\n", s.message().c_str());
      return 1;
    }
  }

  // Data-parallel learners 1..L-1 start from the newest checkpoint (written right after SFT on a
  // fresh run), which holds exactly learner 0's state: same weights, reference and optimiser.
  std::vector<std::shared_ptr<runtime::Trainer>> replicas;
  if (st.learners > 1) {
    auto newest = runtime::latest_checkpoint(st.run_dir);
    if (!newest.ok() || !newest->has_value()) {
      std::fprintf(stderr, "error: no checkpoint to start the data-parallel learners from\n");
      return 1;
    }
    for (int r = 1; r < st.learners; ++r) {
      auto t = runtime::Trainer::create(model_cfg, st.grpo_optimizer, st.seed);
      Status s = t.ok() ? runtime::load_checkpoint(**t, **newest) : t.status();
      if (!s.ok()) {
        std::fprintf(stderr, "error: learner %d: %s\n", r, s.message().c_str());
        return 1;
      }
      replicas.push_back(std::move(t).value());
    }
  }

  // Durable state: buffer and coordinator stores; the buffer rewinds to the checkpoint's step so
  // groups consumed after it are trained on again (exactly once across the restart).
  auto store_or = storage::RolloutStore::open(st.run_dir + "/buffer", {st.buffer_sync_writes});
  if (!store_or.ok()) {
    std::fprintf(stderr, "error: buffer store: %s\n", store_or.status().message().c_str());
    return 1;
  }
  std::shared_ptr<storage::RolloutStore> store = std::move(store_or).value();
  if (store->cursor() > static_cast<uint64_t>(step)) {
    Status s = store->rewind(static_cast<uint64_t>(step));
    if (!s.ok()) {
      std::fprintf(stderr, "error: buffer rewind to step %lld: %s\n", static_cast<long long>(step), s.message().c_str());
      return 1;
    }
  }
  auto state_or = storage::StateStore::open(st.run_dir + "/coordinator");
  if (!state_or.ok()) {
    std::fprintf(stderr, "error: coordinator store: %s\n", state_or.status().message().c_str());
    return 1;
  }
  std::shared_ptr<storage::StateStore> state = std::move(state_or).value();
  CoordinatorStart start;
  start.learner_step = static_cast<uint64_t>(step);
  start.pending_groups = store->stats().pending;
  start.dataset = dataset;
  if (st.deterministic) {
    auto max_id = store->max_group_id();
    if (!max_id.ok()) {
      std::fprintf(stderr, "error: buffer store: %s\n", max_id.status().message().c_str());
      return 1;
    }
    start.reissue_from_group_id = *max_id + 1;
  }

  int exit_code = 0;
  int64_t final_step = step;
  {
    caf::actor_system_config cfg;
    cfg.set("scheduler.max-threads", 2);
    cfg.set("logger.verbosity", caf::atom("quiet"));
    caf::actor_system sys{cfg};
    caf::scoped_actor supervisor{sys};
    RoleContext ctx{run, cluster::Transport::create(), supervisor};
    std::vector<caf::actor> actors;
    actors.push_back(spawn_coordinator(sys, ctx, state, start));
    actors.push_back(spawn_buffer(sys, ctx, store));
    actors.push_back(spawn_broadcaster(sys, ctx, 0));
    for (int i = 0; i < run.verifiers; ++i) actors.push_back(spawn_verifier(sys, ctx, i));
    for (int i = 0; i < run.generators; ++i) actors.push_back(spawn_generator(sys, ctx, i));
    caf::actor learner = spawn_learner(sys, ctx, 0, trainer, static_cast<uint64_t>(step), sft_pass);
    actors.push_back(learner);
    for (int r = 1; r < run.learners; ++r)
      actors.push_back(spawn_learner(sys, ctx, r, replicas[static_cast<size_t>(r - 1)], static_cast<uint64_t>(step), sft_pass));
    GRPO_LOG(kInfo) << "embedded run: 1 coordinator, 1 buffer, 1 broadcaster, " << run.verifiers
                    << " verifier(s), " << run.generators << " generator(s), " << run.learners << " learner(s); GRPO steps "
                    << step << " -> " << st.grpo_steps << ", G=" << st.group_size << ", "
                    << st.groups_per_step << " groups/step, max_staleness " << st.max_staleness;
    supervisor->send(learner, start_atom::value);
    bool running = true, stop_sent = false;
    while (running) {
      supervisor->receive(
          [&](done_atom, const std::string& role, const std::string& detail) {
            if (role == "learner") {
              running = false;
              if (detail == "interrupted") exit_code = 130;
              else if (detail != "completed") exit_code = 1;
            } else {
              GRPO_LOG(kError) << role << " " << detail;
              exit_code = 1;
              running = false;
            }
          },
          caf::after(std::chrono::milliseconds(200)) >> [&] {
            if (g_interrupts.load() > 0 && !stop_sent) {
              GRPO_LOG(kWarn) << "interrupt: stopping after the learner's current step";
              supervisor->send(learner, stop_atom::value);
              stop_sent = true;
            }
          });
    }
    ctx.stopping->store(true);
    for (auto& a : actors) supervisor->send_exit(a, caf::exit_reason::user_shutdown);
  }
  auto latest_after = runtime::latest_checkpoint(st.run_dir);
  if (latest_after.ok() && latest_after->has_value()) final_step = (*latest_after)->step;
  if (exit_code == 130) {
    GRPO_LOG(kWarn) << "interrupted; the newest checkpoint is at step " << final_step
                    << ". Run the same command again to resume.";
    return exit_code;
  }
  if (exit_code != 0) return exit_code;
  auto after = evaluate_trainer(*trainer, run, held_out);
  if (!after.ok()) {
    std::fprintf(stderr, "error: evaluation failed: %s\n", after.status().message().c_str());
    return 1;
  }
  print_table(run, sft_pass, *after, final_step);
  {
    std::ofstream out(st.run_dir + "/eval.json");
    out << "{\"sft_pass_at_1\": " << sft_pass << ", \"grpo_pass_at_1\": " << after->pass_at_1
        << ", \"grpo_step\": " << final_step << "}\n";
  }
  GRPO_LOG(kInfo) << "done in " << static_cast<int>(seconds_since(t0)) << " s";
  return 0;
}

}  // namespace grpo::actors
