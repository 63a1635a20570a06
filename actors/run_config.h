// The schema of a run's configuration (every key, type, range and doc line) and its typed view.
//
// configs/local.toml documents the same keys; `grpo config-keys` prints this schema. RunSettings is
// read once from a validated Config and then copied by value into each actor.
#pragma once

#include <cstdint>
#include <string>

#include "base/config.h"
#include "cluster/security.h"
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
  std::string hosts;  // run.hosts: "ROLE=HOST,ROLE.ID=HOST,..." (applied by endpoint_of, actors/wire.h)
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
  // broadcaster.transport: "zmq" (the chain of cluster/weight_relay.h) or "nccl" (only where
  // nccl_transport_built(); cluster/nccl_weight_channel.h).
  std::string broadcast_transport = "zmq";
  bool buffer_sync_writes = false;
  int buffer_shards = 1;  // RocksDB stores of the buffer; fixed when run_dir/buffer is created

  int64_t checkpoint_every = 50;
  int64_t checkpoint_keep = 3;

  double member_timeout_seconds = 20.0;  // [coordinator]
  double lease_timeout_seconds = 600.0;
  double store_timeout_seconds = 120.0;  // finished lease -> scored group confirmed in the buffer

  // [security] keys_dir: the folder `grpoctl keygen` wrote; empty = the run's sockets are plain.
  // When set, settings_from_config has read and checked both files, so a bad key fails the config
  // before any socket opens.
  std::string keys_dir;
  cluster::CurveKeyPair cluster_keys;  // KEYS/cluster.key: every member's CURVE keypair
  std::string admin_public_key;        // KEYS/admin.pub: the only client an admin socket admits
  bool secured() const { return !keys_dir.empty(); }
  // The SecurityOptions of every member socket (mailboxes, outboxes, the learners' ring):
  // cluster_security(cluster_keys) when keys_dir is set and the prefix is ipc:// or tcp://;
  // disabled otherwise (ZeroMQ never secures inproc://, so embedded mode runs unencrypted).
  cluster::SecurityOptions member_security() const;
};

StatusOr<RunSettings> settings_from_config(const Config& config);

// True in builds with CUDA and NCCL (GRPO_HAVE_NCCL), where broadcaster.transport = "nccl" is
// accepted; elsewhere that value is a config error.
bool nccl_transport_built();

}  // namespace grpo::actors
