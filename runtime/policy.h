// Policy: a language model that samples completions, behind a LibTorch-free interface.
//
// Generation runs on a continuous-batching engine with a preallocated KV cache. Requests are
// queued; each step admits queued requests into free batch slots (a request's prompt is prefilled
// once and its KV rows copied to its num_samples slots), feeds one token per running sequence, and
// retires sequences that hit EOS, a stop string or their token budget, so queued work joins without
// waiting for the batch to drain. Each sampled token comes with its logprob under the sampling
// distribution (temperature, top-k, top-p, min-p applied), which the learner needs as the behaviour
// logprob, and with the weight version that produced it: load_weights() between two step() calls
// swaps weights under in-flight sequences without dropping them.
//
// Sampling is reproducible per request: the random number for token t of sample s comes from a
// counter-based generator keyed by (request seed, s, t), so it does not depend on what else is in the
// batch. A Policy is used by one thread at a time (its owner, e.g. one generator actor).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "runtime/model_config.h"
#include "runtime/weights.h"

namespace grpo::runtime {

struct SamplingOptions {
  double temperature = 1.0;  // 0 = greedy
  double top_p = 1.0;
  int32_t top_k = 0;         // 0 = off
  double min_p = 0.0;        // drop tokens below min_p x the most likely token's probability
  int32_t max_new_tokens = 64;
  int32_t eos_id = 2;        // -1: none
  std::vector<int32_t> extra_eos_ids;      // further ids that end a sequence
  std::vector<std::string> stop;           // stop strings (need Policy::set_decoder)
  int32_t pad_id = 0;
};

struct GenerationRequest {
  std::vector<int32_t> prompt_ids;
  int32_t num_samples = 1;
  std::optional<uint64_t> seed;  // unset: derived from generate()'s seed and the request index
};

enum class FinishReason { kLength, kEos, kStop };
const char* finish_reason_name(FinishReason r);  // "length", "eos", "stop"

struct GeneratedSample {
  std::vector<int32_t> ids;        // response ids, the EOS (or stop-completing token) included
  std::vector<float> logprobs;     // one per id
  std::vector<uint64_t> versions;  // weight version that sampled each id
  bool finished = false;           // ended by EOS or a stop string (false: cut at the budget)
  FinishReason reason = FinishReason::kLength;
};

struct FinishedRequest {
  uint64_t id = 0;
  std::vector<GeneratedSample> samples;
};

struct EngineOptions {
  int32_t max_batch = 64;     // sequences decoded together
  int32_t max_context = 0;    // KV capacity per sequence; 0: grows on demand up to max_seq_len
};

class Policy {
 public:
  // A randomly initialised model (init_seed fixes the weights).
  static std::unique_ptr<Policy> create(const ModelConfig& config, uint64_t init_seed);
  // A Hugging Face checkpoint directory (config.json + model.safetensors or shards).
  static StatusOr<std::unique_ptr<Policy>> load(const std::string& dir);
  ~Policy();

  // One vector of samples per request, in request order, all requests decoded together.
  // Deterministic for a given seed.
  StatusOr<std::vector<std::vector<GeneratedSample>>> generate(
      const std::vector<GenerationRequest>& requests, const SamplingOptions& options,
      uint64_t seed);

  // Continuous batching: queue a request (id chosen by the caller) ...
  Status submit(uint64_t id, const GenerationRequest& request, const SamplingOptions& options);
  // ... and advance every running sequence by one token, admitting queued requests first; returns
  // the requests whose samples all finished in this step.
  StatusOr<std::vector<FinishedRequest>> step();
  bool idle() const;          // nothing queued or running
  int32_t running() const;    // sequences in the batch
  int32_t queued() const;     // requests waiting for slots
  void set_engine_options(const EngineOptions& options);  // takes effect when idle
  // Turns response ids into text, for stop strings.
  void set_decoder(std::function<std::string(const std::vector<int32_t>&)> decoder);

  // May be called between step()s; running sequences continue with the new weights and their
  // later tokens carry blob.version.
  Status load_weights(const WeightBlob& blob);
  WeightBlob export_weights() const;
  const ModelConfig& config() const;
  uint64_t version() const;
  // Writes a Hugging Face checkpoint (config.json + safetensors) of the current weights.
  Status save(const std::string& dir, const std::string& dtype = "") const;
  // Moves the model to "cpu", "cuda" or "cuda:N" (only while idle). On CPU the decode step runs
  // the fused kernels; on CUDA the generic LibTorch path.
  Status to_device(const std::string& device);
  std::string device() const;

 private:
  Policy();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// OK when `device` ("cpu", "cuda", "cuda:N") names a device this build and machine can run on;
// otherwise an error saying why (e.g. a CPU-only LibTorch).
Status check_device(const std::string& device);

// Sets LibTorch's intra-op thread count for the process; returns the count now in effect.
int set_compute_threads(int threads);
// Sets the BLAS library's own thread count when it exposes one (OpenBLAS); returns false when it
// does not. Decoding small models is fastest with one BLAS thread beside LibTorch's threads: two
// pools spinning on two cores starve each other.
bool set_blas_threads(int threads);

}  // namespace grpo::runtime
