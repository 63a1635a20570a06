#include "actors/run_config.h"

#include <gtest/gtest.h>

namespace grpo::actors {
namespace {

StatusOr<RunSettings> settings(const std::vector<std::string>& overrides) {
  auto cfg = Config::parse(run_schema(), "", "t.toml", overrides);
  if (!cfg.ok()) return cfg.status();
  return settings_from_config(*cfg);
}

TEST(RunConfigTest, DefaultsAreConsistent) {
  auto s = settings({});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->generators, 1);
  EXPECT_EQ(s->grpo.temperature, s->temperature);
  EXPECT_NE(s->eval_seed, s->train_seed);
}

TEST(RunConfigTest, ReplicasComeFromOverrides) {
  auto s = settings({"generator.replicas=3", "verifier.replicas=2"});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->generators, 3);
  EXPECT_EQ(s->verifiers, 2);
}

TEST(RunConfigTest, CrossKeyChecksNameTheKey) {
  auto heads = settings({"model.dim=100", "model.heads=3"});
  ASSERT_FALSE(heads.ok());
  EXPECT_EQ(heads.status().message(),
            "command line: model.heads: must divide model.dim into an even head size");
  auto seeds = settings({"task.eval_seed=11"});
  ASSERT_FALSE(seeds.ok());
  EXPECT_NE(seeds.status().message().find("task.eval_seed: must differ"), std::string::npos);
  auto length = settings({"grpo.max_new_tokens=200"});
  ASSERT_FALSE(length.ok());
  EXPECT_NE(length.status().message().find("grpo.max_new_tokens"), std::string::npos);
  EXPECT_FALSE(settings({"learner.replicas=65"}).ok());
  auto dp = settings({"learner.replicas=2", "learner.micro_batch_tokens=512", "grpo.lr_schedule=cosine"});
  ASSERT_TRUE(dp.ok()) << dp.status();
  EXPECT_EQ(dp->learners, 2);
  EXPECT_EQ(dp->grpo_optimizer.micro_batch_tokens, 512);
  EXPECT_EQ(dp->grpo_optimizer.schedule, "cosine");
  EXPECT_EQ(dp->grpo_optimizer.total_steps, dp->grpo_steps);
  EXPECT_FALSE(settings({"grpo.lr_schedule=linear"}).ok());
  auto device = settings({"generator.device=tpu"});
  ASSERT_FALSE(device.ok());
  EXPECT_NE(device.status().message().find("command line: generator.device: device 'tpu'"), std::string::npos)
      << device.status();
  EXPECT_TRUE(settings({"generator.device=cpu"}).ok());
}

TEST(RunConfigTest, RewardAndVerifierDefaultsKeepTheDemoReward) {
  auto s = settings({});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->reward_kind, runtime::RewardKind::kDemo);
  EXPECT_EQ(s->reward_config.accuracy_weight, s->reward.accuracy);
  EXPECT_EQ(s->reward_config.format_weight, s->reward.format);
  EXPECT_EQ(s->reward_config.language.target, "en");
  EXPECT_EQ(s->reward_config.language_weight, 0.0);
  EXPECT_EQ(s->reward_config.length_weight, 1.0);
  EXPECT_EQ(s->reward_config.overlong.max_length, 0);
  EXPECT_EQ(s->reward_config.overlong.cache_length, 0);
  EXPECT_EQ(s->scoring.threads, 1);
  EXPECT_EQ(s->scoring.timeout_seconds, 10.0);
  EXPECT_EQ(s->scoring.max_retries, 2);
  EXPECT_EQ(s->scoring.quarantine_after, 2);
}

TEST(RunConfigTest, RewardAndVerifierKeysComeFromOverrides) {
  auto s = settings({"reward.kind=\"countdown\"", "reward.language=\"zh\"", "reward.language_weight=0.5",
                     "reward.length_weight=0.25", "reward.max_length=40", "reward.cache_length=8",
                     "verifier.threads=4", "verifier.timeout_seconds=2.5", "verifier.max_retries=0",
                     "verifier.quarantine_after=5", "reward.format_weight=0.3"});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->reward_kind, runtime::RewardKind::kCountdown);
  EXPECT_EQ(s->reward_config.language.target, "zh");
  EXPECT_EQ(s->reward_config.language_weight, 0.5);
  EXPECT_EQ(s->reward_config.length_weight, 0.25);
  EXPECT_EQ(s->reward_config.overlong.max_length, 40);
  EXPECT_EQ(s->reward_config.overlong.cache_length, 8);
  EXPECT_EQ(s->reward_config.format_weight, 0.3);
  EXPECT_EQ(s->reward.format, 0.3);
  EXPECT_EQ(s->scoring.threads, 4);
  EXPECT_EQ(s->scoring.timeout_seconds, 2.5);
  EXPECT_EQ(s->scoring.max_retries, 0);
  EXPECT_EQ(s->scoring.quarantine_after, 5);
  for (const char* kind : {"demo", "math", "gsm8k", "countdown", "code"}) {
    auto k = settings({std::string("reward.kind=\"") + kind + "\""});
    ASSERT_TRUE(k.ok()) << kind << ": " << k.status();
    EXPECT_STREQ(runtime::reward_kind_name(k->reward_kind), kind);
  }
}

TEST(RunConfigTest, BadRewardAndVerifierKeysAreRejectedNamingTheKey) {
  auto kind = settings({"reward.kind=\"poetry\""});
  ASSERT_FALSE(kind.ok());
  EXPECT_NE(kind.status().message().find("reward.kind"), std::string::npos) << kind.status();
  auto lang = settings({"reward.language=\"xx\""});
  ASSERT_FALSE(lang.ok());
  EXPECT_NE(lang.status().message().find("reward.language"), std::string::npos) << lang.status();
  auto cache = settings({"reward.max_length=10", "reward.cache_length=11"});
  ASSERT_FALSE(cache.ok());
  EXPECT_NE(cache.status().message().find("reward.cache_length"), std::string::npos) << cache.status();
  EXPECT_TRUE(settings({"reward.cache_length=11"}).ok());  // max_length 0: the term is off
  for (const char* bad : {"verifier.timeout_seconds=0", "verifier.timeout_seconds=4000", "verifier.threads=0",
                          "verifier.threads=65", "verifier.max_retries=11", "verifier.max_retries=-1",
                          "verifier.quarantine_after=0", "reward.max_length=-1"}) {
    auto r = settings({bad});
    ASSERT_FALSE(r.ok()) << bad;
    std::string key(bad, std::string(bad).find('='));
    EXPECT_NE(r.status().message().find(key), std::string::npos) << r.status();
  }
}

TEST(RunConfigTest, StoreTimeoutHasAGenerousDefaultAndARange) {
  auto s = settings({});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->store_timeout_seconds, 120.0);
  auto set = settings({"coordinator.store_timeout_seconds=30"});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->store_timeout_seconds, 30.0);
  for (const char* bad : {"coordinator.store_timeout_seconds=0", "coordinator.store_timeout_seconds=1e7"}) {
    auto r = settings({bad});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("coordinator.store_timeout_seconds"), std::string::npos) << r.status();
  }
}

}  // namespace
}  // namespace grpo::actors
