// Tests of cluster/codec.h: round trips of every message, hostile input, weight chunking.
#include "cluster/codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace grpo::cluster {
namespace {

// ---------------------------------------------------------------------------------------------
// Sample messages with non-trivial contents (non-default values in every field).

SamplingParams sample_sampling() {
  SamplingParams p;
  p.temperature = 0.6;
  p.top_p = 0.95;
  p.top_k = 40;
  p.max_new_tokens = 4096;
  return p;
}

LeaseRequest sample_lease_request() {
  LeaseRequest m;
  m.worker_id = 7;
  m.policy_version = 123456789012345ull;
  m.max_groups = -3;
  m.restarted = true;
  return m;
}

PromptLease sample_prompt_lease() {
  PromptLease m;
  m.group_id = 0xDEADBEEFCAFEull;
  m.prompt_index = 99;
  m.prompt = "357+468=";
  m.answer = "825";
  m.group_size = 16;
  m.min_version = 41;
  m.deadline_ms = 1700000000123ull;
  m.seed = std::numeric_limits<uint64_t>::max();
  m.sampling = sample_sampling();
  return m;
}

Completion sample_completion(int n, int salt) {
  Completion c;
  for (int i = 0; i < n; ++i) {
    c.token_ids.push_back(i * 31 + salt);
    c.logprobs.push_back(i == 0 ? -std::numeric_limits<float>::infinity()
                                : -0.125f * static_cast<float>(i + salt));
    c.versions.push_back(static_cast<uint64_t>(40 + (i % 3)));
  }
  c.text = "answer " + std::to_string(salt) + std::string("\0\xff\xfe", 3) + " \xc3\xa9";
  c.finished = (salt % 2) == 0;
  return c;
}

RolloutGroup sample_rollout_group(uint64_t group_id = 17) {
  RolloutGroup m;
  m.group_id = group_id;
  m.generator_id = 3;
  m.prompt = "What is 2+2? Think step by step.";
  m.answer = "4";
  m.prompt_ids = {1, 2, 3, -5, std::numeric_limits<int32_t>::max()};
  for (int i = 0; i < 4; ++i) m.completions.push_back(sample_completion(10 + i, i));
  return m;
}

RewardBreakdown sample_reward(int i) {
  RewardBreakdown r;
  r.accuracy = i % 2;
  r.format = 0.5;
  r.language = -0.25;
  r.length = -0.001 * i;
  r.total = r.accuracy + r.format + r.language + r.length;
  r.correct = (i % 2) == 1;
  return r;
}

ScoredGroup sample_scored_group(uint64_t group_id = 17) {
  ScoredGroup m;
  m.rollout = sample_rollout_group(group_id);
  for (size_t i = 0; i < m.rollout.completions.size(); ++i) {
    m.rewards.push_back(sample_reward(static_cast<int>(i)));
  }
  m.verifier_id = 5;
  return m;
}

TrainBatchRequest sample_train_batch_request() {
  TrainBatchRequest m;
  m.learner_id = 2;
  m.step = 1000;
  m.min_version = 998;
  m.num_groups = 64;
  return m;
}

TrainBatch sample_train_batch() {
  TrainBatch m;
  m.step = 1000;
  m.dropped = 7;
  for (uint64_t g = 0; g < 3; ++g) m.groups.push_back(sample_scored_group(100 + g));
  return m;
}

WeightManifest sample_manifest() {
  WeightManifest m;
  m.version = 42;
  m.tensors.push_back({"model.embed_tokens.weight", {151936, 896}, "bf16", 0, 272269312});
  m.tensors.push_back({"model.norm.weight", {896}, "f32", 272269312, 3584});
  m.total_bytes = 272272896;
  m.chunk_bytes = 1u << 26;
  m.chunk_checksums = {1, 2, 3, 0xFFFFFFFFFFFFFFFFull, 5};
  return m;
}

WeightChunk sample_chunk() {
  WeightChunk m;
  m.version = 42;
  m.index = 3;
  for (int i = 0; i < 1000; ++i) m.data.push_back(static_cast<char>(i * 7));
  m.checksum = checksum64(m.data);
  return m;
}

Heartbeat sample_heartbeat() {
  Heartbeat m;
  m.role = "generator";
  m.worker_id = 11;
  m.epoch = 4;
  m.policy_version = 40;
  m.timestamp_ms = 1700000000999ull;
  m.in_flight = -2;
  m.step = 17;
  m.groups_retired = 136;
  return m;
}

LeaseGrant sample_lease_grant() {
  LeaseGrant m;
  m.worker_id = 5;
  m.leases.push_back(sample_prompt_lease());
  PromptLease second = sample_prompt_lease();
  second.group_id += 1;
  second.prompt = "001+002=";
  m.leases.push_back(second);
  return m;
}

// ---------------------------------------------------------------------------------------------
// Field-by-field equality.

void expect_eq(const SamplingParams& a, const SamplingParams& b) {
  EXPECT_EQ(a.temperature, b.temperature);
  EXPECT_EQ(a.top_p, b.top_p);
  EXPECT_EQ(a.top_k, b.top_k);
  EXPECT_EQ(a.max_new_tokens, b.max_new_tokens);
}
void expect_eq(const LeaseRequest& a, const LeaseRequest& b) {
  EXPECT_EQ(a.worker_id, b.worker_id);
  EXPECT_EQ(a.policy_version, b.policy_version);
  EXPECT_EQ(a.max_groups, b.max_groups);
  EXPECT_EQ(a.restarted, b.restarted);
}
void expect_eq(const PromptLease& a, const PromptLease& b) {
  EXPECT_EQ(a.group_id, b.group_id);
  EXPECT_EQ(a.prompt_index, b.prompt_index);
  EXPECT_EQ(a.prompt, b.prompt);
  EXPECT_EQ(a.answer, b.answer);
  EXPECT_EQ(a.group_size, b.group_size);
  EXPECT_EQ(a.min_version, b.min_version);
  EXPECT_EQ(a.deadline_ms, b.deadline_ms);
  EXPECT_EQ(a.seed, b.seed);
  expect_eq(a.sampling, b.sampling);
}
void expect_eq(const Completion& a, const Completion& b) {
  EXPECT_EQ(a.token_ids, b.token_ids);
  EXPECT_EQ(a.logprobs, b.logprobs);
  EXPECT_EQ(a.versions, b.versions);
  EXPECT_EQ(a.text, b.text);
  EXPECT_EQ(a.finished, b.finished);
}
void expect_eq(const RolloutGroup& a, const RolloutGroup& b) {
  EXPECT_EQ(a.group_id, b.group_id);
  EXPECT_EQ(a.generator_id, b.generator_id);
  EXPECT_EQ(a.prompt, b.prompt);
  EXPECT_EQ(a.answer, b.answer);
  EXPECT_EQ(a.prompt_ids, b.prompt_ids);
  ASSERT_EQ(a.completions.size(), b.completions.size());
  for (size_t i = 0; i < a.completions.size(); ++i) expect_eq(a.completions[i], b.completions[i]);
}
void expect_eq(const RewardBreakdown& a, const RewardBreakdown& b) {
  EXPECT_EQ(a.total, b.total);
  EXPECT_EQ(a.accuracy, b.accuracy);
  EXPECT_EQ(a.format, b.format);
  EXPECT_EQ(a.language, b.language);
  EXPECT_EQ(a.length, b.length);
  EXPECT_EQ(a.correct, b.correct);
}
void expect_eq(const ScoredGroup& a, const ScoredGroup& b) {
  expect_eq(a.rollout, b.rollout);
  ASSERT_EQ(a.rewards.size(), b.rewards.size());
  for (size_t i = 0; i < a.rewards.size(); ++i) expect_eq(a.rewards[i], b.rewards[i]);
  EXPECT_EQ(a.verifier_id, b.verifier_id);
}
void expect_eq(const TrainBatchRequest& a, const TrainBatchRequest& b) {
  EXPECT_EQ(a.learner_id, b.learner_id);
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.min_version, b.min_version);
  EXPECT_EQ(a.num_groups, b.num_groups);
}
void expect_eq(const TrainBatch& a, const TrainBatch& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.dropped, b.dropped);
  ASSERT_EQ(a.groups.size(), b.groups.size());
  for (size_t i = 0; i < a.groups.size(); ++i) expect_eq(a.groups[i], b.groups[i]);
}
void expect_eq(const TensorMeta& a, const TensorMeta& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.shape, b.shape);
  EXPECT_EQ(a.dtype, b.dtype);
  EXPECT_EQ(a.offset, b.offset);
  EXPECT_EQ(a.nbytes, b.nbytes);
}
void expect_eq(const WeightManifest& a, const WeightManifest& b) {
  EXPECT_EQ(a.version, b.version);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) expect_eq(a.tensors[i], b.tensors[i]);
  EXPECT_EQ(a.total_bytes, b.total_bytes);
  EXPECT_EQ(a.chunk_bytes, b.chunk_bytes);
  EXPECT_EQ(a.chunk_checksums, b.chunk_checksums);
}
void expect_eq(const WeightChunk& a, const WeightChunk& b) {
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.index, b.index);
  EXPECT_EQ(a.checksum, b.checksum);
  EXPECT_EQ(a.data, b.data);
}
void expect_eq(const Heartbeat& a, const Heartbeat& b) {
  EXPECT_EQ(a.role, b.role);
  EXPECT_EQ(a.worker_id, b.worker_id);
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.policy_version, b.policy_version);
  EXPECT_EQ(a.timestamp_ms, b.timestamp_ms);
  EXPECT_EQ(a.in_flight, b.in_flight);
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.groups_retired, b.groups_retired);
}
void expect_eq(const LeaseGrant& a, const LeaseGrant& b) {
  EXPECT_EQ(a.worker_id, b.worker_id);
  ASSERT_EQ(a.leases.size(), b.leases.size());
  for (size_t i = 0; i < a.leases.size(); ++i) expect_eq(a.leases[i], b.leases[i]);
}

template <typename T>
void expect_round_trip(const T& original, MessageKind kind) {
  const std::string bytes = encode(original);
  EXPECT_EQ(bytes.size() % 8, 0u);
  StatusOr<MessageKind> peeked = peek_kind(bytes);
  ASSERT_TRUE(peeked.ok()) << peeked.status();
  EXPECT_EQ(*peeked, kind);
  T decoded;
  Status s = decode(bytes, &decoded);
  ASSERT_TRUE(s.ok()) << s;
  expect_eq(original, decoded);
}

TEST(CodecTest, RoundTripLeaseRequest) {
  expect_round_trip(sample_lease_request(), MessageKind::kLeaseRequest);
}
TEST(CodecTest, RoundTripPromptLease) {
  expect_round_trip(sample_prompt_lease(), MessageKind::kPromptLease);
}
TEST(CodecTest, RoundTripRolloutGroup) {
  expect_round_trip(sample_rollout_group(), MessageKind::kRolloutGroup);
}
TEST(CodecTest, RoundTripScoredGroup) {
  expect_round_trip(sample_scored_group(), MessageKind::kScoredGroup);
}
TEST(CodecTest, RoundTripTrainBatchRequest) {
  expect_round_trip(sample_train_batch_request(), MessageKind::kTrainBatchRequest);
}
TEST(CodecTest, RoundTripTrainBatch) {
  expect_round_trip(sample_train_batch(), MessageKind::kTrainBatch);
}
TEST(CodecTest, RoundTripWeightManifest) {
  expect_round_trip(sample_manifest(), MessageKind::kWeightManifest);
}
TEST(CodecTest, RoundTripWeightChunk) {
  expect_round_trip(sample_chunk(), MessageKind::kWeightChunk);
}
TEST(CodecTest, RoundTripLeaseGrant) {
  expect_round_trip(sample_lease_grant(), MessageKind::kLeaseGrant);
  expect_round_trip(LeaseGrant(), MessageKind::kLeaseGrant);
}
TEST(CodecTest, RoundTripHeartbeat) {
  expect_round_trip(sample_heartbeat(), MessageKind::kHeartbeat);
}

// The buffer's storage reports and the coordinator's questions about them: lists of group ids, at
// most kMaxReportedGroupIds of them; a longer list is refused (InvalidArgument), not copied.
TEST(CodecTest, StoredGroupIdListsRoundTripAndAreBounded) {
  Heartbeat hb = sample_heartbeat();
  hb.role = "buffer";
  hb.stored_ids = {1, 7, 0xFFFFFFFFFFFFFFFFull};
  Heartbeat back;
  ASSERT_TRUE(decode(encode(hb), &back).ok());
  EXPECT_EQ(back.stored_ids, hb.stored_ids);
  StoredQuery q;
  q.ids.resize(kMaxReportedGroupIds);
  for (size_t i = 0; i < q.ids.size(); ++i) q.ids[i] = i + 1;
  const std::string bytes = encode(q);
  ASSERT_EQ(peek_kind(bytes).value(), MessageKind::kStoredQuery);
  EXPECT_STREQ(message_kind_name(MessageKind::kStoredQuery), "StoredQuery");
  StoredQuery q_back;
  ASSERT_TRUE(decode(bytes, &q_back).ok());
  EXPECT_EQ(q_back.ids, q.ids);
  AdminReply reply;
  reply.leases_awaiting_storage = 5;
  AdminReply reply_back;
  ASSERT_TRUE(decode(encode(reply), &reply_back).ok());
  EXPECT_EQ(reply_back.leases_awaiting_storage, 5u);

  q.ids.push_back(kMaxReportedGroupIds + 1);
  Status s = decode(encode(q), &q_back);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("more than the limit of 4096"), std::string::npos) << s;
  hb.stored_ids = q.ids;
  s = decode(encode(hb), &back);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
}

TEST(CodecTest, RoundTripDefaultValues) {
  expect_round_trip(LeaseRequest(), MessageKind::kLeaseRequest);
  expect_round_trip(PromptLease(), MessageKind::kPromptLease);
  expect_round_trip(RolloutGroup(), MessageKind::kRolloutGroup);
  expect_round_trip(ScoredGroup(), MessageKind::kScoredGroup);
  expect_round_trip(TrainBatchRequest(), MessageKind::kTrainBatchRequest);
  expect_round_trip(TrainBatch(), MessageKind::kTrainBatch);
  expect_round_trip(WeightManifest(), MessageKind::kWeightManifest);
  expect_round_trip(WeightChunk(), MessageKind::kWeightChunk);
  expect_round_trip(Heartbeat(), MessageKind::kHeartbeat);
}

TEST(CodecTest, RoundTripLargeWeightChunk) {
  WeightChunk chunk;
  chunk.version = 9;
  chunk.index = 1;
  chunk.data.resize(3 << 20);
  std::mt19937_64 rng(1);
  for (char& c : chunk.data) c = static_cast<char>(rng());
  chunk.checksum = checksum64(chunk.data);
  expect_round_trip(chunk, MessageKind::kWeightChunk);
}

TEST(CodecTest, DecodesUnalignedInput) {
  const std::string bytes = encode(sample_scored_group());
  std::string buffer(bytes.size() + 1, '\0');
  std::memcpy(&buffer[1], bytes.data(), bytes.size());
  std::string_view unaligned(buffer.data() + 1, bytes.size());
  ASSERT_NE(reinterpret_cast<uintptr_t>(unaligned.data()) % 8, 0u);
  ScoredGroup decoded;
  Status s = decode(unaligned, &decoded);
  ASSERT_TRUE(s.ok()) << s;
  expect_eq(sample_scored_group(), decoded);
}

TEST(CodecTest, MessageKindNames) {
  EXPECT_STREQ(message_kind_name(MessageKind::kLeaseRequest), "LeaseRequest");
  EXPECT_STREQ(message_kind_name(MessageKind::kHeartbeat), "Heartbeat");
}

// ---------------------------------------------------------------------------------------------
// Hostile input.

// Decodes `bytes` as every message type and with peek_kind; returns how many succeeded.
int decode_as_everything(std::string_view bytes) {
  int ok = 0;
  ok += peek_kind(bytes).ok();
  LeaseRequest a; ok += decode(bytes, &a).ok();
  PromptLease b; ok += decode(bytes, &b).ok();
  RolloutGroup c; ok += decode(bytes, &c).ok();
  ScoredGroup d; ok += decode(bytes, &d).ok();
  TrainBatchRequest e; ok += decode(bytes, &e).ok();
  TrainBatch f; ok += decode(bytes, &f).ok();
  WeightManifest g; ok += decode(bytes, &g).ok();
  WeightChunk h; ok += decode(bytes, &h).ok();
  Heartbeat i; ok += decode(bytes, &i).ok();
  return ok;
}

TEST(CodecTest, EmptyBytesFail) {
  EXPECT_EQ(decode_as_everything(""), 0);
  Heartbeat hb;
  Status s = decode("", &hb);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
}

TEST(CodecTest, EveryTruncationFails) {
  for (const std::string& bytes :
       {encode(sample_train_batch()), encode(sample_prompt_lease()), encode(sample_chunk())}) {
    for (size_t n = 0; n < bytes.size(); ++n) {
      ASSERT_EQ(decode_as_everything(std::string_view(bytes.data(), n)), 0) << "length " << n;
    }
  }
}

TEST(CodecTest, TrailingBytesFail) {
  std::string bytes = encode(sample_heartbeat());
  bytes.append(8, '\0');
  Heartbeat hb;
  Status s = decode(bytes, &hb);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
}

TEST(CodecTest, RandomBytesFail) {
  std::mt19937_64 rng(12345);
  for (int iter = 0; iter < 1000; ++iter) {
    // Half of the lengths are whole words, so the framing checks alone do not reject them.
    size_t len = rng() % 512;
    if (iter % 2 == 0) len &= ~size_t{7};
    std::string bytes(len, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    ASSERT_EQ(decode_as_everything(bytes), 0) << "iteration " << iter;
  }
}

TEST(CodecTest, GarbageSegmentsNeverCrash) {
  // A valid one-segment header followed by random words: exercises the pointer checks. Such
  // input may occasionally decode into some message; it must never crash or throw.
  std::mt19937_64 rng(777);
  for (int iter = 0; iter < 1000; ++iter) {
    const uint32_t words = 1 + static_cast<uint32_t>(rng() % 64);
    std::string bytes(8 + 8 * size_t{words}, '\0');
    const uint32_t header[2] = {0, words};
    std::memcpy(&bytes[0], header, sizeof(header));
    for (size_t i = 8; i < bytes.size(); ++i) bytes[i] = static_cast<char>(rng());
    decode_as_everything(bytes);
  }
}

TEST(CodecTest, BitFlipsNeverCrash) {
  const std::string original = encode(sample_train_batch());
  std::mt19937_64 rng(4242);
  for (int iter = 0; iter < 1000; ++iter) {
    std::string bytes = original;
    for (int f = 0; f < 1 + iter % 4; ++f) {
      bytes[rng() % bytes.size()] ^= static_cast<char>(1u << (rng() % 8));
    }
    TrainBatch batch;
    (void)decode(bytes, &batch);
  }
}

TEST(CodecTest, WrongKindFails) {
  const std::string bytes = encode(sample_heartbeat());
  LeaseRequest lease;
  Status s = decode(bytes, &lease);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("Heartbeat"), std::string::npos) << s;
  EXPECT_NE(s.message().find("LeaseRequest"), std::string::npos) << s;
  EXPECT_EQ(decode_as_everything(bytes), 2);  // peek_kind and decode as Heartbeat
}

TEST(CodecTest, WrongSchemaVersionFails) {
  // One segment: [segment table word][root pointer][root data: schemaVersion u32 | union tag].
  std::string bytes = encode(sample_heartbeat());
  uint32_t version = 0;
  std::memcpy(&version, &bytes[16], sizeof(version));
  ASSERT_EQ(version, kSchemaVersion);
  version = kSchemaVersion + 1;
  std::memcpy(&bytes[16], &version, sizeof(version));
  Heartbeat hb;
  Status s = decode(bytes, &hb);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("schema version"), std::string::npos) << s;
  EXPECT_FALSE(peek_kind(bytes).ok());
}

TEST(CodecTest, UnknownUnionMemberFails) {
  std::string bytes = encode(sample_heartbeat());
  const uint16_t tag = 200;  // a union member from some future schema
  std::memcpy(&bytes[20], &tag, sizeof(tag));
  StatusOr<MessageKind> kind = peek_kind(bytes);
  ASSERT_FALSE(kind.ok());
  EXPECT_EQ(kind.status().code(), StatusCode::kInvalidArgument) << kind.status();
}

TEST(CodecTest, TraversalLimitExceededFails) {
  const std::string bytes = encode(sample_train_batch());
  TrainBatch batch;
  DecodeOptions tight;
  tight.traversal_limit_words = 64;
  Status s = decode(bytes, &batch, tight);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
  EXPECT_TRUE(decode(bytes, &batch).ok());
}

TEST(CodecTest, NestingLimitExceededFails) {
  const std::string bytes = encode(sample_train_batch());
  TrainBatch batch;
  DecodeOptions shallow;
  shallow.nesting_limit = 2;
  Status s = decode(bytes, &batch, shallow);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
}

TEST(CodecTest, OversizedMessageFails) {
  const std::string bytes = encode(sample_chunk());
  WeightChunk chunk;
  DecodeOptions small;
  small.max_message_bytes = 512;
  Status s = decode(bytes, &chunk, small);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_FALSE(peek_kind(bytes, small).ok());
}

TEST(CodecTest, MismatchedCompletionLengthsFail) {
  for (int which = 0; which < 3; ++which) {
    RolloutGroup group = sample_rollout_group();
    Completion& c = group.completions[2];
    if (which == 0) c.token_ids.pop_back();
    if (which == 1) c.logprobs.push_back(0.0f);
    if (which == 2) c.versions.clear();
    RolloutGroup decoded;
    Status s = decode(encode(group), &decoded);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("completion 2"), std::string::npos) << s;

    ScoredGroup scored = sample_scored_group();
    scored.rollout = group;
    ScoredGroup decoded_scored;
    EXPECT_EQ(decode(encode(scored), &decoded_scored).code(), StatusCode::kInvalidArgument);

    TrainBatch batch = sample_train_batch();
    batch.groups[1] = scored;
    TrainBatch decoded_batch;
    EXPECT_EQ(decode(encode(batch), &decoded_batch).code(), StatusCode::kInvalidArgument);
  }
}

TEST(CodecTest, RewardCountMismatchFails) {
  ScoredGroup scored = sample_scored_group();
  scored.rewards.pop_back();
  ScoredGroup decoded;
  Status s = decode(encode(scored), &decoded);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
}

// ---------------------------------------------------------------------------------------------
// Checksums and weight chunks.

TEST(CodecTest, Checksum64IsXxh64Seed0) {
  EXPECT_EQ(checksum64(""), 0xEF46DB3751D8E999ull);  // the XXH64 test vector of empty input
  EXPECT_NE(checksum64("abc"), checksum64("abd"));
  EXPECT_EQ(checksum64(std::string("a\0b", 3)), checksum64(std::string("a\0b", 3)));
}

std::string make_blob(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string blob(n, '\0');
  for (char& c : blob) c = static_cast<char>(rng());
  return blob;
}

TEST(CodecTest, MakeChunksFillsManifest) {
  const std::string blob = make_blob(10000, 1);
  WeightManifest manifest;
  manifest.tensors.push_back({"w", {100, 100}, "u8", 0, 10000});
  std::vector<WeightChunk> chunks = make_chunks(5, blob, 3000, &manifest);
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(manifest.version, 5u);
  EXPECT_EQ(manifest.total_bytes, 10000u);
  EXPECT_EQ(manifest.chunk_bytes, 3000u);
  EXPECT_EQ(manifest.tensors.size(), 1u);  // left to the caller
  ASSERT_EQ(manifest.chunk_checksums.size(), 4u);
  std::string joined;
  for (uint32_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].version, 5u);
    EXPECT_EQ(chunks[i].index, i);
    EXPECT_EQ(chunks[i].checksum, checksum64(chunks[i].data));
    EXPECT_EQ(manifest.chunk_checksums[i], chunks[i].checksum);
    joined += chunks[i].data;
  }
  EXPECT_EQ(chunks.back().data.size(), 1000u);
  EXPECT_EQ(joined, blob);
}

TEST(CodecTest, AssemblerReassemblesShuffledChunksWithDuplicate) {
  const std::string blob = make_blob(100003, 2);
  WeightManifest manifest;
  std::vector<WeightChunk> chunks = make_chunks(8, blob, 4096, &manifest);
  ASSERT_EQ(chunks.size(), 25u);
  chunks.push_back(chunks[3]);  // a duplicate
  std::shuffle(chunks.begin(), chunks.end(), std::mt19937_64(3));

  // Through the wire as well, like the broadcaster does.
  WeightManifest received_manifest;
  ASSERT_TRUE(decode(encode(manifest), &received_manifest).ok());
  WeightAssembler assembler;
  ASSERT_TRUE(assembler.begin(received_manifest).ok());
  EXPECT_EQ(assembler.chunks_total(), 25u);
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_FALSE(assembler.complete());
    WeightChunk received;
    ASSERT_TRUE(decode(encode(chunks[i]), &received).ok());
    Status s = assembler.add_chunk(received);
    ASSERT_TRUE(s.ok()) << s;
  }
  EXPECT_TRUE(assembler.complete());
  EXPECT_EQ(assembler.chunks_received(), 25u);
  EXPECT_TRUE(assembler.missing_chunks().empty());
  StatusOr<std::string> out = assembler.take_blob();
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, blob);
  EXPECT_FALSE(assembler.started());
}

TEST(CodecTest, AssemblerRejectsCorruptChunkThenAcceptsResend) {
  const std::string blob = make_blob(9000, 4);
  WeightManifest manifest;
  std::vector<WeightChunk> chunks = make_chunks(3, blob, 4000, &manifest);
  WeightAssembler assembler;
  ASSERT_TRUE(assembler.begin(manifest).ok());
  ASSERT_TRUE(assembler.add_chunk(chunks[0]).ok());

  WeightChunk corrupt = chunks[1];
  corrupt.data[17] ^= 0x40;  // bit rot in flight; the chunk's own checksum is the original one
  Status s = assembler.add_chunk(corrupt);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
  WeightChunk consistent_but_wrong = corrupt;  // checksum recomputed by a faulty sender
  consistent_but_wrong.checksum = checksum64(corrupt.data);
  EXPECT_EQ(assembler.add_chunk(consistent_but_wrong).code(), StatusCode::kDataLoss);
  WeightChunk short_chunk = chunks[1];
  short_chunk.data.pop_back();
  EXPECT_EQ(assembler.add_chunk(short_chunk).code(), StatusCode::kDataLoss);
  EXPECT_EQ(assembler.missing_chunks(), (std::vector<uint32_t>{1, 2}));

  ASSERT_TRUE(assembler.add_chunk(chunks[2]).ok());
  EXPECT_FALSE(assembler.complete());
  EXPECT_EQ(assembler.take_blob().status().code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(assembler.add_chunk(chunks[1]).ok());  // fetched again
  ASSERT_TRUE(assembler.complete());
  StatusOr<std::string> out = assembler.take_blob();
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, blob);
}

TEST(CodecTest, AssemblerRejectsOtherVersionAndBadIndex) {
  const std::string blob = make_blob(5000, 5);
  WeightManifest manifest;
  std::vector<WeightChunk> chunks = make_chunks(10, blob, 1000, &manifest);
  WeightAssembler assembler;
  EXPECT_EQ(assembler.add_chunk(chunks[0]).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(assembler.begin(manifest).ok());
  WeightChunk other_version = chunks[0];
  other_version.version = 9;
  EXPECT_EQ(assembler.add_chunk(other_version).code(), StatusCode::kInvalidArgument);
  WeightChunk bad_index = chunks[0];
  bad_index.index = 5;
  EXPECT_EQ(assembler.add_chunk(bad_index).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(assembler.chunks_received(), 0u);
}

TEST(CodecTest, AssemblerRejectsInconsistentManifest) {
  WeightManifest manifest;
  make_chunks(1, make_blob(5000, 6), 1000, &manifest);
  WeightAssembler assembler;

  WeightManifest few_checksums = manifest;
  few_checksums.chunk_checksums.pop_back();
  EXPECT_EQ(assembler.begin(few_checksums).code(), StatusCode::kInvalidArgument);

  WeightManifest zero_chunk = manifest;
  zero_chunk.chunk_bytes = 0;
  EXPECT_EQ(assembler.begin(zero_chunk).code(), StatusCode::kInvalidArgument);

  WeightManifest outside = manifest;
  outside.tensors.push_back({"w", {10}, "f32", 4990, 40});
  EXPECT_EQ(assembler.begin(outside).code(), StatusCode::kInvalidArgument);

  WeightAssembler small(4096);
  EXPECT_EQ(small.begin(manifest).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(small.started());
  EXPECT_TRUE(assembler.begin(manifest).ok());
}

TEST(CodecTest, AssemblerEmptyBlobIsCompleteAtOnce) {
  WeightManifest manifest;
  EXPECT_TRUE(make_chunks(4, "", 1024, &manifest).empty());
  WeightAssembler assembler;
  ASSERT_TRUE(assembler.begin(manifest).ok());
  EXPECT_TRUE(assembler.complete());
  StatusOr<std::string> out = assembler.take_blob();
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(out->empty());
}

TEST(CodecTest, AssemblerBeginDiscardsPartialVersion) {
  WeightManifest m1, m2;
  std::vector<WeightChunk> c1 = make_chunks(1, make_blob(3000, 7), 1000, &m1);
  const std::string blob2 = make_blob(2500, 8);
  std::vector<WeightChunk> c2 = make_chunks(2, blob2, 1000, &m2);
  WeightAssembler assembler;
  ASSERT_TRUE(assembler.begin(m1).ok());
  ASSERT_TRUE(assembler.add_chunk(c1[0]).ok());
  ASSERT_TRUE(assembler.begin(m2).ok());
  EXPECT_EQ(assembler.version(), 2u);
  EXPECT_EQ(assembler.add_chunk(c1[1]).code(), StatusCode::kInvalidArgument);
  for (const WeightChunk& c : c2) ASSERT_TRUE(assembler.add_chunk(c).ok());
  StatusOr<std::string> out = assembler.take_blob();
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, blob2);
}

}  // namespace
}  // namespace grpo::cluster
