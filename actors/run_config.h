// The schema of a run's configuration (every key, type, range and doc line) and its typed view.
//
// configs/local.toml documents the same keys; `grpo config-keys` prints this schema. RunSettings is
// read once from a validated Config and then copied by value into each actor.
#pragma once

#include <cstdint>
#include <string>

#include "base/config.h"
#include "runtime/model_config.h"
#include "runtime/recipe.h"
#include "runtime/policy.h"
#include "runtime/reward.h"
#include "runtime/rewards.h"
#include "runtime/scoring_service.h"
#include "runtime/trainer.h"

namespace grpo::actors {

const ConfigSchema& run_schema();

struct RunSettings {
  std::string run_dir;
  uint64_t seed = 1;
  int threads = 1;
  std::string log_level;
  std::string endpoint_prefix;
  bool deterministic = false;

  runtime::ModelConfig model;

  int digits = 3;
  std::string train_file;
  std::string eval_file;
  uint64_t train_seed = 11;
  uint64_t eval_seed = 9001;
  int64_t eval_prompts = 256;
  runtime::EvalOptions eval;

  runtime::SftOptions sft;
  runtime::OptimizerOptions sft_optimizer;

  int64_t grpo_steps = 300;
  int32_t group_size = 8;
  int32_t groups_per_step = 8;
  int32_t max_staleness = 1;
  double temperature = 1.0;
  double top_p = 1.0;
  int32_t max_new_tokens = 48;
  runtime::GrpoOptions grpo;
  std::string advantage = "group_norm";  // group_norm | mean_only | rloo
  bool dynamic_sampling = false;  // DAPO: drop equal-reward groups, refill (the buffer does it)
  int64_t max_dropped = 4;        // x groups_per_step per step
  runtime::OptimizerOptions grpo_optimizer;
  runtime::RewardWeights reward;  // the demo reward's weights (reward.accuracy_weight, format_weight)
  // reward.kind and the full reward configuration (weights, language, overlong shaping) used by the
  // verifier; reward_config's accuracy/format weights equal `reward`.
  runtime::RewardKind reward_kind = runtime::RewardKind::kDemo;
  runtime::RewardConfig reward_config;
  // [verifier] threads, timeout_seconds, max_retries, quarantine_after.
  runtime::ScoringOptions scoring;

  int generators = 1;
  int generator_batch_groups = 8;
  std::string generator_device = "cpu";
  int verifiers = 1;
  int learners = 1;
  int broadcasters = 1;
  uint32_t chunk_bytes = 1 << 20;
  bool buffer_sync_writes = false;

  int64_t checkpoint_every = 50;
  int64_t checkpoint_keep = 3;
};

StatusOr<RunSettings> settings_from_config(const Config& config);

}  // namespace grpo::actors
