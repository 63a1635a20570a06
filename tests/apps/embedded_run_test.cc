// The embedded run end to end with the real program: all roles, RocksDB on disk, inproc ZeroMQ,
// checkpoints, resume and SIGINT. Uses a tiny model so that it runs in seconds.
#include <gtest/gtest.h>

#include <filesystem>

#include "run_grpo.h"

namespace grpo {
namespace {
namespace fs = std::filesystem;
using testing::read_file;
using testing::lines_of;
using testing::run_grpo;
using testing::source_dir;

std::vector<std::string> tiny_args(const std::string& dir, int steps) {
  return {"train", "--config", source_dir() + "/configs/local.toml", "run.dir=" + dir,
          "model.dim=32", "model.layers=1", "model.ffn_hidden=64", "sft.steps=3", "sft.batch_size=8",
          "grpo.steps=" + std::to_string(steps), "grpo.group_size=4", "grpo.groups_per_step=2",
          "generator.batch_groups=1", "task.eval_prompts=8", "task.eval_samples=1",
          "checkpoint.every=2"};
}

TEST(EmbeddedRunTest, RunsEveryRoleWithReplicasAndResumes) {
  std::string dir = ::testing::TempDir() + "/grpo_embedded_run";
  fs::remove_all(dir);
  auto args = tiny_args(dir, 4);
  args.push_back("generator.replicas=3");
  args.push_back("verifier.replicas=2");
  auto r = run_grpo(args, dir + ".log");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* needle : {"generator 0: up", "generator 1: up", "generator 2: up", "verifier 0: up",
                             "verifier 1: up", "3 generator(s)", "2 verifier(s)", "step    4/4",
                             "learner: checkpoint written at step 4", "pass@1"})
    EXPECT_NE(r.output.find(needle), std::string::npos) << "missing '" << needle << "' in\n" << r.output;
  EXPECT_EQ(lines_of(dir + "/metrics.jsonl"), 4);
  EXPECT_TRUE(fs::exists(dir + "/checkpoints/step-00000004/meta.json"));
  EXPECT_TRUE(fs::exists(dir + "/buffer"));
  EXPECT_TRUE(fs::exists(dir + "/eval.json"));

  // Same run directory, more steps: resumes at step 4 and continues the metrics.
  auto again = run_grpo(tiny_args(dir, 6), dir + ".log2");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("resuming from the checkpoint at step 4"), std::string::npos) << again.output;
  EXPECT_EQ(again.output.find("cold-start SFT:"), std::string::npos);
  EXPECT_NE(again.output.find("step    5/6"), std::string::npos) << again.output;
  EXPECT_EQ(lines_of(dir + "/metrics.jsonl"), 6);
  fs::remove_all(dir);
}

TEST(EmbeddedRunTest, DataParallelLearnersDynamicSamplingAndMicroBatches) {
  std::string dir = ::testing::TempDir() + "/grpo_embedded_dp";
  fs::remove_all(dir);
  auto args = tiny_args(dir, 4);
  for (const char* a : {"learner.replicas=2", "learner.micro_batch_tokens=64", "grpo.dynamic_sampling=true",
                        "grpo.max_dropped=2", "grpo.lr_schedule=cosine"})
    args.push_back(a);
  auto r = run_grpo(args, dir + ".log");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* needle : {"learner 0: up", "learner 1: up", "2 learner(s)", "step    4/4", "pass@1"})
    EXPECT_NE(r.output.find(needle), std::string::npos) << "missing '" << needle << "' in\n" << r.output;
  const std::string metrics = read_file(dir + "/metrics.jsonl");
  EXPECT_EQ(lines_of(dir + "/metrics.jsonl"), 4);  // learner 1 trains but does not write metrics
  EXPECT_NE(metrics.find("\"learners\":2"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\"groups_dropped\":"), std::string::npos) << metrics;
  EXPECT_EQ(metrics.find("\"micro_batches\":1,"), std::string::npos) << "a step ran in one pass: " << metrics;
  // The checkpoint's model is a Hugging Face checkpoint.
  EXPECT_TRUE(fs::exists(dir + "/checkpoints/step-00000004/config.json"));
  EXPECT_TRUE(fs::exists(dir + "/checkpoints/step-00000004/model.safetensors"));
  EXPECT_TRUE(fs::exists(dir + "/checkpoints/step-00000004/state.safetensors"));
  fs::remove_all(dir);
}

TEST(EmbeddedRunTest, DeterministicRunStoppedAndResumedEndsInTheSameWeights) {
  // One cold start (enough SFT for rewards to vary, so GRPO moves the weights), copied twice:
  // run A goes 0 -> 6 GRPO steps straight; run B stops at step 3 and a second process resumes it to
  // step 6. With run.deterministic (and max_staleness 0) both end in the same bytes.
  const std::string base = ::testing::TempDir() + "/grpo_embedded_det";
  fs::remove_all(base);
  auto args = [&](const std::string& dir, int steps) {
    return std::vector<std::string>{
        "train", "--config", source_dir() + "/configs/local.toml", "run.dir=" + dir, "model.dim=64",
        "model.layers=2", "model.ffn_hidden=192", "sft.steps=150", "sft.batch_size=32",
        "grpo.steps=" + std::to_string(steps), "grpo.group_size=4", "grpo.groups_per_step=4",
        "generator.batch_groups=2", "task.eval_prompts=8", "task.eval_samples=1", "checkpoint.every=100",
        "grpo.lr=1e-4", "grpo.max_staleness=0", "run.deterministic=true"};
  };
  auto cold = run_grpo(args(base + "/cold", 0), base + ".log0");
  ASSERT_EQ(cold.exit_code, 0) << cold.output;
  fs::copy(base + "/cold", base + "/a", fs::copy_options::recursive);
  fs::copy(base + "/cold", base + "/b", fs::copy_options::recursive);
  auto a = run_grpo(args(base + "/a", 6), base + ".loga");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  auto b1 = run_grpo(args(base + "/b", 3), base + ".logb1");
  ASSERT_EQ(b1.exit_code, 0) << b1.output;
  auto b2 = run_grpo(args(base + "/b", 6), base + ".logb2");
  ASSERT_EQ(b2.exit_code, 0) << b2.output;
  EXPECT_NE(b2.output.find("resuming from the checkpoint at step 3"), std::string::npos) << b2.output;
  const std::string wa = read_file(base + "/a/checkpoints/step-00000006/model.safetensors");
  const std::string wb = read_file(base + "/b/checkpoints/step-00000006/model.safetensors");
  const std::string w0 = read_file(base + "/cold/checkpoints/step-00000000/model.safetensors");
  ASSERT_FALSE(wa.empty());
  EXPECT_NE(wa, w0) << "GRPO did not change the weights, so the comparison would prove nothing";
  EXPECT_TRUE(wa == wb) << "straight and resumed runs differ";
  fs::remove_all(base);
}

TEST(EmbeddedRunTest, SigintCheckpointsAndTheNextRunResumesThere) {
  std::string dir = ::testing::TempDir() + "/grpo_embedded_sigint";
  fs::remove_all(dir);
  bool sent = false;
  auto r = run_grpo(tiny_args(dir, 100000), dir + ".log", [&](pid_t pid) {
    if (!sent && fs::exists(dir + "/metrics.jsonl") && lines_of(dir + "/metrics.jsonl") >= 3) {
      kill(pid, SIGINT);
      sent = true;
    }
    return !sent;
  });
  ASSERT_TRUE(sent) << r.output;
  EXPECT_EQ(r.exit_code, 130) << r.output;
  int done = lines_of(dir + "/metrics.jsonl");
  ASSERT_GE(done, 3);
  ASSERT_LT(done, 100000);
  std::string expect = "learner: checkpoint written at step " + std::to_string(done);
  EXPECT_NE(r.output.find(expect), std::string::npos) << r.output;

  auto again = run_grpo(tiny_args(dir, done + 1), dir + ".log2");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("resuming from the checkpoint at step " + std::to_string(done)),
            std::string::npos)
      << again.output;
  EXPECT_EQ(lines_of(dir + "/metrics.jsonl"), done + 1);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace grpo
