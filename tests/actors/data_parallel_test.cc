// Data-parallel learners as the learner runs them: L trainers, each on its share of a batch, with
// gradients summed by the ZeroMQ ring all-reduce (cluster/allreduce.h), against one trainer on the
// whole batch. Real sockets (inproc and tcp on loopback), one thread per rank.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <thread>

#include <unistd.h>

#include "cluster/allreduce.h"
#include "runtime/trainer.h"
#include "tests/cluster/test_util.h"

namespace grpo {
namespace {

runtime::ModelConfig tiny() {
  runtime::ModelConfig c;
  c.vocab_size = 40;
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.ffn_hidden = 64;
  c.max_seq_len = 32;
  return c;
}

// A GRPO batch of 4 groups x 4 samples with ragged lengths and group-normalised advantages.
std::vector<runtime::TrainSample> batch_for(int step) {
  std::vector<runtime::TrainSample> b;
  for (int g = 0; g < 4; ++g) {
    for (int i = 0; i < 4; ++i) {
      runtime::TrainSample s;
      for (int k = 0; k < 2 + g % 2; ++k) s.prompt_ids.push_back(1 + (g * 5 + k + step) % 30);
      const int len = 2 + (g * 3 + i * 5 + step) % 9;
      for (int k = 0; k < len; ++k) {
        s.response_ids.push_back(2 + (g * 11 + i * 7 + k * 3 + step) % 37);
        s.behaviour_logprobs.push_back(-3.6f + 0.03f * static_cast<float>((i + k) % 7));
      }
      s.advantage = (i - 1.5f) / 1.118f * (g % 2 ? 1.0f : -1.0f);
      b.push_back(s);
    }
  }
  return b;
}

// Every rank's share: the same token-balanced partition the learner actor uses is not reachable
// from here (it lives in the actor), so shares are taken round-robin; the equality must hold for
// any partition.
std::vector<runtime::TrainSample> share(const std::vector<runtime::TrainSample>& all, int rank, int world) {
  std::vector<runtime::TrainSample> out;
  for (size_t i = static_cast<size_t>(rank); i < all.size(); i += static_cast<size_t>(world)) out.push_back(all[i]);
  return out;
}

double max_diff(const runtime::WeightBlob& a, const runtime::WeightBlob& b) {
  EXPECT_EQ(a.bytes.size(), b.bytes.size());
  const float* p = reinterpret_cast<const float*>(a.bytes.data());
  const float* q = reinterpret_cast<const float*>(b.bytes.data());
  double d = 0;
  for (size_t i = 0; i < a.bytes.size() / sizeof(float); ++i) d = std::max(d, std::fabs(double(p[i]) - q[i]));
  return d;
}

void check_world(int world, const std::vector<std::string>& endpoints) {
  runtime::OptimizerOptions o;
  o.lr = 1e-3;
  o.micro_batch_tokens = 40;  // accumulation inside each rank as well
  runtime::GrpoOptions g;
  g.kl_coef = 0.04;
  g.aggregation = "token_mean";
  g.clip_high = 0.28;

  auto single = std::move(runtime::Trainer::create(tiny(), o, 7).value());
  auto transport = cluster::Transport::create();
  std::vector<std::unique_ptr<runtime::Trainer>> ranks;
  std::vector<std::unique_ptr<cluster::RingAllReduce>> rings;
  for (int r = 0; r < world; ++r) {
    ranks.push_back(std::move(runtime::Trainer::create(tiny(), o, 7).value()));
    auto ring = cluster::RingAllReduce::create(transport, r, endpoints);
    ASSERT_TRUE(ring.ok()) << ring.status();
    rings.push_back(std::move(ring).value());
    auto* ring_ptr = rings.back().get();
    ranks.back()->set_gradient_reducer([ring_ptr](float* d, size_t n) { return ring_ptr->all_reduce_sum(d, n); });
  }
  for (int step = 0; step < 3; ++step) {
    const auto batch = batch_for(step);
    const runtime::BatchTotals totals = runtime::batch_totals(batch);
    auto want = single->grpo_step(batch, g);
    ASSERT_TRUE(want.ok()) << want.status();
    std::vector<StatusOr<runtime::StepStats>> got(static_cast<size_t>(world),
                                                  StatusOr<runtime::StepStats>(internal_error("not run")));
    std::vector<std::thread> threads;
    for (int r = 0; r < world; ++r)
      threads.emplace_back([&, r] {
        got[static_cast<size_t>(r)] = ranks[static_cast<size_t>(r)]->grpo_step(share(batch, r, world), g, &totals);
      });
    for (auto& t : threads) t.join();
    for (int r = 0; r < world; ++r) {
      const auto& s = got[static_cast<size_t>(r)];
      ASSERT_TRUE(s.ok()) << "rank " << r << ": " << s.status();
      EXPECT_NEAR(s->loss, want->loss, 1e-5);
      EXPECT_NEAR(s->grad_norm, want->grad_norm, 1e-5 * std::max(1.0, want->grad_norm));
      EXPECT_EQ(s->tokens, want->tokens);
    }
    const auto reference = single->export_weights();
    for (int r = 0; r < world; ++r) {
      const auto w = ranks[static_cast<size_t>(r)]->export_weights();
      EXPECT_EQ(w.bytes, ranks[0]->export_weights().bytes) << "rank " << r << " drifted from rank 0";
      EXPECT_LE(max_diff(w, reference), 1e-5) << "rank " << r << " after step " << step;
    }
  }
}

TEST(DataParallelTest, TwoLearnersOverTheZeroMqRingMatchOneLearner) {
  check_world(2, {"inproc://dp-test-2.0", "inproc://dp-test-2.1"});
}

TEST(DataParallelTest, ThreeLearnersOverTcpMatchOneLearner) {
  // Ports that were free when probed (bind to port 0), so parallel test processes do not collide.
  std::vector<std::string> eps;
  for (int port : cluster::test_util::free_tcp_ports(3)) eps.push_back("tcp://127.0.0.1:" + std::to_string(port));
  check_world(3, eps);
}

}  // namespace
}  // namespace grpo
