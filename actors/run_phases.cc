#include "actors/run_phases.h"

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/log.h"
#include "runtime/checkpoint.h"
#include "runtime/policy.h"
#include "runtime/recipe.h"
#include "runtime/tokenizer.h"

namespace grpo::actors {

std::atomic<int> g_interrupts{0};

namespace {

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
  // 1.96 standard errors: the 95% interval of the figure over the draw of held-out prompts.
  std::printf("after GRPO: pass@1 %.1f%% +- %.1f pt (95%% interval over the %lld prompts), cons@%d %.1f%%, "
              "format %.1f%%, mean response %.1f tokens\n\n",
              100 * after.pass_at_1, 196 * after.pass_at_1_stderr, static_cast<long long>(after.prompts),
              st.eval.samples_per_prompt, 100 * after.cons_at_k, 100 * after.format_rate,
              after.mean_response_tokens);
  std::fflush(stdout);
}

}  // namespace

std::optional<RunInputs> load_run_inputs(const Config& config, bool write_resolved, int* exit_code) {
  namespace fs = std::filesystem;
  auto settings_or = settings_from_config(config);
  if (!settings_or.ok()) {
    std::fprintf(stderr, "error: %s\n", settings_or.status().message().c_str());
    *exit_code = 2;
    return std::nullopt;
  }
  RunInputs in;
  in.settings = std::move(settings_or).value();
  RunSettings& st = in.settings;
  log::Level level = log::kInfo;
  log::parse_level(st.log_level, &level);
  log::set_level(level);

  // Datasets are read before anything else starts, so a bad file fails fast.
  runtime::AdditionTask task(st.digits);
  if (!st.train_file.empty()) {
    auto d = runtime::AdditionTask::load_jsonl(st.train_file);
    if (!d.ok()) {
      std::fprintf(stderr, "error: %s (task.train_file)\n", d.status().message().c_str());
      *exit_code = 2;
      return std::nullopt;
    }
    in.dataset = std::move(d).value();
  }
  if (!st.eval_file.empty()) {
    auto d = runtime::AdditionTask::load_jsonl(st.eval_file);
    if (!d.ok()) {
      std::fprintf(stderr, "error: %s (task.eval_file)\n", d.status().message().c_str());
      *exit_code = 2;
      return std::nullopt;
    }
    in.held_out = std::move(d).value();
  } else {
    in.held_out = task.problems(st.eval_seed, static_cast<uint64_t>(st.eval_prompts));
  }

  std::error_code ec;
  fs::create_directories(st.run_dir, ec);
  if (ec) {
    std::fprintf(stderr, "error: cannot create run directory %s: %s\n", st.run_dir.c_str(), ec.message().c_str());
    *exit_code = 2;
    return std::nullopt;
  }
  if (write_resolved) {
    std::ofstream out(st.run_dir + "/config.resolved.toml");
    out << "# resolved configuration of this run (source: " << config.source() << ")\n" << config.dump();
  }
  int threads = runtime::set_compute_threads(st.threads);
  runtime::Trainer::set_deterministic(st.deterministic);
  GRPO_LOG(kInfo) << "run directory " << st.run_dir << ", " << threads << " compute thread(s)";
  st.model.vocab_size = runtime::TaskTokenizer().vocab_size();
  return in;
}

std::optional<PolicyStart> prepare_policy(const RunInputs& in, bool run_sft, int* exit_code) {
  const RunSettings& st = in.settings;
  auto trainer_or = runtime::Trainer::create(st.model, st.sft_optimizer, st.seed);
  if (!trainer_or.ok()) {
    std::fprintf(stderr, "error: %s\n", trainer_or.status().message().c_str());
    *exit_code = 2;
    return std::nullopt;
  }
  PolicyStart out;
  out.trainer = std::move(trainer_or).value();
  auto latest = runtime::latest_checkpoint(st.run_dir);
  if (!run_sft) {  // wait for learner 0 to write the starting checkpoint
    while (latest.ok() && !latest->has_value() && g_interrupts.load() == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      latest = runtime::latest_checkpoint(st.run_dir);
    }
    if (g_interrupts.load() > 0) {
      *exit_code = 130;
      return std::nullopt;
    }
  }
  if (!latest.ok()) {
    std::fprintf(stderr, "error: %s\n", latest.status().message().c_str());
    *exit_code = 1;
    return std::nullopt;
  }
  if (latest->has_value()) {
    const auto& info = **latest;
    out.trainer->reset_optimizer(st.grpo_optimizer);
    Status s = runtime::load_checkpoint(*out.trainer, info);
    if (!s.ok()) {
      std::fprintf(stderr, "error: %s\n", s.message().c_str());
      *exit_code = 1;
      return std::nullopt;
    }
    out.step = info.step;
    out.sft_pass = info.sft_pass_at_1;
    GRPO_LOG(kInfo) << "resuming from the checkpoint at step " << out.step << " (" << info.path << ")";
    return out;
  }
  runtime::TaskTokenizer tokenizer;
  runtime::AdditionTask task(st.digits);
  GRPO_LOG(kInfo) << "cold-start SFT: " << st.sft.steps << " steps of " << st.sft.batch_size
                  << " synthetic reasoning traces (" << st.sft.traces << " distinct), "
                  << st.model.n_layers << " layers x " << st.model.dim << " wide";
  auto sft_t0 = std::chrono::steady_clock::now();
  Status s = runtime::run_sft(*out.trainer, task, tokenizer, st.sft, [&](int64_t i, const runtime::StepStats& x) {
    if ((i + 1) % 25 == 0 || i + 1 == st.sft.steps)
      GRPO_LOG(kInfo) << "sft step " << (i + 1) << "/" << st.sft.steps << " | loss " << x.loss
                      << " | lr " << x.lr << " | " << static_cast<int>(seconds_since(sft_t0)) << " s";
    return g_interrupts.load() == 0;
  });
  if (s.code() == StatusCode::kCancelled) {
    GRPO_LOG(kWarn) << "interrupted during cold-start SFT (" << s.message()
                    << "); nothing is saved before SFT ends, so the next run starts SFT again";
    *exit_code = 130;
    return std::nullopt;
  }
  if (!s.ok()) {
    std::fprintf(stderr, "error: SFT failed: %s\n", s.message().c_str());
    *exit_code = 1;
    return std::nullopt;
  }
  auto before = evaluate_trainer(*out.trainer, st, in.held_out);
  if (!before.ok()) {
    std::fprintf(stderr, "error: evaluation failed: %s\n", before.status().message().c_str());
    *exit_code = 1;
    return std::nullopt;
  }
  out.sft_pass = before->pass_at_1;
  GRPO_LOG(kInfo) << "held-out pass@1 after SFT (where GRPO starts): " << 100 * out.sft_pass << "%";
  out.trainer->freeze_reference();
  out.trainer->reset_optimizer(st.grpo_optimizer);
  runtime::CheckpointInfo info;
  info.step = 0;
  info.sft_pass_at_1 = out.sft_pass;
  s = runtime::save_checkpoint(*out.trainer, st.run_dir, info, st.checkpoint_keep);
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.message().c_str());
    *exit_code = 1;
    return std::nullopt;
  }
  return out;
}

std::shared_ptr<runtime::Trainer> load_replica(const RunInputs& in, int rank, int* exit_code) {
  const RunSettings& st = in.settings;
  auto newest = runtime::latest_checkpoint(st.run_dir);
  if (!newest.ok() || !newest->has_value()) {
    std::fprintf(stderr, "error: no checkpoint to start data-parallel learner %d from\n", rank);
    *exit_code = 1;
    return nullptr;
  }
  auto t = runtime::Trainer::create(st.model, st.grpo_optimizer, st.seed);
  Status s = t.ok() ? runtime::load_checkpoint(**t, **newest) : t.status();
  if (!s.ok()) {
    std::fprintf(stderr, "error: learner %d: %s\n", rank, s.message().c_str());
    *exit_code = 1;
    return nullptr;
  }
  return std::move(t).value();
}

int64_t checkpoint_step(const RunSettings& st) {
  auto latest = runtime::latest_checkpoint(st.run_dir);
  return latest.ok() && latest->has_value() ? (*latest)->step : 0;
}

std::shared_ptr<storage::RolloutStore> open_buffer_store(const RunSettings& st, int64_t step, int* exit_code) {
  storage::RolloutStoreOptions opts;
  opts.sync_writes = st.buffer_sync_writes;
  opts.shards = st.buffer_shards;
  auto store_or = storage::RolloutStore::open(st.run_dir + "/buffer", opts);
  if (!store_or.ok()) {
    std::fprintf(stderr, "error: buffer store: %s\n", store_or.status().message().c_str());
    *exit_code = 1;
    return nullptr;
  }
  std::shared_ptr<storage::RolloutStore> store = std::move(store_or).value();
  if (store->cursor() > static_cast<uint64_t>(step)) {
    // The batches of the later steps stay logged and are served again, unchanged, when the resumed
    // learner asks for them (storage/rollout_store.h).
    GRPO_LOG(kInfo) << "buffer: rewinding from step " << store->cursor() << " to the checkpoint's step " << step
                    << "; the batches of the steps after it will be served again as they were";
    Status s = store->rewind(static_cast<uint64_t>(step));
    if (!s.ok()) {
      std::fprintf(stderr, "error: buffer rewind to step %lld: %s\n", static_cast<long long>(step), s.message().c_str());
      *exit_code = 1;
      return nullptr;
    }
  }
  return store;
}

caf::actor_system_config& configure_actor_system(caf::actor_system_config& cfg) {
  cfg.set("scheduler.max-threads", 2);
  cfg.set("logger.verbosity", caf::atom("quiet"));
  return cfg;
}

int supervise_until_learner_done(caf::scoped_actor& supervisor, const caf::actor& learner) {
  int exit_code = 0;
  bool running = true, stop_sent = false;
  while (running) {
    supervisor->receive(
        [&](done_atom, const std::string& role, const std::string& detail) {
          if (role == "learner") {
            running = false;
            if (detail == "interrupted") exit_code = 130;
            else if (detail != "completed") exit_code = 1;
          } else if (detail == "retired") {
            GRPO_LOG(kInfo) << role << " retired (scaled down)";
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
  return exit_code;
}

int finish_run(const RunInputs& in, const runtime::Trainer& trainer, double sft_pass) {
  const RunSettings& st = in.settings;
  auto after = evaluate_trainer(trainer, st, in.held_out);
  if (!after.ok()) {
    std::fprintf(stderr, "error: evaluation failed: %s\n", after.status().message().c_str());
    return 1;
  }
  const int64_t final_step = checkpoint_step(st);
  print_table(st, sft_pass, *after, final_step);
  {
    std::ofstream out(st.run_dir + "/eval.json");
    out << "{\"sft_pass_at_1\": " << sft_pass << ", \"grpo_pass_at_1\": " << after->pass_at_1
        << ", \"grpo_pass_at_1_stderr\": " << after->pass_at_1_stderr << ", \"eval_prompts\": " << after->prompts
        << ", \"grpo_step\": " << final_step << "}\n";
  }
  GRPO_LOG(kInfo) << "done in " << static_cast<int>(seconds_since(in.started)) << " s";
  return 0;
}

}  // namespace grpo::actors
