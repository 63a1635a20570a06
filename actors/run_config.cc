#include "actors/run_config.h"

#include "actors/wire.h"
#include "base/log.h"

namespace grpo::actors {

bool nccl_transport_built() {
#if defined(GRPO_HAVE_NCCL)
  return true;
#else
  return false;
#endif
}

const ConfigSchema& run_schema() {
  static const ConfigSchema schema = [] {
    using T = ConfigType;
    ConfigSchema s;
    // [run]
    s.add({"run.dir", T::kString, "\"runs/demo\"", 0, 0, "run directory: checkpoints, buffer, metrics; reused to resume"});
    s.add({"run.seed", T::kInt, "1", 0, 1e15, "seed of model init and sampling"});
    s.add({"run.threads", T::kInt, "1", 1, 256, "LibTorch intra-op threads (1 is fastest for the demo model)"});
    s.add({"run.log_level", T::kString, "\"info\"", 0, 0, "log level", {"debug", "info", "warn", "error"}});
    s.add({"run.deterministic", T::kBool, "false", 0, 0,
           "deterministic LibTorch algorithms: a learner stopped and resumed from a checkpoint ends in the same weights as one run straight"});
    s.add({"run.endpoint_prefix", T::kString, "\"inproc://grpo\"", 0, 0, "ZeroMQ endpoint prefix of the roles' mailboxes"});
    s.add({"run.hosts", T::kString, "\"\"", 0, 0,
           "per-role hosts of a tcp://HOST:PORT run: \"coordinator=10.1.0.1,buffer=10.1.0.2,generator.0=10.1.0.4\" "
           "(ROLE=HOST or ROLE.ID=HOST; ROLE.ID wins; unlisted roles use the prefix's HOST)"});
    // [model]
    s.add({"model.dim", T::kInt, "128", 8, 65536, "hidden size"});
    s.add({"model.layers", T::kInt, "3", 1, 256, "decoder layers"});
    s.add({"model.heads", T::kInt, "4", 1, 256, "attention heads"});
    s.add({"model.kv_heads", T::kInt, "4", 1, 256, "key/value heads (grouped-query attention)"});
    s.add({"model.ffn_hidden", T::kInt, "384", 8, 1 << 20, "SwiGLU hidden size"});
    s.add({"model.max_seq_len", T::kInt, "64", 16, 1 << 20, "longest prompt + response"});
    s.add({"model.rope_theta", T::kDouble, "10000.0", 1, 1e9, "RoPE base"});
    // [task]
    s.add({"task.digits", T::kInt, "3", 1, 9, "operand digits of the addition task"});
    s.add({"task.train_file", T::kPath, "\"\"", 0, 0, "optional JSONL of training problems {question, answer}; synthetic when empty"});
    s.add({"task.eval_file", T::kPath, "\"\"", 0, 0, "optional JSONL of held-out problems; drawn with eval_seed when empty"});
    s.add({"task.train_seed", T::kInt, "11", 0, 1e15, "seed of the GRPO prompt stream"});
    s.add({"task.eval_seed", T::kInt, "9001", 0, 1e15, "seed of the held-out prompts (differs from the training seeds)"});
    s.add({"task.eval_prompts", T::kInt, "256", 1, 1e7, "held-out prompts"});
    s.add({"task.eval_samples", T::kInt, "4", 1, 1024, "k of pass@1 averaged over k samples"});
    s.add({"task.eval_temperature", T::kDouble, "0.6", 0, 10, "R1 protocol: 0.6"});
    s.add({"task.eval_top_p", T::kDouble, "0.95", 0.01, 1, "R1 protocol: 0.95"});
    // [sft]
    s.add({"sft.steps", T::kInt, "200", 0, 1e9, "cold-start SFT steps (0 skips SFT)"});
    s.add({"sft.batch_size", T::kInt, "64", 1, 1e6, "traces per SFT step"});
    s.add({"sft.traces", T::kInt, "4000", 1, 1e9, "synthetic reasoning traces"});
    s.add({"sft.seed", T::kInt, "3", 0, 1e15, "seed of the SFT traces"});
    s.add({"sft.format_error_rate", T::kDouble, "0.0", 0, 1, "fraction of SFT traces that give the answer without <answer> tags"});
    s.add({"sft.trace_error_rate", T::kDouble, "0.0", 0, 1, "fraction of SFT traces with one arithmetic slip (imperfect demonstrations)"});
    s.add({"sft.lr", T::kDouble, "1e-3", 0, 1, "peak learning rate"});
    s.add({"sft.warmup_steps", T::kInt, "20", 0, 1e9, "linear warmup"});
    // [grpo]
    s.add({"grpo.steps", T::kInt, "300", 0, 1e9, "GRPO learner steps"});
    s.add({"grpo.group_size", T::kInt, "8", 2, 4096, "G: samples per prompt"});
    s.add({"grpo.groups_per_step", T::kInt, "8", 1, 1e6, "prompt groups per learner step"});
    s.add({"grpo.max_staleness", T::kInt, "1", 0, 1000, "k: a sample's weights are at most k versions behind the learner"});
    s.add({"grpo.lr", T::kDouble, "3e-5", 0, 1, "learning rate"});
    s.add({"grpo.warmup_steps", T::kInt, "5", 0, 1e9, "linear warmup"});
    s.add({"grpo.lr_schedule", T::kString, "\"constant\"", 0, 0, "after the warmup: constant, or cosine down to grpo.min_lr_ratio x lr at grpo.steps", {"constant", "cosine"}});
    s.add({"grpo.min_lr_ratio", T::kDouble, "0.1", 0, 1, "cosine floor as a fraction of grpo.lr"});
    s.add({"grpo.weight_decay", T::kDouble, "0.0", 0, 1, "AdamW weight decay"});
    s.add({"grpo.max_grad_norm", T::kDouble, "1.0", 0, 1e9, "global gradient-norm clip"});
    s.add({"grpo.clip_eps", T::kDouble, "0.2", 0, 10, "ratio clip epsilon"});
    s.add({"grpo.kl_coef", T::kDouble, "0.02", 0, 100, "beta of the KL to the frozen SFT policy (0: no reference model)"});
    s.add({"grpo.kl_estimator", T::kString, "\"k3\"", 0, 0, "KL estimator", {"k1", "k2", "k3"}});
    s.add({"grpo.clip_high", T::kDouble, "-1", -1, 10, "DAPO clip-higher epsilon (-1: same as grpo.clip_eps)"});
    s.add({"grpo.aggregation", T::kString, "\"seq_mean\"", 0, 0,
           "loss aggregation: seq_mean (GRPO), token_mean (DAPO), seq_sum_norm (Dr. GRPO)",
           {"seq_mean", "token_mean", "seq_sum_norm"}});
    s.add({"grpo.length_norm", T::kDouble, "0", 0, 1e9, "Dr. GRPO's constant length normaliser (0: longest response)"});
    s.add({"grpo.advantage", T::kString, "\"group_norm\"", 0, 0,
           "advantage baseline: group_norm (GRPO), mean_only (Dr. GRPO), rloo", {"group_norm", "mean_only", "rloo"}});
    s.add({"grpo.importance", T::kString, "\"behaviour\"", 0, 0,
           "off-policy correction: behaviour (ratio to the behaviour policy) or decoupled (PPO ratio to the "
           "proximal policy times a behaviour importance weight)", {"behaviour", "decoupled"}});
    s.add({"grpo.is_cap", T::kDouble, "0", 0, 1e6, "decoupled: truncation cap of the importance weight (0: none)"});
    s.add({"grpo.dynamic_sampling", T::kBool, "false", 0, 0,
           "DAPO dynamic sampling: groups whose rewards are all equal (no learning signal) are dropped and the batch is refilled with fresh groups"});
    s.add({"grpo.max_dropped", T::kInt, "4", 0, 1000,
           "dynamic sampling: at most this many x groups_per_step groups dropped per learner step; past it, equal-reward groups fill the batch"});
    s.add({"grpo.temperature", T::kDouble, "1.0", 0.01, 10, "sampling temperature of rollouts"});
    s.add({"grpo.top_p", T::kDouble, "1.0", 0.01, 1, "nucleus sampling of rollouts"});
    s.add({"grpo.max_new_tokens", T::kInt, "48", 1, 1 << 20, "response length cap"});
    // [reward]
    s.add({"reward.accuracy_weight", T::kDouble, "1.0", -100, 100, "weight of the accuracy term"});
    s.add({"reward.format_weight", T::kDouble, "0.1", -100, 100, "weight of the R1 format term"});
    s.add({"reward.kind", T::kString, "\"demo\"", 0, 0,
           "reward of the task: demo (the addition task: integer in <answer>, strict template), math "
           "(gold: an answer or a \\boxed{} solution), gsm8k (gold: '#### N' or a number), countdown "
           "(gold: JSON {\"target\": N, \"nums\": [..]}), code (gold: JSON {\"prompt\", \"test\", "
           "\"entry_point\"}, run in the bubblewrap sandbox)",
           {"demo", "math", "gsm8k", "countdown", "code"}});
    s.add({"reward.language", T::kString, "\"en\"", 0, 0,
           "ISO 639-1 code of the language the reasoning should be written in (language term)"});
    s.add({"reward.language_weight", T::kDouble, "0.0", -100, 100,
           "weight of the language-consistency term (share of reasoning letters in the target script); 0 turns it off"});
    s.add({"reward.length_weight", T::kDouble, "1.0", -100, 100,
           "weight of the DAPO overlong term (in [-1, 0]; 0 unless reward.max_length > 0)"});
    s.add({"reward.max_length", T::kInt, "0", 0, 1 << 24,
           "Lmax in response tokens of the overlong term; 0 turns it off"});
    s.add({"reward.cache_length", T::kInt, "0", 0, 1 << 24,
           "Lcache: responses longer than max_length - cache_length lose up to 1 linearly (0: hard cut at max_length)"});
    // [generator] [verifier] [learner] [broadcaster] [buffer]
    s.add({"generator.replicas", T::kInt, "1", 1, 1024, "generator actors"});
    s.add({"generator.batch_groups", T::kInt, "8", 1, 4096, "prompt groups leased and decoded together"});
    s.add({"generator.device", T::kString, "\"cpu\"", 0, 0, "device the generators decode on: cpu, cuda or cuda:N"});
    s.add({"verifier.replicas", T::kInt, "1", 1, 1024, "verifier actors"});
    s.add({"verifier.threads", T::kInt, "1", 1, 64,
           "scoring threads (and code sandbox slots) of each verifier: samples scored at once"});
    s.add({"verifier.timeout_seconds", T::kDouble, "10.0", 0.01, 3600,
           "wall-clock deadline of scoring one sample; past it the sample scores 0 (timeout)"});
    s.add({"verifier.max_retries", T::kInt, "2", 0, 10,
           "re-runs of a sample whose scorer failed for infrastructure reasons (sandbox); wrong answers are never retried"});
    s.add({"verifier.quarantine_after", T::kInt, "2", 1, 100,
           "timeouts or crashes of one sample (response + gold) after which it scores 0 without running"});
    s.add({"learner.replicas", T::kInt, "1", 1, 64,
           "data-parallel learners: each trains on its share of every batch and gradients are summed by a ring all-reduce over ZeroMQ"});
    s.add({"learner.micro_batch_tokens", T::kInt, "0", 0, 1e12,
           "padded tokens per forward/backward pass (gradient accumulation over a step's micro-batches); 0: a whole batch at once"});
    s.add({"broadcaster.replicas", T::kInt, "1", 1, 1, "broadcaster actors"});
    s.add({"broadcaster.chunk_bytes", T::kInt, "1048576", 1024, 268435456, "weight chunk size"});
    s.add({"broadcaster.transport", T::kString, "\"zmq\"", 0, 0,
           "how weight bytes reach the generators: zmq (the checksummed ZeroMQ chain) or nccl (NCCL broadcast "
           "between GPUs, checked against the same checksums, the chain as fallback; builds with CUDA and NCCL "
           "only; the roles do not use it yet, so weights still take the chain)",
           {"zmq", "nccl"}});
    s.add({"buffer.sync_writes", T::kBool, "false", 0, 0, "fsync every buffer write batch"});
    s.add({"buffer.shards", T::kInt, "1", 1, 1024,
           "RocksDB stores of the rollout buffer (run_dir/buffer/shard-K), groups routed by id % shards; fixed when the buffer is created"});
    // [coordinator]
    s.add({"coordinator.member_timeout_seconds", T::kDouble, "20.0", 1, 86400,
           "a member silent this long is lost; a lost generator's leases go to the others"});
    s.add({"coordinator.lease_timeout_seconds", T::kDouble, "600.0", 1, 864000,
           "a lease grant not completed within this is re-issued to another generator"});
    s.add({"coordinator.store_timeout_seconds", T::kDouble, "120.0", 1, 864000,
           "a lease its generator finished whose scored group the buffer has not confirmed stored within this is re-issued"});
    // [checkpoint]
    s.add({"checkpoint.every", T::kInt, "50", 1, 1e9, "learner steps between checkpoints"});
    s.add({"checkpoint.keep", T::kInt, "3", 1, 1000, "checkpoints kept"});
    // [security]
    s.add({"security.keys_dir", T::kPath, "\"\"", 0, 0,
           "folder written by `grpoctl keygen`: CURVE authentication and encryption of every ipc:// and tcp:// "
           "socket of the run with KEYS/cluster.key, admin sockets admit only KEYS/admin.pub; empty: plain sockets"});
    return s;
  }();
  return schema;
}

StatusOr<RunSettings> settings_from_config(const Config& c) {
  RunSettings r;
  r.run_dir = c.get_string("run.dir");
  if (r.run_dir.empty()) return invalid_argument(c.origin("run.dir") + ": run.dir: must not be empty");
  r.seed = static_cast<uint64_t>(c.get_int("run.seed"));
  r.threads = static_cast<int>(c.get_int("run.threads"));
  r.log_level = c.get_string("run.log_level");
  r.endpoint_prefix = c.get_string("run.endpoint_prefix");
  r.hosts = c.get_string("run.hosts");
  {
    // Every process reads its settings here before it opens a socket: the table endpoint_of uses.
    auto hosts = parse_role_hosts(r.hosts);
    if (!hosts.ok()) return invalid_argument(c.origin("run.hosts") + ": run.hosts: " + hosts.status().message());
    if (!hosts->empty() && r.endpoint_prefix.rfind("tcp://", 0) != 0)
      return invalid_argument(c.origin("run.hosts") + ": run.hosts: needs run.endpoint_prefix = \"tcp://HOST:PORT\" (it is '" +
                              r.endpoint_prefix + "')");
    set_role_hosts(std::move(hosts).value());
  }
  r.deterministic = c.get_bool("run.deterministic");

  r.model.dim = c.get_int("model.dim");
  r.model.n_layers = c.get_int("model.layers");
  r.model.n_heads = c.get_int("model.heads");
  r.model.n_kv_heads = c.get_int("model.kv_heads");
  r.model.ffn_hidden = c.get_int("model.ffn_hidden");
  r.model.max_seq_len = c.get_int("model.max_seq_len");
  r.model.rope_theta = c.get_double("model.rope_theta");
  if (r.model.dim % r.model.n_heads != 0 || (r.model.dim / r.model.n_heads) % 2 != 0)
    return invalid_argument(c.origin("model.heads") + ": model.heads: must divide model.dim into an even head size");
  if (r.model.n_heads % r.model.n_kv_heads != 0)
    return invalid_argument(c.origin("model.kv_heads") + ": model.kv_heads: must divide model.heads");

  r.digits = static_cast<int>(c.get_int("task.digits"));
  r.train_file = c.get_string("task.train_file");
  r.eval_file = c.get_string("task.eval_file");
  r.train_seed = static_cast<uint64_t>(c.get_int("task.train_seed"));
  r.eval_seed = static_cast<uint64_t>(c.get_int("task.eval_seed"));
  r.eval_prompts = c.get_int("task.eval_prompts");
  r.eval.samples_per_prompt = static_cast<int32_t>(c.get_int("task.eval_samples"));
  r.eval.temperature = c.get_double("task.eval_temperature");
  r.eval.top_p = c.get_double("task.eval_top_p");

  r.sft.steps = c.get_int("sft.steps");
  r.sft.batch_size = c.get_int("sft.batch_size");
  r.sft.traces = c.get_int("sft.traces");
  r.sft.seed = static_cast<uint64_t>(c.get_int("sft.seed"));
  r.sft.trace_error_rate = c.get_double("sft.trace_error_rate");
  r.sft.format_error_rate = c.get_double("sft.format_error_rate");
  r.sft_optimizer.lr = c.get_double("sft.lr");
  r.sft_optimizer.warmup_steps = c.get_int("sft.warmup_steps");
  r.sft_optimizer.schedule = "cosine";
  r.sft_optimizer.total_steps = r.sft.steps;
  if (r.sft.seed == r.eval_seed || r.train_seed == r.eval_seed)
    return invalid_argument(c.origin("task.eval_seed") + ": task.eval_seed: must differ from sft.seed and task.train_seed");

  r.grpo_steps = c.get_int("grpo.steps");
  r.group_size = static_cast<int32_t>(c.get_int("grpo.group_size"));
  r.groups_per_step = static_cast<int32_t>(c.get_int("grpo.groups_per_step"));
  r.max_staleness = static_cast<int32_t>(c.get_int("grpo.max_staleness"));
  r.grpo_optimizer.lr = c.get_double("grpo.lr");
  r.grpo_optimizer.warmup_steps = c.get_int("grpo.warmup_steps");
  r.grpo_optimizer.weight_decay = c.get_double("grpo.weight_decay");
  r.grpo_optimizer.schedule = c.get_string("grpo.lr_schedule");
  r.grpo_optimizer.min_lr_ratio = c.get_double("grpo.min_lr_ratio");
  r.grpo_optimizer.total_steps = r.grpo_steps;
  r.dynamic_sampling = c.get_bool("grpo.dynamic_sampling");
  r.max_dropped = c.get_int("grpo.max_dropped");
  r.grpo_optimizer.max_grad_norm = c.get_double("grpo.max_grad_norm");
  r.grpo.clip_eps = c.get_double("grpo.clip_eps");
  r.grpo.kl_coef = c.get_double("grpo.kl_coef");
  r.grpo.kl_estimator = c.get_string("grpo.kl_estimator");
  r.grpo.clip_high = c.get_double("grpo.clip_high");
  r.grpo.aggregation = c.get_string("grpo.aggregation");
  r.grpo.length_norm = c.get_double("grpo.length_norm");
  r.grpo.importance = c.get_string("grpo.importance");
  r.grpo.is_cap = c.get_double("grpo.is_cap");
  r.advantage = c.get_string("grpo.advantage");
  r.temperature = c.get_double("grpo.temperature");
  r.grpo.temperature = r.temperature;
  r.top_p = c.get_double("grpo.top_p");
  r.max_new_tokens = static_cast<int32_t>(c.get_int("grpo.max_new_tokens"));
  r.eval.max_new_tokens = r.max_new_tokens;
  if (r.max_new_tokens + 2 * r.digits + 3 > r.model.max_seq_len)
    return invalid_argument(c.origin("grpo.max_new_tokens") +
                            ": grpo.max_new_tokens: prompt plus response exceed model.max_seq_len");
  r.reward.accuracy = c.get_double("reward.accuracy_weight");
  r.reward.format = c.get_double("reward.format_weight");
  {
    auto kind = runtime::parse_reward_kind(c.get_string("reward.kind"));
    if (!kind.ok()) return invalid_argument(c.origin("reward.kind") + ": reward.kind: " + kind.status().message());
    r.reward_kind = *kind;
  }
  r.reward_config.accuracy_weight = r.reward.accuracy;
  r.reward_config.format_weight = r.reward.format;
  r.reward_config.language.target = c.get_string("reward.language");
  if (!runtime::is_supported_language(r.reward_config.language.target))
    return invalid_argument(c.origin("reward.language") + ": reward.language: unsupported language '" +
                            r.reward_config.language.target + "' (supported: " + runtime::supported_languages() + ")");
  r.reward_config.language_weight = c.get_double("reward.language_weight");
  r.reward_config.length_weight = c.get_double("reward.length_weight");
  r.reward_config.overlong.max_length = c.get_int("reward.max_length");
  r.reward_config.overlong.cache_length = c.get_int("reward.cache_length");
  if (r.reward_config.overlong.max_length > 0 &&
      r.reward_config.overlong.cache_length > r.reward_config.overlong.max_length)
    return invalid_argument(c.origin("reward.cache_length") + ": reward.cache_length: must not exceed reward.max_length");

  r.generators = static_cast<int>(c.get_int("generator.replicas"));
  r.generator_batch_groups = static_cast<int>(c.get_int("generator.batch_groups"));
  r.generator_device = c.get_string("generator.device");
  if (Status st = runtime::check_device(r.generator_device); !st.ok())
    return invalid_argument(c.origin("generator.device") + ": generator.device: " + st.message());
  r.verifiers = static_cast<int>(c.get_int("verifier.replicas"));
  r.scoring.threads = static_cast<int>(c.get_int("verifier.threads"));
  r.scoring.timeout_seconds = c.get_double("verifier.timeout_seconds");
  r.scoring.max_retries = static_cast<int>(c.get_int("verifier.max_retries"));
  r.scoring.quarantine_after = static_cast<int>(c.get_int("verifier.quarantine_after"));
  r.learners = static_cast<int>(c.get_int("learner.replicas"));
  r.sft_optimizer.micro_batch_tokens = c.get_int("learner.micro_batch_tokens");
  r.grpo_optimizer.micro_batch_tokens = r.sft_optimizer.micro_batch_tokens;
  r.broadcasters = static_cast<int>(c.get_int("broadcaster.replicas"));
  r.chunk_bytes = static_cast<uint32_t>(c.get_int("broadcaster.chunk_bytes"));
  r.broadcast_transport = c.get_string("broadcaster.transport");
  if (r.broadcast_transport == "nccl" && !nccl_transport_built())
    return invalid_argument(c.origin("broadcaster.transport") +
                            ": broadcaster.transport: \"nccl\" needs a grpo built with CUDA and NCCL, and this one "
                            "was built without them; use \"zmq\"");
  if (r.broadcast_transport == "nccl")
    GRPO_LOG(kWarn) << c.origin("broadcaster.transport") << ": broadcaster.transport = \"nccl\": the NCCL weight "
                    << "channel is built but the roles do not use it yet; weights take the ZeroMQ chain";
  r.buffer_sync_writes = c.get_bool("buffer.sync_writes");
  r.buffer_shards = static_cast<int>(c.get_int("buffer.shards"));
  r.checkpoint_every = c.get_int("checkpoint.every");
  r.checkpoint_keep = c.get_int("checkpoint.keep");
  r.member_timeout_seconds = c.get_double("coordinator.member_timeout_seconds");
  r.lease_timeout_seconds = c.get_double("coordinator.lease_timeout_seconds");
  r.store_timeout_seconds = c.get_double("coordinator.store_timeout_seconds");
  r.keys_dir = c.get_string("security.keys_dir");
  if (!r.keys_dir.empty()) {
    // Read here, not when the first socket opens: a missing or malformed key is a config error.
    const std::string where = c.origin("security.keys_dir") + ": security.keys_dir: ";
    const std::string cluster_file = r.keys_dir + "/cluster.key";
    auto pair = cluster::read_key_file(cluster_file);
    if (!pair.ok())
      return invalid_argument(where + pair.status().message() + " (the cluster keypair; `grpoctl keygen --out " +
                              r.keys_dir + "` makes the keys)");
    r.cluster_keys = std::move(pair).value();
    const std::string admin_file = r.keys_dir + "/admin.pub";
    auto admin = cluster::read_public_key_file(admin_file);
    if (!admin.ok())
      return invalid_argument(where + admin.status().message() + " (the admin public key; `grpoctl keygen --out " +
                              r.keys_dir + "` makes the keys)");
    r.admin_public_key = std::move(admin).value();
    // With the same key an admin would pass as a cluster member and every member as an admin.
    if (r.admin_public_key == r.cluster_keys.public_key)
      return invalid_argument(where + "key file " + admin_file +
                              " holds the cluster's own public key; the admin keypair must be another one (grpoctl keygen)");
  }
  return r;
}

cluster::SecurityOptions RunSettings::member_security() const {
  const bool in_process = endpoint_prefix.rfind("inproc://", 0) == 0;
  if (!secured() || in_process) return {};
  return cluster::cluster_security(cluster_keys);
}

}  // namespace grpo::actors
