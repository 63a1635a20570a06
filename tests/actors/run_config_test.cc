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
  EXPECT_FALSE(settings({"learner.replicas=2"}).ok());
}

}  // namespace
}  // namespace grpo::actors
