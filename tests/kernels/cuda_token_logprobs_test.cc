// Parity of the CUDA fused lm_head + log-softmax + gather (kernels/cuda/token_logprobs.h) with a
// direct double-precision evaluation on the host: logprobs, entropy, grad_hidden, grad_weight.
// Tests that need a device skip where none is visible; the argument and workspace checks run
// everywhere.
#include "kernels/cuda/token_logprobs.h"
#include "tests/kernels/device_buffer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace grpo::kernels {
namespace {

#define SKIP_WITHOUT_CUDA_DEVICE()                                  \
  do {                                                              \
    const Status device_ = cuda_device_status();                    \
    if (!device_.ok()) GTEST_SKIP() << "no CUDA device: " << device_.message(); \
  } while (0)

using test_util::DeviceBuffer;

template <typename T>
void upload(DeviceBuffer& dst, const std::vector<T>& src) {
  ASSERT_EQ(dst.bytes(), static_cast<int64_t>(src.size() * sizeof(T)));
  const Status s = cuda_copy_to_device(dst.as<void>(), src.data(), dst.bytes());
  ASSERT_TRUE(s.ok()) << s;
}

template <typename T>
std::vector<T> download(const DeviceBuffer& src) {
  std::vector<T> out(static_cast<size_t>(src.bytes()) / sizeof(T));
  const Status s = cuda_copy_to_host(out.data(), src.as<void>(), src.bytes());
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

struct Case {
  int64_t n, d, v, chunk;
  float temperature;
  float weight_scale = 0.25f;  // logits ~ (d / 9)^0.5 * weight_scale before the temperature
};

std::string describe(const Case& c) {
  return "n=" + std::to_string(c.n) + " d=" + std::to_string(c.d) + " v=" + std::to_string(c.v) +
         " chunk=" + std::to_string(c.chunk) + " T=" + std::to_string(c.temperature);
}

struct Inputs {
  std::vector<float> hidden, weight, grad_out;
  std::vector<int64_t> targets;
};

Inputs make_inputs(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::uniform_int_distribution<int64_t> pick(0, c.v - 1);
  Inputs in;
  in.hidden.resize(c.n * c.d);
  in.weight.resize(c.v * c.d);
  in.grad_out.resize(c.n);
  in.targets.resize(c.n);
  for (auto& x : in.hidden) x = unit(rng);
  for (auto& x : in.weight) x = c.weight_scale * unit(rng);
  for (auto& g : in.grad_out) g = unit(rng);
  for (auto& t : in.targets) t = pick(rng);
  if (c.n > 0) in.targets.front() = 0;  // the vocabulary's first and last columns
  if (c.n > 1) in.targets.back() = c.v - 1;
  return in;
}

struct Reference {
  std::vector<double> logprob, lse, entropy, grad_hidden, grad_weight;
};

// Direct evaluation, one token row of the [n, v] logits at a time.
Reference reference(const Case& c, const Inputs& in) {
  Reference r;
  r.logprob.resize(c.n);
  r.lse.resize(c.n);
  r.entropy.resize(c.n);
  r.grad_hidden.assign(c.n * c.d, 0.0);
  r.grad_weight.assign(c.v * c.d, 0.0);
  std::vector<double> x(c.v), h(c.d);
  for (int64_t i = 0; i < c.n; ++i) {
    for (int64_t k = 0; k < c.d; ++k) h[k] = in.hidden[i * c.d + k];
    double m = -INFINITY;
    for (int64_t j = 0; j < c.v; ++j) {
      const float* w = in.weight.data() + j * c.d;
      double dot = 0.0;
      for (int64_t k = 0; k < c.d; ++k) dot += h[k] * w[k];
      x[j] = dot / c.temperature;
      m = std::max(m, x[j]);
    }
    double s = 0.0;
    for (int64_t j = 0; j < c.v; ++j) s += std::exp(x[j] - m);
    const double lse = m + std::log(s);
    double mean_x = 0.0;
    for (int64_t j = 0; j < c.v; ++j) mean_x += std::exp(x[j] - lse) * x[j];
    r.lse[i] = lse;
    r.logprob[i] = x[in.targets[i]] - lse;
    r.entropy[i] = lse - mean_x;
    // d(sum_i g_i logprob_i) / d logit_ij = g_i ([j == t_i] - p_ij) / T.
    const double g = in.grad_out[i] / c.temperature;
    double* gh = r.grad_hidden.data() + i * c.d;
    for (int64_t j = 0; j < c.v; ++j) {
      const double gl = g * ((j == in.targets[i] ? 1.0 : 0.0) - std::exp(x[j] - lse));
      const float* w = in.weight.data() + j * c.d;
      double* gw = r.grad_weight.data() + j * c.d;
      for (int64_t k = 0; k < c.d; ++k) {
        gh[k] += gl * w[k];
        gw[k] += gl * h[k];
      }
    }
  }
  return r;
}

double max_abs(const std::vector<double>& v) {
  double m = 0.0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// Largest |got - want| / scale_i over a vector (scale_i = max(1, |want_i|) when `relative_above_1`,
// else 1), and where; a NaN counts as the worst.
template <typename T>
std::pair<double, size_t> worst(const std::vector<T>& got, const std::vector<double>& want,
                                bool relative_above_1) {
  double e = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double scale = relative_above_1 ? std::max(1.0, std::fabs(want[i])) : 1.0;
    const double d = std::fabs(double(got[i]) - want[i]) / scale;
    if (!(d <= e)) {
      e = std::isnan(d) ? INFINITY : d;
      at = i;
    }
  }
  return {e, at};
}

// Values: |got - want| <= tol * max(1, |want|) (the CPU kernel test's rule: absolute for
// |want| <= 1). Gradients: |got - want| <= tol (the caller scales tol by the largest gradient).
// Prints the error found, so a device run shows the margins.
void expect_close(const char* what, const std::vector<float>& got, const std::vector<double>& want,
                  double tol, bool relative_above_1, const std::string& where) {
  ASSERT_EQ(got.size(), want.size()) << what << " " << where;
  if (want.empty()) return;
  const auto [err, at] = worst(got, want, relative_above_1);
  std::printf("  %-11s max |error| %.3g, checked error %.3g, tolerance %.3g  [%s]\n", what,
              worst(got, want, false).first, err, tol, where.c_str());
  EXPECT_LE(err, tol) << what << "[" << at << "] = " << got[at] << ", reference " << want[at]
                      << " (" << where << ")";
}

constexpr double kValueTol = 1e-5;
constexpr double kGradRelTol = 1e-5;

// Runs forward (with and without the entropy) and backward on the device and compares with the
// double reference.
void check_case(const Case& c, uint32_t seed, int64_t backward_chunk = -1) {
  SCOPED_TRACE(describe(c));
  const Inputs in = make_inputs(c, seed);
  const Reference ref = reference(c, in);
  const int64_t bchunk = backward_chunk > 0 ? backward_chunk : c.chunk;

  auto fwd_bytes = cuda_token_logprobs_workspace_bytes(c.n, c.v, c.chunk);
  auto bwd_bytes = cuda_token_logprobs_workspace_bytes(c.n, c.v, bchunk);
  ASSERT_TRUE(fwd_bytes.ok() && bwd_bytes.ok());
  DeviceBuffer ws(std::max(*fwd_bytes, *bwd_bytes));
  DeviceBuffer hidden(c.n * c.d * 4), weight(c.v * c.d * 4), targets(c.n * 8), grad_out(c.n * 4);
  DeviceBuffer logprobs(c.n * 4), lse(c.n * 4), entropy(c.n * 4), logprobs2(c.n * 4);
  DeviceBuffer grad_hidden(c.n * c.d * 4), grad_weight(c.v * c.d * 4);
  upload(hidden, in.hidden);
  upload(weight, in.weight);
  upload(targets, in.targets);
  upload(grad_out, in.grad_out);
  const CudaLogprobWorkspace workspace{ws.as<void>(), ws.bytes()};

  Status s = cuda_token_logprobs_forward(hidden.as<float>(), weight.as<float>(),
                                         targets.as<int64_t>(), c.n, c.d, c.v, c.temperature,
                                         c.chunk, logprobs.as<float>(), lse.as<float>(),
                                         entropy.as<float>(), workspace, nullptr);
  ASSERT_TRUE(s.ok()) << s;
  s = cuda_token_logprobs_forward(hidden.as<float>(), weight.as<float>(), targets.as<int64_t>(),
                                  c.n, c.d, c.v, c.temperature, c.chunk, logprobs2.as<float>(),
                                  nullptr, nullptr, workspace, nullptr);
  ASSERT_TRUE(s.ok()) << s;
  s = cuda_token_logprobs_backward(hidden.as<float>(), weight.as<float>(), targets.as<int64_t>(),
                                   c.n, c.d, c.v, c.temperature, bchunk, lse.as<float>(),
                                   grad_out.as<float>(), grad_hidden.as<float>(),
                                   grad_weight.as<float>(), workspace, nullptr);
  ASSERT_TRUE(s.ok()) << s;
  s = cuda_stream_synchronize(nullptr);
  ASSERT_TRUE(s.ok()) << s;

  const std::string where = describe(c);
  expect_close("logprob", download<float>(logprobs), ref.logprob, kValueTol, true, where);
  expect_close("lse", download<float>(lse), ref.lse, kValueTol, true, where);
  expect_close("entropy", download<float>(entropy), ref.entropy, kValueTol, true, where);
  // The forward without the entropy gives the same logprobs.
  expect_close("logprob(2)", download<float>(logprobs2), ref.logprob, kValueTol, true, where);
  expect_close("grad_hidden", download<float>(grad_hidden), ref.grad_hidden,
               kGradRelTol * max_abs(ref.grad_hidden), false, where);
  expect_close("grad_weight", download<float>(grad_weight), ref.grad_weight,
               kGradRelTol * max_abs(ref.grad_weight), false, where);
}

TEST(CudaTokenLogprobsTest, MatchesDoubleReference) {
  SKIP_WITHOUT_CUDA_DEVICE();
  const std::vector<Case> cases = {
      {37, 40, 1000, 256, 1.0f},     // n below a block, v not a multiple of the chunk
      {300, 64, 513, 128, 0.7f},     // n above a block and not a multiple of it
      {5, 16, 50, 4096, 1.3f},       // chunk > v: one chunk
      {3, 8, 17, 1, 1.0f},           // one column per chunk
      {1, 33, 2, 1, 0.5f},           // one token, two columns
      {64, 24, 700, 96, 0.25f, 1.0f},  // larger logits: peaked distributions
  };
  uint32_t seed = 1;
  for (const Case& c : cases) check_case(c, seed++);
}

TEST(CudaTokenLogprobsTest, BackwardChunkMayDifferFromForward) {
  SKIP_WITHOUT_CUDA_DEVICE();
  check_case({45, 32, 900, 256, 0.9f}, 11, /*backward_chunk=*/100);
}

// Qwen2-sized vocabulary: the workspace stays O(n * chunk) and the values still match.
TEST(CudaTokenLogprobsTest, LargeVocabulary) {
  SKIP_WITHOUT_CUDA_DEVICE();
  check_case({256, 64, 151936, 4096, 1.0f}, 21);
}

TEST(CudaTokenLogprobsTest, WorkspaceIsLinearInChunkNotVocabulary) {
  const int64_t n = 256, v = 151936, chunk = 4096;
  auto bytes = cuda_token_logprobs_workspace_bytes(n, v, chunk);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  const int64_t block = n * chunk * int64_t{sizeof(float)};
  EXPECT_GE(*bytes, block);
  EXPECT_LE(*bytes, block + 8 * 1024);  // the block plus O(n) state
  EXPECT_LT(*bytes, n * v * int64_t{sizeof(float)} / 30);
  // Independent of v once v >= chunk; a chunk wider than v is clamped to v.
  EXPECT_EQ(*cuda_token_logprobs_workspace_bytes(n, 10 * v, chunk), *bytes);
  EXPECT_EQ(*cuda_token_logprobs_workspace_bytes(n, 50, 4096),
            *cuda_token_logprobs_workspace_bytes(n, 50, 50));
  EXPECT_EQ(cuda_token_logprobs_workspace_bytes(-1, v, chunk).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(cuda_token_logprobs_workspace_bytes(n, 0, chunk).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(cuda_token_logprobs_workspace_bytes(n, v, 0).status().code(),
            StatusCode::kInvalidArgument);
}

// Shapes, temperature and workspace are checked on the host, before any device work (the
// pointers below are never dereferenced).
TEST(CudaTokenLogprobsTest, ArgumentErrorsAreInvalidArgumentWithoutDevice) {
  alignas(256) static char fake[1024];
  const auto* h = reinterpret_cast<const float*>(fake);
  const auto* t = reinterpret_cast<const int64_t*>(fake);
  float* out = reinterpret_cast<float*>(fake);
  const CudaLogprobWorkspace big{fake, 1 << 30};
  auto forward = [&](int64_t n, int64_t d, int64_t v, float temp, int64_t chunk,
                     CudaLogprobWorkspace ws) {
    return cuda_token_logprobs_forward(h, h, t, n, d, v, temp, chunk, out, out, nullptr, ws,
                                       nullptr);
  };
  EXPECT_EQ(forward(4, 8, 16, 1.0f, 0, big).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(forward(4, 8, 16, 0.0f, 4, big).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(forward(4, 8, 16, -1.0f, 4, big).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(forward(4, 8, 16, NAN, 4, big).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(forward(4, 8, 16, INFINITY, 4, big).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(forward(4, 0, 16, 1.0f, 4, big).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(forward(4, 8, 0, 1.0f, 4, big).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(forward(-1, 8, 16, 1.0f, 4, big).code(), StatusCode::kInvalidArgument);
  const Status small = forward(4, 8, 16, 1.0f, 4, CudaLogprobWorkspace{fake, 64});
  EXPECT_EQ(small.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(small.message().find("workspace"), std::string::npos) << small;
  EXPECT_EQ(forward(4, 8, 16, 1.0f, 4, CudaLogprobWorkspace{fake + 4, 1 << 20}).code(),
            StatusCode::kInvalidArgument);  // misaligned
  EXPECT_EQ(cuda_token_logprobs_backward(h, h, t, 4, 8, 16, 1.0f, 4, nullptr, out, out, out, big,
                                         nullptr)
                .code(),
            StatusCode::kInvalidArgument);  // null lse
}

TEST(CudaTokenLogprobsTest, OutOfRangeTargetIsInvalidArgumentAndWritesNothing) {
  SKIP_WITHOUT_CUDA_DEVICE();
  const Case c{10, 8, 20, 8, 1.0f};
  Inputs in = make_inputs(c, 5);
  auto bytes = cuda_token_logprobs_workspace_bytes(c.n, c.v, c.chunk);
  ASSERT_TRUE(bytes.ok());
  DeviceBuffer ws(*bytes), hidden(c.n * c.d * 4), weight(c.v * c.d * 4), targets(c.n * 8);
  DeviceBuffer logprobs(c.n * 4), lse(c.n * 4), grad_out(c.n * 4), grad_hidden(c.n * c.d * 4);
  upload(hidden, in.hidden);
  upload(weight, in.weight);
  upload(grad_out, in.grad_out);
  const std::vector<float> sentinel(c.n, 7.0f);
  upload(logprobs, sentinel);
  upload(lse, sentinel);
  const CudaLogprobWorkspace workspace{ws.as<void>(), ws.bytes()};

  for (int64_t bad : {c.v, int64_t{-1}}) {
    in.targets[6] = bad;
    in.targets[8] = bad;
    upload(targets, in.targets);
    Status s = cuda_token_logprobs_forward(hidden.as<float>(), weight.as<float>(),
                                           targets.as<int64_t>(), c.n, c.d, c.v, c.temperature,
                                           c.chunk, logprobs.as<float>(), lse.as<float>(),
                                           nullptr, workspace, nullptr);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("token 6"), std::string::npos) << s;
    EXPECT_NE(s.message().find("target " + std::to_string(bad)), std::string::npos) << s;
    s = cuda_token_logprobs_backward(hidden.as<float>(), weight.as<float>(),
                                     targets.as<int64_t>(), c.n, c.d, c.v, c.temperature, c.chunk,
                                     lse.as<float>(), grad_out.as<float>(),
                                     grad_hidden.as<float>(), nullptr, workspace, nullptr);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
    EXPECT_EQ(download<float>(logprobs), sentinel);
    EXPECT_EQ(download<float>(lse), sentinel);
  }
}

TEST(CudaTokenLogprobsTest, NoTokensZeroesTheWeightGradient) {
  SKIP_WITHOUT_CUDA_DEVICE();
  const int64_t d = 8, v = 30;
  auto bytes = cuda_token_logprobs_workspace_bytes(0, v, 16);
  ASSERT_TRUE(bytes.ok());
  DeviceBuffer ws(*bytes), weight(v * d * 4), grad_weight(v * d * 4);
  upload(grad_weight, std::vector<float>(v * d, 3.0f));
  const CudaLogprobWorkspace workspace{ws.as<void>(), ws.bytes()};
  // Null token arrays are fine when there are no tokens.
  Status s = cuda_token_logprobs_forward(nullptr, weight.as<float>(), nullptr, 0, d, v, 1.0f, 16,
                                         nullptr, nullptr, nullptr, workspace, nullptr);
  ASSERT_TRUE(s.ok()) << s;
  s = cuda_token_logprobs_backward(nullptr, weight.as<float>(), nullptr, 0, d, v, 1.0f, 16,
                                   nullptr, nullptr, nullptr, grad_weight.as<float>(), workspace,
                                   nullptr);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(download<float>(grad_weight), std::vector<float>(v * d, 0.0f));
}

// Either gradient may be skipped; the other one is unchanged.
TEST(CudaTokenLogprobsTest, SkippedGradientLeavesTheOtherExact) {
  SKIP_WITHOUT_CUDA_DEVICE();
  const Case c{50, 16, 300, 64, 1.0f};
  const Inputs in = make_inputs(c, 9);
  auto bytes = cuda_token_logprobs_workspace_bytes(c.n, c.v, c.chunk);
  ASSERT_TRUE(bytes.ok());
  DeviceBuffer ws(*bytes), hidden(c.n * c.d * 4), weight(c.v * c.d * 4), targets(c.n * 8);
  DeviceBuffer lse(c.n * 4), grad_out(c.n * 4);
  DeviceBuffer gh_both(c.n * c.d * 4), gw_both(c.v * c.d * 4), gh(c.n * c.d * 4),
      gw(c.v * c.d * 4);
  upload(hidden, in.hidden);
  upload(weight, in.weight);
  upload(targets, in.targets);
  upload(grad_out, in.grad_out);
  const CudaLogprobWorkspace workspace{ws.as<void>(), ws.bytes()};
  auto backward = [&](float* grad_h, float* grad_w) {
    return cuda_token_logprobs_backward(hidden.as<float>(), weight.as<float>(),
                                        targets.as<int64_t>(), c.n, c.d, c.v, c.temperature,
                                        c.chunk, lse.as<float>(), grad_out.as<float>(), grad_h,
                                        grad_w, workspace, nullptr);
  };
  Status s = cuda_token_logprobs_forward(hidden.as<float>(), weight.as<float>(),
                                         targets.as<int64_t>(), c.n, c.d, c.v, c.temperature,
                                         c.chunk, nullptr, lse.as<float>(), nullptr, workspace,
                                         nullptr);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(backward(gh_both.as<float>(), gw_both.as<float>()).ok());
  ASSERT_TRUE(backward(gh.as<float>(), nullptr).ok());
  ASSERT_TRUE(backward(nullptr, gw.as<float>()).ok());
  EXPECT_EQ(download<float>(gh), download<float>(gh_both));
  EXPECT_EQ(download<float>(gw), download<float>(gw_both));
}

}  // namespace
}  // namespace grpo::kernels
