// Cap'n Proto <-> value type conversion. The only place that sees the generated wire types; every
// kj::Exception raised while reading is converted to a Status here.
#include "cluster/codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/array.h>
#include <kj/exception.h>
#include <kj/io.h>
#include <sys/mman.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <utility>

#include "messages.capnp.h"

namespace grpo::cluster {
namespace {

namespace w = ::grpo::cluster::wire;
using Body = w::Envelope::Body;

// ---------------------------------------------------------------------------------------------
// Value type -> wire.

capnp::Text::Reader text_of(const std::string& s) {
  // std::string storage is NUL-terminated, as capnp::Text::Reader requires; embedded NULs and
  // bytes that are not UTF-8 survive because the length travels with the text.
  return capnp::Text::Reader(s.c_str(), s.size());
}

capnp::Data::Reader data_of(const std::string& s) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

template <typename ListBuilder, typename T>
void copy_list(ListBuilder list, const std::vector<T>& values) {
  for (size_t i = 0; i < values.size(); ++i) list.set(static_cast<unsigned>(i), values[i]);
}

void copy_text_list(capnp::List<capnp::Text>::Builder list, const std::vector<std::string>& values) {
  for (size_t i = 0; i < values.size(); ++i) list.set(static_cast<unsigned>(i), text_of(values[i]));
}

void to_wire(const SamplingParams& m, w::SamplingParams::Builder b) {
  b.setTemperature(m.temperature);
  b.setTopP(m.top_p);
  b.setTopK(m.top_k);
  b.setMaxNewTokens(m.max_new_tokens);
}

void to_wire(const LeaseRequest& m, w::LeaseRequest::Builder b) {
  b.setWorkerId(m.worker_id);
  b.setPolicyVersion(m.policy_version);
  b.setMaxGroups(m.max_groups);
  b.setRestarted(m.restarted);
  b.setEpoch(m.epoch);
  b.setRetry(m.retry);
}

void to_wire(const PromptLease& m, w::PromptLease::Builder b) {
  b.setGroupId(m.group_id);
  b.setPromptIndex(m.prompt_index);
  b.setPrompt(text_of(m.prompt));
  b.setAnswer(text_of(m.answer));
  b.setGroupSize(m.group_size);
  b.setMinVersion(m.min_version);
  b.setDeadlineMs(m.deadline_ms);
  b.setSeed(m.seed);
  to_wire(m.sampling, b.initSampling());
}

void to_wire(const Completion& m, w::Completion::Builder b) {
  copy_list(b.initTokenIds(static_cast<unsigned>(m.token_ids.size())), m.token_ids);
  copy_list(b.initLogprobs(static_cast<unsigned>(m.logprobs.size())), m.logprobs);
  copy_list(b.initVersions(static_cast<unsigned>(m.versions.size())), m.versions);
  b.setText(text_of(m.text));
  b.setFinished(m.finished);
}

void to_wire(const RolloutGroup& m, w::RolloutGroup::Builder b) {
  b.setGroupId(m.group_id);
  b.setGeneratorId(m.generator_id);
  b.setPrompt(text_of(m.prompt));
  b.setAnswer(text_of(m.answer));
  copy_list(b.initPromptIds(static_cast<unsigned>(m.prompt_ids.size())), m.prompt_ids);
  auto completions = b.initCompletions(static_cast<unsigned>(m.completions.size()));
  for (size_t i = 0; i < m.completions.size(); ++i) {
    to_wire(m.completions[i], completions[static_cast<unsigned>(i)]);
  }
}

void to_wire(const RewardBreakdown& m, w::RewardBreakdown::Builder b) {
  b.setTotal(m.total);
  b.setAccuracy(m.accuracy);
  b.setFormat(m.format);
  b.setLanguage(m.language);
  b.setLength(m.length);
  b.setCorrect(m.correct);
}

void to_wire(const ScoredGroup& m, w::ScoredGroup::Builder b) {
  to_wire(m.rollout, b.initRollout());
  auto rewards = b.initRewards(static_cast<unsigned>(m.rewards.size()));
  for (size_t i = 0; i < m.rewards.size(); ++i) {
    to_wire(m.rewards[i], rewards[static_cast<unsigned>(i)]);
  }
  b.setVerifierId(m.verifier_id);
}

void to_wire(const TrainBatchRequest& m, w::TrainBatchRequest::Builder b) {
  b.setLearnerId(m.learner_id);
  b.setStep(m.step);
  b.setMinVersion(m.min_version);
  b.setNumGroups(m.num_groups);
}

void to_wire(const TrainBatch& m, w::TrainBatch::Builder b) {
  b.setStep(m.step);
  b.setDropped(m.dropped);
  auto groups = b.initGroups(static_cast<unsigned>(m.groups.size()));
  for (size_t i = 0; i < m.groups.size(); ++i) to_wire(m.groups[i], groups[static_cast<unsigned>(i)]);
}

void to_wire(const TensorMeta& m, w::TensorMeta::Builder b) {
  b.setName(text_of(m.name));
  copy_list(b.initShape(static_cast<unsigned>(m.shape.size())), m.shape);
  b.setDtype(text_of(m.dtype));
  b.setOffset(m.offset);
  b.setNbytes(m.nbytes);
}

void to_wire(const WeightManifest& m, w::WeightManifest::Builder b) {
  b.setVersion(m.version);
  auto tensors = b.initTensors(static_cast<unsigned>(m.tensors.size()));
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    to_wire(m.tensors[i], tensors[static_cast<unsigned>(i)]);
  }
  b.setTotalBytes(m.total_bytes);
  b.setChunkBytes(m.chunk_bytes);
  copy_list(b.initChunkChecksums(static_cast<unsigned>(m.chunk_checksums.size())),
            m.chunk_checksums);
  copy_text_list(b.initRelay(static_cast<unsigned>(m.relay.size())), m.relay);
}

void to_wire(const WeightChunkRequest& m, w::WeightChunkRequest::Builder b) {
  b.setVersion(m.version);
  b.setWorkerId(m.worker_id);
  copy_list(b.initIndices(static_cast<unsigned>(m.indices.size())), m.indices);
}

void to_wire(const WeightChunk& m, w::WeightChunk::Builder b) {
  b.setVersion(m.version);
  b.setIndex(m.index);
  b.setChecksum(m.checksum);
  b.setData(data_of(m.data));
}

void to_wire(const Heartbeat& m, w::Heartbeat::Builder b) {
  b.setRole(text_of(m.role));
  b.setWorkerId(m.worker_id);
  b.setEpoch(m.epoch);
  b.setPolicyVersion(m.policy_version);
  b.setTimestampMs(m.timestamp_ms);
  b.setInFlight(m.in_flight);
  b.setStep(m.step);
  b.setGroupsRetired(m.groups_retired);
  b.setGroupsStored(m.groups_stored);
  b.setLeasesCompleted(m.leases_completed);
  copy_list(b.initStoredIds(static_cast<unsigned>(m.stored_ids.size())), m.stored_ids);
}

void to_wire(const LeaseGrant& m, w::LeaseGrant::Builder b) {
  b.setWorkerId(m.worker_id);
  auto leases = b.initLeases(static_cast<unsigned>(m.leases.size()));
  for (size_t i = 0; i < m.leases.size(); ++i) to_wire(m.leases[i], leases[static_cast<unsigned>(i)]);
  b.setRetire(m.retire);
  b.setVerifiers(m.verifiers);
}

void to_wire(const AdminRequest& m, w::AdminRequest::Builder b) {
  b.setCommand(text_of(m.command));
  b.setRole(text_of(m.role));
  b.setCount(m.count);
}

void to_wire(const MemberInfo& m, w::MemberInfo::Builder b) {
  b.setRole(text_of(m.role));
  b.setWorkerId(m.worker_id);
  b.setEpoch(m.epoch);
  b.setState(text_of(m.state));
  b.setLastSeenMsAgo(m.last_seen_ms_ago);
  b.setPolicyVersion(m.policy_version);
  b.setInFlight(m.in_flight);
  b.setLeasesCompleted(m.leases_completed);
}

void to_wire(const AdminReply& m, w::AdminReply::Builder b) {
  b.setOk(m.ok);
  b.setError(text_of(m.error));
  b.setRunState(text_of(m.run_state));
  b.setLearnerStep(m.learner_step);
  b.setTotalSteps(m.total_steps);
  b.setLeasesIssued(m.leases_issued);
  b.setLeasesCompleted(m.leases_completed);
  b.setLeasesInFlight(m.leases_in_flight);
  b.setGroupsStored(m.groups_stored);
  b.setGroupsRetired(m.groups_retired);
  b.setDesiredGenerators(m.desired_generators);
  b.setDesiredVerifiers(m.desired_verifiers);
  auto members = b.initMembers(static_cast<unsigned>(m.members.size()));
  for (size_t i = 0; i < m.members.size(); ++i) to_wire(m.members[i], members[static_cast<unsigned>(i)]);
  b.setEpoch(m.epoch);
  b.setMessage(text_of(m.message));
  b.setLeasesAwaitingStorage(m.leases_awaiting_storage);
}

void to_wire(const StoredQuery& m, w::StoredQuery::Builder b) {
  copy_list(b.initIds(static_cast<unsigned>(m.ids.size())), m.ids);
}

// Initializes the body member of `m`'s kind.
w::LeaseRequest::Builder init_body(Body::Builder b, const LeaseRequest*) { return b.initLeaseRequest(); }
w::PromptLease::Builder init_body(Body::Builder b, const PromptLease*) { return b.initPromptLease(); }
w::RolloutGroup::Builder init_body(Body::Builder b, const RolloutGroup*) { return b.initRolloutGroup(); }
w::ScoredGroup::Builder init_body(Body::Builder b, const ScoredGroup*) { return b.initScoredGroup(); }
w::TrainBatchRequest::Builder init_body(Body::Builder b, const TrainBatchRequest*) {
  return b.initTrainBatchRequest();
}
w::TrainBatch::Builder init_body(Body::Builder b, const TrainBatch*) { return b.initTrainBatch(); }
w::WeightManifest::Builder init_body(Body::Builder b, const WeightManifest*) {
  return b.initWeightManifest();
}
w::WeightChunk::Builder init_body(Body::Builder b, const WeightChunk*) { return b.initWeightChunk(); }
w::Heartbeat::Builder init_body(Body::Builder b, const Heartbeat*) { return b.initHeartbeat(); }
w::LeaseGrant::Builder init_body(Body::Builder b, const LeaseGrant*) { return b.initLeaseGrant(); }
w::AdminRequest::Builder init_body(Body::Builder b, const AdminRequest*) { return b.initAdminRequest(); }
w::AdminReply::Builder init_body(Body::Builder b, const AdminReply*) { return b.initAdminReply(); }
w::WeightChunkRequest::Builder init_body(Body::Builder b, const WeightChunkRequest*) {
  return b.initWeightChunkRequest();
}
w::StoredQuery::Builder init_body(Body::Builder b, const StoredQuery*) { return b.initStoredQuery(); }

// NCCL group set-up (cluster/nccl_group.h): value type -> wire.
void to_wire(const NcclGroupRequest& m, w::NcclGroupRequest::Builder b) {
  b.setEpoch(m.epoch);
  b.setMember(text_of(m.member));
  b.setUniqueId(data_of(m.unique_id));
  copy_text_list(b.initMembers(static_cast<unsigned>(m.members.size())), m.members);
  b.setPieceBytes(m.piece_bytes);
}
void to_wire(const NcclGroup& m, w::NcclGroup::Builder b) {
  b.setEpoch(m.epoch);
  b.setUniqueId(data_of(m.unique_id));
  copy_text_list(b.initMembers(static_cast<unsigned>(m.members.size())), m.members);
  b.setPieceBytes(m.piece_bytes);
  b.setRank(m.rank);
  b.setError(text_of(m.error));
}
w::NcclGroupRequest::Builder init_body(Body::Builder b, const NcclGroupRequest*) { return b.initNcclGroupRequest(); }
w::NcclGroup::Builder init_body(Body::Builder b, const NcclGroup*) { return b.initNcclGroup(); }

// Serializes the builder as an unpacked flat array straight into a std::string.
std::string to_bytes(capnp::MessageBuilder& builder) {
  const size_t words = capnp::computeSerializedSizeInWords(builder);
  std::string out(words * sizeof(capnp::word), '\0');
  kj::ArrayOutputStream stream(kj::arrayPtr(reinterpret_cast<kj::byte*>(&out[0]), out.size()));
  capnp::writeMessage(stream, builder);
  return out;
}

template <typename T>
std::string encode_message(const T& m, size_t first_segment_words) {
  try {
    capnp::MallocMessageBuilder builder(static_cast<unsigned>(first_segment_words));
    auto envelope = builder.initRoot<w::Envelope>();
    envelope.setSchemaVersion(kSchemaVersion);
    to_wire(m, init_body(envelope.initBody(), &m));
    return to_bytes(builder);
  } catch (const kj::Exception& e) {
    // Only a field beyond Cap'n Proto's limits (2^29 list elements or blob bytes) gets here.
    check_failed(__FILE__, __LINE__, "encode", e.getDescription().cStr());
  }
}

// ---------------------------------------------------------------------------------------------
// Wire -> value type. Each pointer field is read exactly once, so a well-formed message costs
// about its own size in traversal words.

std::string from_text(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

// A list of group ids (Heartbeat.stored_ids, StoredQuery.ids) longer than kMaxReportedGroupIds is
// refused before it is copied.
Status check_group_ids(size_t n, const char* what) {
  if (n <= kMaxReportedGroupIds) return ok_status();
  return invalid_argument(std::string(what) + ": " + std::to_string(n) + " group ids, more than the limit of " +
                          std::to_string(kMaxReportedGroupIds));
}

template <typename T, typename ListReader>
std::vector<T> from_list(ListReader list) {
  std::vector<T> out;
  out.reserve(list.size());
  for (auto v : list) out.push_back(v);
  return out;
}

void from_wire(w::SamplingParams::Reader r, SamplingParams* m) {
  m->temperature = r.getTemperature();
  m->top_p = r.getTopP();
  m->top_k = r.getTopK();
  m->max_new_tokens = r.getMaxNewTokens();
}

Status from_wire(w::LeaseRequest::Reader r, LeaseRequest* m) {
  m->worker_id = r.getWorkerId();
  m->policy_version = r.getPolicyVersion();
  m->max_groups = r.getMaxGroups();
  m->restarted = r.getRestarted();
  m->epoch = r.getEpoch();
  m->retry = r.getRetry();
  return ok_status();
}

Status from_wire(w::PromptLease::Reader r, PromptLease* m) {
  m->group_id = r.getGroupId();
  m->prompt_index = r.getPromptIndex();
  m->prompt = from_text(r.getPrompt());
  m->answer = from_text(r.getAnswer());
  m->group_size = r.getGroupSize();
  m->min_version = r.getMinVersion();
  m->deadline_ms = r.getDeadlineMs();
  m->seed = r.getSeed();
  from_wire(r.getSampling(), &m->sampling);
  return ok_status();
}

Status from_wire(w::Completion::Reader r, Completion* m) {
  m->token_ids = from_list<int32_t>(r.getTokenIds());
  m->logprobs = from_list<float>(r.getLogprobs());
  m->versions = from_list<uint64_t>(r.getVersions());
  m->text = from_text(r.getText());
  m->finished = r.getFinished();
  if (m->token_ids.size() != m->logprobs.size() || m->token_ids.size() != m->versions.size()) {
    return invalid_argument("completion has " + std::to_string(m->token_ids.size()) +
                            " token_ids but " + std::to_string(m->logprobs.size()) +
                            " logprobs and " + std::to_string(m->versions.size()) + " versions");
  }
  return ok_status();
}

Status from_wire(w::RolloutGroup::Reader r, RolloutGroup* m) {
  m->group_id = r.getGroupId();
  m->generator_id = r.getGeneratorId();
  m->prompt = from_text(r.getPrompt());
  m->answer = from_text(r.getAnswer());
  m->prompt_ids = from_list<int32_t>(r.getPromptIds());
  auto completions = r.getCompletions();
  m->completions.clear();
  m->completions.resize(completions.size());
  for (unsigned i = 0; i < completions.size(); ++i) {
    Status s = from_wire(completions[i], &m->completions[i]);
    if (!s.ok()) {
      return s.with_context("group " + std::to_string(m->group_id) + " completion " +
                            std::to_string(i));
    }
  }
  return ok_status();
}

void from_wire(w::RewardBreakdown::Reader r, RewardBreakdown* m) {
  m->total = r.getTotal();
  m->accuracy = r.getAccuracy();
  m->format = r.getFormat();
  m->language = r.getLanguage();
  m->length = r.getLength();
  m->correct = r.getCorrect();
}

Status from_wire(w::ScoredGroup::Reader r, ScoredGroup* m) {
  GRPO_RETURN_IF_ERROR(from_wire(r.getRollout(), &m->rollout));
  auto rewards = r.getRewards();
  m->rewards.clear();
  m->rewards.resize(rewards.size());
  for (unsigned i = 0; i < rewards.size(); ++i) from_wire(rewards[i], &m->rewards[i]);
  m->verifier_id = r.getVerifierId();
  if (m->rewards.size() != m->rollout.completions.size()) {
    return invalid_argument("scored group " + std::to_string(m->rollout.group_id) + " has " +
                            std::to_string(m->rewards.size()) + " rewards for " +
                            std::to_string(m->rollout.completions.size()) + " completions");
  }
  return ok_status();
}

Status from_wire(w::TrainBatchRequest::Reader r, TrainBatchRequest* m) {
  m->learner_id = r.getLearnerId();
  m->step = r.getStep();
  m->min_version = r.getMinVersion();
  m->num_groups = r.getNumGroups();
  return ok_status();
}

Status from_wire(w::TrainBatch::Reader r, TrainBatch* m) {
  m->step = r.getStep();
  m->dropped = r.getDropped();
  auto groups = r.getGroups();
  m->groups.clear();
  m->groups.resize(groups.size());
  for (unsigned i = 0; i < groups.size(); ++i) {
    GRPO_RETURN_IF_ERROR(from_wire(groups[i], &m->groups[i]));
  }
  return ok_status();
}

void from_wire(w::TensorMeta::Reader r, TensorMeta* m) {
  m->name = from_text(r.getName());
  m->shape = from_list<int64_t>(r.getShape());
  m->dtype = from_text(r.getDtype());
  m->offset = r.getOffset();
  m->nbytes = r.getNbytes();
}

Status from_wire(w::WeightManifest::Reader r, WeightManifest* m) {
  m->version = r.getVersion();
  auto tensors = r.getTensors();
  m->tensors.clear();
  m->tensors.resize(tensors.size());
  for (unsigned i = 0; i < tensors.size(); ++i) from_wire(tensors[i], &m->tensors[i]);
  m->total_bytes = r.getTotalBytes();
  m->chunk_bytes = r.getChunkBytes();
  m->chunk_checksums = from_list<uint64_t>(r.getChunkChecksums());
  m->relay.clear();
  for (auto t : r.getRelay()) m->relay.push_back(from_text(t));
  return ok_status();
}

Status from_wire(w::WeightChunkRequest::Reader r, WeightChunkRequest* m) {
  m->version = r.getVersion();
  m->worker_id = r.getWorkerId();
  m->indices = from_list<uint32_t>(r.getIndices());
  return ok_status();
}

Status from_wire(w::WeightChunk::Reader r, WeightChunk* m) {
  m->version = r.getVersion();
  m->index = r.getIndex();
  m->checksum = r.getChecksum();
  auto data = r.getData();
  m->data.assign(reinterpret_cast<const char*>(data.begin()), data.size());
  return ok_status();
}

Status from_wire(w::WeightChunk::Reader r, WeightChunkView* m) {
  m->version = r.getVersion();
  m->index = r.getIndex();
  m->checksum = r.getChecksum();
  auto data = r.getData();
  m->data = std::string_view(reinterpret_cast<const char*>(data.begin()), data.size());
  return ok_status();
}

Status from_wire(w::Heartbeat::Reader r, Heartbeat* m) {
  m->role = from_text(r.getRole());
  m->worker_id = r.getWorkerId();
  m->epoch = r.getEpoch();
  m->policy_version = r.getPolicyVersion();
  m->timestamp_ms = r.getTimestampMs();
  m->in_flight = r.getInFlight();
  m->step = r.getStep();
  m->groups_retired = r.getGroupsRetired();
  m->groups_stored = r.getGroupsStored();
  m->leases_completed = r.getLeasesCompleted();
  GRPO_RETURN_IF_ERROR(check_group_ids(r.getStoredIds().size(), "heartbeat's stored ids"));
  m->stored_ids = from_list<uint64_t>(r.getStoredIds());
  return ok_status();
}

Status from_wire(w::StoredQuery::Reader r, StoredQuery* m) {
  GRPO_RETURN_IF_ERROR(check_group_ids(r.getIds().size(), "stored query"));
  m->ids = from_list<uint64_t>(r.getIds());
  return ok_status();
}

Status from_wire(w::LeaseGrant::Reader r, LeaseGrant* m) {
  m->worker_id = r.getWorkerId();
  m->leases.clear();
  m->leases.reserve(r.getLeases().size());
  for (auto l : r.getLeases()) {
    PromptLease lease;
    GRPO_RETURN_IF_ERROR(from_wire(l, &lease));
    m->leases.push_back(std::move(lease));
  }
  m->retire = r.getRetire();
  m->verifiers = r.getVerifiers();
  return ok_status();
}

Status from_wire(w::AdminRequest::Reader r, AdminRequest* m) {
  m->command = from_text(r.getCommand());
  m->role = from_text(r.getRole());
  m->count = r.getCount();
  return ok_status();
}

Status from_wire(w::AdminReply::Reader r, AdminReply* m) {
  m->ok = r.getOk();
  m->error = from_text(r.getError());
  m->run_state = from_text(r.getRunState());
  m->learner_step = r.getLearnerStep();
  m->total_steps = r.getTotalSteps();
  m->leases_issued = r.getLeasesIssued();
  m->leases_completed = r.getLeasesCompleted();
  m->leases_in_flight = r.getLeasesInFlight();
  m->groups_stored = r.getGroupsStored();
  m->groups_retired = r.getGroupsRetired();
  m->desired_generators = r.getDesiredGenerators();
  m->desired_verifiers = r.getDesiredVerifiers();
  m->members.clear();
  for (auto mr : r.getMembers()) {
    MemberInfo info;
    info.role = from_text(mr.getRole());
    info.worker_id = mr.getWorkerId();
    info.epoch = mr.getEpoch();
    info.state = from_text(mr.getState());
    info.last_seen_ms_ago = mr.getLastSeenMsAgo();
    info.policy_version = mr.getPolicyVersion();
    info.in_flight = mr.getInFlight();
    info.leases_completed = mr.getLeasesCompleted();
    m->members.push_back(std::move(info));
  }
  m->epoch = r.getEpoch();
  m->message = from_text(r.getMessage());
  m->leases_awaiting_storage = r.getLeasesAwaitingStorage();
  return ok_status();
}

// NCCL group set-up (cluster/nccl_group.h): wire -> value type, sizes checked before copying.
Status nccl_id_from_wire(capnp::Data::Reader id, std::string* out) {
  if (id.size() != 0 && id.size() != kNcclUniqueIdBytes)
    return invalid_argument("NCCL unique id of " + std::to_string(id.size()) + " bytes, not " +
                            std::to_string(kNcclUniqueIdBytes));
  out->assign(reinterpret_cast<const char*>(id.begin()), id.size());
  return ok_status();
}
Status nccl_member_name_ok(size_t bytes) {
  if (bytes <= kMaxNcclMemberNameBytes) return ok_status();
  return invalid_argument("NCCL group member name of " + std::to_string(bytes) + " bytes, more than " +
                          std::to_string(kMaxNcclMemberNameBytes));
}
Status nccl_members_from_wire(capnp::List<capnp::Text>::Reader list, std::vector<std::string>* out) {
  if (list.size() > kMaxNcclGroupMembers)
    return invalid_argument(std::to_string(list.size()) + " NCCL group members, more than the limit of " +
                            std::to_string(kMaxNcclGroupMembers));
  out->clear();
  out->reserve(list.size());
  for (auto t : list) {
    GRPO_RETURN_IF_ERROR(nccl_member_name_ok(t.size()));
    out->push_back(from_text(t));
  }
  return ok_status();
}
Status nccl_piece_bytes_ok(uint64_t piece_bytes) {
  if (piece_bytes <= kMaxNcclPieceBytes) return ok_status();
  return invalid_argument("NCCL piece_bytes " + std::to_string(piece_bytes) + " above the limit of " +
                          std::to_string(kMaxNcclPieceBytes));
}
Status from_wire(w::NcclGroupRequest::Reader r, NcclGroupRequest* m) {
  m->epoch = r.getEpoch();
  GRPO_RETURN_IF_ERROR(nccl_member_name_ok(r.getMember().size()));
  m->member = from_text(r.getMember());
  GRPO_RETURN_IF_ERROR(nccl_id_from_wire(r.getUniqueId(), &m->unique_id));
  GRPO_RETURN_IF_ERROR(nccl_members_from_wire(r.getMembers(), &m->members));
  m->piece_bytes = r.getPieceBytes();
  return nccl_piece_bytes_ok(m->piece_bytes);
}
Status from_wire(w::NcclGroup::Reader r, NcclGroup* m) {
  m->epoch = r.getEpoch();
  GRPO_RETURN_IF_ERROR(nccl_id_from_wire(r.getUniqueId(), &m->unique_id));
  GRPO_RETURN_IF_ERROR(nccl_members_from_wire(r.getMembers(), &m->members));
  m->piece_bytes = r.getPieceBytes();
  GRPO_RETURN_IF_ERROR(nccl_piece_bytes_ok(m->piece_bytes));
  m->rank = r.getRank();
  auto error = r.getError();
  if (error.size() > kMaxNcclErrorBytes)
    return invalid_argument("NCCL group error text of " + std::to_string(error.size()) + " bytes, more than " +
                            std::to_string(kMaxNcclErrorBytes));
  m->error = from_text(error);
  if (m->rank < -1 || (m->rank >= 0 && static_cast<size_t>(m->rank) >= m->members.size()))
    return invalid_argument("NCCL group rank " + std::to_string(m->rank) + " not in [-1, " +
                            std::to_string(m->members.size()) + ")");
  if (m->rank >= 0 && m->unique_id.empty()) return invalid_argument("NCCL group gives rank " + std::to_string(m->rank) + " without a unique id");
  return ok_status();
}
w::NcclGroupRequest::Reader get_body(Body::Reader b, const NcclGroupRequest*) { return b.getNcclGroupRequest(); }
w::NcclGroup::Reader get_body(Body::Reader b, const NcclGroup*) { return b.getNcclGroup(); }
constexpr MessageKind kind_constant(const NcclGroupRequest*) { return MessageKind::kNcclGroupRequest; }
constexpr MessageKind kind_constant(const NcclGroup*) { return MessageKind::kNcclGroup; }

StatusOr<MessageKind> kind_of(Body::Which which) {
  switch (which) {
    case Body::LEASE_REQUEST: return MessageKind::kLeaseRequest;
    case Body::PROMPT_LEASE: return MessageKind::kPromptLease;
    case Body::ROLLOUT_GROUP: return MessageKind::kRolloutGroup;
    case Body::SCORED_GROUP: return MessageKind::kScoredGroup;
    case Body::TRAIN_BATCH_REQUEST: return MessageKind::kTrainBatchRequest;
    case Body::TRAIN_BATCH: return MessageKind::kTrainBatch;
    case Body::WEIGHT_MANIFEST: return MessageKind::kWeightManifest;
    case Body::WEIGHT_CHUNK: return MessageKind::kWeightChunk;
    case Body::HEARTBEAT: return MessageKind::kHeartbeat;
    case Body::LEASE_GRANT: return MessageKind::kLeaseGrant;
    case Body::ADMIN_REQUEST: return MessageKind::kAdminRequest;
    case Body::ADMIN_REPLY: return MessageKind::kAdminReply;
    case Body::WEIGHT_CHUNK_REQUEST: return MessageKind::kWeightChunkRequest;
    case Body::STORED_QUERY: return MessageKind::kStoredQuery;
    case Body::NCCL_GROUP_REQUEST: return MessageKind::kNcclGroupRequest;
    case Body::NCCL_GROUP: return MessageKind::kNcclGroup;
  }
  return invalid_argument("unknown message kind (union member " +
                          std::to_string(static_cast<unsigned>(which)) + ")");
}

// Reads the body member of `T`'s kind.
w::LeaseRequest::Reader get_body(Body::Reader b, const LeaseRequest*) { return b.getLeaseRequest(); }
w::PromptLease::Reader get_body(Body::Reader b, const PromptLease*) { return b.getPromptLease(); }
w::RolloutGroup::Reader get_body(Body::Reader b, const RolloutGroup*) { return b.getRolloutGroup(); }
w::ScoredGroup::Reader get_body(Body::Reader b, const ScoredGroup*) { return b.getScoredGroup(); }
w::TrainBatchRequest::Reader get_body(Body::Reader b, const TrainBatchRequest*) {
  return b.getTrainBatchRequest();
}
w::TrainBatch::Reader get_body(Body::Reader b, const TrainBatch*) { return b.getTrainBatch(); }
w::WeightManifest::Reader get_body(Body::Reader b, const WeightManifest*) {
  return b.getWeightManifest();
}
w::WeightChunk::Reader get_body(Body::Reader b, const WeightChunk*) { return b.getWeightChunk(); }
w::Heartbeat::Reader get_body(Body::Reader b, const Heartbeat*) { return b.getHeartbeat(); }
w::LeaseGrant::Reader get_body(Body::Reader b, const LeaseGrant*) { return b.getLeaseGrant(); }
w::AdminRequest::Reader get_body(Body::Reader b, const AdminRequest*) { return b.getAdminRequest(); }
w::AdminReply::Reader get_body(Body::Reader b, const AdminReply*) { return b.getAdminReply(); }
w::WeightChunkRequest::Reader get_body(Body::Reader b, const WeightChunkRequest*) {
  return b.getWeightChunkRequest();
}
w::WeightChunk::Reader get_body(Body::Reader b, const WeightChunkView*) { return b.getWeightChunk(); }
w::StoredQuery::Reader get_body(Body::Reader b, const StoredQuery*) { return b.getStoredQuery(); }

constexpr MessageKind kind_constant(const LeaseRequest*) { return MessageKind::kLeaseRequest; }
constexpr MessageKind kind_constant(const PromptLease*) { return MessageKind::kPromptLease; }
constexpr MessageKind kind_constant(const RolloutGroup*) { return MessageKind::kRolloutGroup; }
constexpr MessageKind kind_constant(const ScoredGroup*) { return MessageKind::kScoredGroup; }
constexpr MessageKind kind_constant(const TrainBatchRequest*) {
  return MessageKind::kTrainBatchRequest;
}
constexpr MessageKind kind_constant(const TrainBatch*) { return MessageKind::kTrainBatch; }
constexpr MessageKind kind_constant(const WeightManifest*) { return MessageKind::kWeightManifest; }
constexpr MessageKind kind_constant(const WeightChunk*) { return MessageKind::kWeightChunk; }
constexpr MessageKind kind_constant(const Heartbeat*) { return MessageKind::kHeartbeat; }
constexpr MessageKind kind_constant(const LeaseGrant*) { return MessageKind::kLeaseGrant; }
constexpr MessageKind kind_constant(const AdminRequest*) { return MessageKind::kAdminRequest; }
constexpr MessageKind kind_constant(const AdminReply*) { return MessageKind::kAdminReply; }
constexpr MessageKind kind_constant(const WeightChunkRequest*) {
  return MessageKind::kWeightChunkRequest;
}
constexpr MessageKind kind_constant(const WeightChunkView*) { return MessageKind::kWeightChunk; }
constexpr MessageKind kind_constant(const StoredQuery*) { return MessageKind::kStoredQuery; }

// Checks size and framing, opens the envelope and checks the schema version and kind, then calls
// fn(MessageKind, Body::Reader). Every exception from reading is converted to a Status here.
template <typename Fn>
Status with_envelope(std::string_view bytes, const DecodeOptions& options, Fn&& fn) {
  if (bytes.empty()) return data_loss("empty message");
  if (bytes.size() > options.max_message_bytes) {
    return invalid_argument("message of " + std::to_string(bytes.size()) +
                            " bytes exceeds the limit of " +
                            std::to_string(options.max_message_bytes));
  }
  if (bytes.size() % sizeof(capnp::word) != 0) {
    return data_loss("message of " + std::to_string(bytes.size()) +
                     " bytes is not a whole number of 8-byte words (truncated?)");
  }
  const size_t num_words = bytes.size() / sizeof(capnp::word);
  try {
    // Flat-array reading needs word-aligned memory; copy only when the input is not aligned.
    kj::Array<capnp::word> aligned_copy;
    kj::ArrayPtr<const capnp::word> words;
    if (reinterpret_cast<uintptr_t>(bytes.data()) % alignof(capnp::word) == 0) {
      words = kj::arrayPtr(reinterpret_cast<const capnp::word*>(bytes.data()), num_words);
    } else {
      aligned_copy = kj::heapArray<capnp::word>(num_words);
      std::memcpy(aligned_copy.begin(), bytes.data(), bytes.size());
      words = kj::arrayPtr(static_cast<const capnp::word*>(aligned_copy.begin()), num_words);
    }
    capnp::ReaderOptions reader_options;
    reader_options.traversalLimitInWords = options.traversal_limit_words != 0
                                               ? options.traversal_limit_words
                                               : 4 * uint64_t{num_words} + 1024;
    reader_options.nestingLimit = options.nesting_limit;
    capnp::FlatArrayMessageReader reader(words, reader_options);
    if (reader.getEnd() != words.end()) {
      return data_loss(std::to_string((words.end() - reader.getEnd()) * sizeof(capnp::word)) +
                       " trailing bytes after the message");
    }
    auto envelope = reader.getRoot<w::Envelope>();
    if (envelope.getSchemaVersion() != kSchemaVersion) {
      return invalid_argument("schema version " + std::to_string(envelope.getSchemaVersion()) +
                              " is not the supported version " + std::to_string(kSchemaVersion));
    }
    auto body = envelope.getBody();
    GRPO_ASSIGN_OR_RETURN(MessageKind kind, kind_of(body.which()));
    return fn(kind, body);
  } catch (const kj::Exception& e) {
    return data_loss(std::string("malformed message: ") + e.getDescription().cStr());
  } catch (const std::bad_alloc&) {
    return data_loss("malformed message: out of memory while decoding");
  } catch (const std::exception& e) {
    return data_loss(std::string("malformed message: ") + e.what());
  } catch (...) {
    return data_loss("malformed message: unknown exception while decoding");
  }
}

template <typename T>
Status decode_message(std::string_view bytes, T* out, const DecodeOptions& options) {
  GRPO_CHECK(out != nullptr);
  constexpr MessageKind expected = kind_constant(static_cast<const T*>(nullptr));
  Status s = with_envelope(bytes, options, [&](MessageKind kind, Body::Reader body) -> Status {
    if (kind != expected) {
      return invalid_argument(std::string("expected a ") + message_kind_name(expected) +
                              " message, got a " + message_kind_name(kind));
    }
    return from_wire(get_body(body, out), out);
  });
  return s.ok() ? s : s.with_context(std::string("decode ") + message_kind_name(expected));
}

constexpr size_t kDefaultFirstSegmentWords = 1024;

}  // namespace

const char* message_kind_name(MessageKind kind) {
  switch (kind) {
    case MessageKind::kLeaseRequest: return "LeaseRequest";
    case MessageKind::kPromptLease: return "PromptLease";
    case MessageKind::kRolloutGroup: return "RolloutGroup";
    case MessageKind::kScoredGroup: return "ScoredGroup";
    case MessageKind::kTrainBatchRequest: return "TrainBatchRequest";
    case MessageKind::kTrainBatch: return "TrainBatch";
    case MessageKind::kWeightManifest: return "WeightManifest";
    case MessageKind::kWeightChunk: return "WeightChunk";
    case MessageKind::kHeartbeat: return "Heartbeat";
    case MessageKind::kLeaseGrant: return "LeaseGrant";
    case MessageKind::kAdminRequest: return "AdminRequest";
    case MessageKind::kAdminReply: return "AdminReply";
    case MessageKind::kWeightChunkRequest: return "WeightChunkRequest";
    case MessageKind::kStoredQuery: return "StoredQuery";
    case MessageKind::kNcclGroupRequest: return "NcclGroupRequest";
    case MessageKind::kNcclGroup: return "NcclGroup";
  }
  return "Unknown";
}

std::string encode(const LeaseRequest& m) { return encode_message(m, kDefaultFirstSegmentWords); }
std::string encode(const PromptLease& m) { return encode_message(m, kDefaultFirstSegmentWords); }
std::string encode(const RolloutGroup& m) { return encode_message(m, kDefaultFirstSegmentWords); }
std::string encode(const ScoredGroup& m) { return encode_message(m, kDefaultFirstSegmentWords); }
std::string encode(const TrainBatchRequest& m) {
  return encode_message(m, kDefaultFirstSegmentWords);
}
std::string encode(const TrainBatch& m) { return encode_message(m, kDefaultFirstSegmentWords); }
std::string encode(const WeightManifest& m) { return encode_message(m, kDefaultFirstSegmentWords); }
std::string encode(const WeightChunk& m) {
  // One segment big enough for the data avoids a second allocation and copy.
  return encode_message(m, m.data.size() / sizeof(capnp::word) + 64);
}
std::string encode(const Heartbeat& m) { return encode_message(m, kDefaultFirstSegmentWords); }
std::string encode(const LeaseGrant& m) { return encode_message(m, kDefaultFirstSegmentWords); }
std::string encode(const AdminRequest& m) { return encode_message(m, kDefaultFirstSegmentWords); }
std::string encode(const AdminReply& m) { return encode_message(m, kDefaultFirstSegmentWords); }
std::string encode(const WeightChunkRequest& m) {
  return encode_message(m, kDefaultFirstSegmentWords);
}
std::string encode(const StoredQuery& m) { return encode_message(m, kDefaultFirstSegmentWords); }

StatusOr<MessageKind> peek_kind(std::string_view bytes, const DecodeOptions& options) {
  MessageKind result = MessageKind::kHeartbeat;
  Status s = with_envelope(bytes, options, [&](MessageKind kind, Body::Reader) -> Status {
    result = kind;
    return ok_status();
  });
  if (!s.ok()) return s.with_context("peek_kind");
  return result;
}

Status decode(std::string_view b, LeaseRequest* out, const DecodeOptions& o) {
  return decode_message(b, out, o);
}
Status decode(std::string_view b, PromptLease* out, const DecodeOptions& o) {
  return decode_message(b, out, o);
}
Status decode(std::string_view b, RolloutGroup* out, const DecodeOptions& o) {
  return decode_message(b, out, o);
}
Status decode(std::string_view b, ScoredGroup* out, const DecodeOptions& o) {
  return decode_message(b, out, o);
}
Status decode(std::string_view b, TrainBatchRequest* out, const DecodeOptions& o) {
  return decode_message(b, out, o);
}
Status decode(std::string_view b, TrainBatch* out, const DecodeOptions& o) {
  return decode_message(b, out, o);
}
Status decode(std::string_view b, WeightManifest* out, const DecodeOptions& o) {
  return decode_message(b, out, o);
}
Status decode(std::string_view b, WeightChunk* out, const DecodeOptions& o) {
  return decode_message(b, out, o);
}
Status decode(std::string_view b, Heartbeat* out, const DecodeOptions& o) {
  return decode_message(b, out, o);
}
Status decode(std::string_view b, LeaseGrant* out, const DecodeOptions& o) {
  return decode_message(b, out, o);
}
Status decode(std::string_view b, AdminRequest* out, const DecodeOptions& o) {
  return decode_message(b, out, o);
}
Status decode(std::string_view b, AdminReply* out, const DecodeOptions& o) {
  return decode_message(b, out, o);
}
Status decode(std::string_view b, WeightChunkRequest* out, const DecodeOptions& o) {
  return decode_message(b, out, o);
}
Status decode(std::string_view b, StoredQuery* out, const DecodeOptions& o) {
  return decode_message(b, out, o);
}
Status decode(std::string_view b, WeightChunkView* out, const DecodeOptions& o) {
  // Aligned input is read in place (with_envelope copies only unaligned input), so the data view
  // points into `b` itself.
  if (reinterpret_cast<uintptr_t>(b.data()) % alignof(capnp::word) != 0) {
    return invalid_argument("decode WeightChunk in place: the message is not 8-byte aligned");
  }
  GRPO_RETURN_IF_ERROR(decode_message(b, out, o));
  GRPO_CHECK(out->data.empty() ||
             (out->data.data() >= b.data() && out->data.data() + out->data.size() <= b.data() + b.size()));
  return ok_status();
}

// NCCL group set-up (cluster/nccl_group.h).
std::string encode(const NcclGroupRequest& m) { return encode_message(m, kDefaultFirstSegmentWords); }
std::string encode(const NcclGroup& m) { return encode_message(m, kDefaultFirstSegmentWords); }
Status decode(std::string_view b, NcclGroupRequest* out, const DecodeOptions& o) {
  return decode_message(b, out, o);
}
Status decode(std::string_view b, NcclGroup* out, const DecodeOptions& o) {
  return decode_message(b, out, o);
}

uint64_t checksum64(std::string_view data) { return XXH64(data.data(), data.size(), 0); }

// ---------------------------------------------------------------------------------------------
// Weight chunking.

namespace {

// Reserves a blob of `bytes` and asks the kernel to back it with huge pages where it can (a hint;
// refusal is harmless): filling a large fresh blob otherwise takes a page fault per 4 KiB.
void reserve_blob(std::string* blob, uint64_t bytes) {
  blob->reserve(bytes);
  constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
  if (bytes < 2 * kHugePage) return;
  const auto start = reinterpret_cast<uintptr_t>(blob->data());
  const uintptr_t begin = (start + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (start + bytes) & ~(kHugePage - 1);
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

// Copies `data` to `dst` and returns checksum64(data), hashing each block from `dst` right after
// copying it (in cache) instead of reading the whole chunk from memory twice.
uint64_t copy_and_checksum(std::string_view data, char* dst) {
  constexpr size_t kBlock = 64 << 10;
  if (data.size() <= kBlock) {
    std::memcpy(dst, data.data(), data.size());
    return checksum64(std::string_view(dst, data.size()));
  }
  struct StateDeleter {
    void operator()(XXH64_state_t* s) const { XXH64_freeState(s); }
  };
  std::unique_ptr<XXH64_state_t, StateDeleter> state(XXH64_createState());
  GRPO_CHECK(state != nullptr);
  XXH64_reset(state.get(), 0);
  for (size_t at = 0; at < data.size(); at += kBlock) {
    const size_t n = std::min(kBlock, data.size() - at);
    std::memcpy(dst + at, data.data() + at, n);
    XXH64_update(state.get(), dst + at, n);
  }
  return XXH64_digest(state.get());
}

}  // namespace

std::vector<WeightChunk> make_chunks(uint64_t version, std::string_view blob, uint32_t chunk_bytes,
                                     WeightManifest* manifest) {
  GRPO_CHECK(manifest != nullptr);
  GRPO_CHECK_MSG(chunk_bytes > 0 && chunk_bytes <= kMaxChunkBytes,
                 "make_chunks: chunk_bytes must be in [1, kMaxChunkBytes]");
  const uint64_t num_chunks = (blob.size() + chunk_bytes - 1) / chunk_bytes;
  GRPO_CHECK_MSG(num_chunks <= UINT32_MAX, "make_chunks: more than 2^32 chunks");
  manifest->version = version;
  manifest->total_bytes = blob.size();
  manifest->chunk_bytes = chunk_bytes;
  manifest->chunk_checksums.clear();
  manifest->chunk_checksums.reserve(num_chunks);
  std::vector<WeightChunk> chunks;
  chunks.reserve(num_chunks);
  for (uint64_t i = 0; i < num_chunks; ++i) {
    WeightChunk c;
    c.version = version;
    c.index = static_cast<uint32_t>(i);
    c.data = std::string(blob.substr(i * chunk_bytes, chunk_bytes));
    c.checksum = checksum64(c.data);
    manifest->chunk_checksums.push_back(c.checksum);
    chunks.push_back(std::move(c));
  }
  return chunks;
}

WeightAssembler::WeightAssembler(uint64_t max_total_bytes) : max_total_bytes_(max_total_bytes) {}

Status check_weight_manifest(const WeightManifest& manifest, uint64_t max_total_bytes) {
  const std::string what = "weight manifest of version " + std::to_string(manifest.version);
  if (manifest.total_bytes > max_total_bytes) {
    return invalid_argument(what + " announces " + std::to_string(manifest.total_bytes) +
                            " bytes, more than the limit of " + std::to_string(max_total_bytes));
  }
  if (manifest.total_bytes > 0 && manifest.chunk_bytes == 0) {
    return invalid_argument(what + " has chunk_bytes 0");
  }
  const uint64_t num_chunks =
      manifest.total_bytes == 0
          ? 0
          : (manifest.total_bytes + manifest.chunk_bytes - 1) / manifest.chunk_bytes;
  if (num_chunks > UINT32_MAX) return invalid_argument(what + " has more than 2^32 chunks");
  if (manifest.chunk_checksums.size() != num_chunks) {
    return invalid_argument(what + " lists " + std::to_string(manifest.chunk_checksums.size()) +
                            " chunk checksums for " + std::to_string(num_chunks) + " chunks");
  }
  for (const TensorMeta& t : manifest.tensors) {
    if (t.offset > manifest.total_bytes || t.nbytes > manifest.total_bytes - t.offset) {
      return invalid_argument(what + ": tensor '" + t.name + "' lies outside the blob");
    }
  }
  return ok_status();
}

Status WeightAssembler::begin(const WeightManifest& manifest) {
  GRPO_RETURN_IF_ERROR(check_weight_manifest(manifest, max_total_bytes_));
  const uint64_t num_chunks = manifest.chunk_checksums.size();  // one per chunk, as checked
  started_ = false;
  have_.clear();
  // Write into the blob of an abandoned version or a recycled buffer when one is large enough: the
  // chunks overwrite every byte, so their old contents never show.
  if (blob_.capacity() < manifest.total_bytes) blob_.swap(spare_);
  spare_ = std::string();
  try {
    if (blob_.capacity() < manifest.total_bytes) {
      blob_ = std::string();
      reserve_blob(&blob_, manifest.total_bytes);
    }
    blob_.resize(manifest.total_bytes);
    have_.assign(num_chunks, false);
  } catch (const std::exception& e) {
    blob_ = std::string();
    have_.clear();
    return out_of_range("weight manifest of version " + std::to_string(manifest.version) + ": cannot allocate " +
                        std::to_string(manifest.total_bytes) +
                        " bytes (" + e.what() + ")");
  }
  manifest_ = manifest;
  num_chunks_ = static_cast<uint32_t>(num_chunks);
  received_ = 0;
  started_ = true;
  return ok_status();
}

Status WeightAssembler::add_chunk(const WeightChunk& chunk) {
  WeightChunkView view;
  view.version = chunk.version;
  view.index = chunk.index;
  view.checksum = chunk.checksum;
  view.data = chunk.data;
  return add_chunk(view);
}

Status WeightAssembler::add_chunk(const WeightChunkView& chunk) {
  if (!started_) return failed_precondition("weight chunk received before its manifest");
  const std::string what =
      "weight chunk " + std::to_string(chunk.index) + " of version " + std::to_string(chunk.version);
  if (chunk.version != manifest_.version) {
    return invalid_argument(what + ": assembling version " + std::to_string(manifest_.version));
  }
  if (chunk.index >= num_chunks_) {
    return invalid_argument(what + ": index out of range, the version has " +
                            std::to_string(num_chunks_) + " chunks");
  }
  if (have_[chunk.index]) return ok_status();  // duplicate: already verified and stored
  const uint64_t offset = uint64_t{chunk.index} * manifest_.chunk_bytes;
  const uint64_t expected_size =
      std::min<uint64_t>(manifest_.chunk_bytes, manifest_.total_bytes - offset);
  if (chunk.data.size() != expected_size) {
    return data_loss(what + ": " + std::to_string(chunk.data.size()) + " bytes, expected " +
                     std::to_string(expected_size));
  }
  // Copy and checksum in one pass over memory: each block is hashed in place right after it is
  // copied, while it is still in cache. A chunk that fails leaves garbage in its own slot only,
  // which is not marked received, so the next copy of it overwrites it.
  const uint64_t sum = copy_and_checksum(chunk.data, &blob_[offset]);
  if (sum != manifest_.chunk_checksums[chunk.index] || sum != chunk.checksum) {
    return data_loss(what + ": checksum mismatch (corrupt; fetch it again)");
  }
  have_[chunk.index] = true;
  ++received_;
  return ok_status();
}

std::vector<uint32_t> WeightAssembler::missing_chunks() const {
  std::vector<uint32_t> out;
  for (uint32_t i = 0; i < num_chunks_; ++i) {
    if (!have_[i]) out.push_back(i);
  }
  return out;
}

StatusOr<std::string> WeightAssembler::take_blob() {
  if (!complete()) {
    return failed_precondition("weight version " + std::to_string(manifest_.version) +
                               " is incomplete: " + std::to_string(received_) + " of " +
                               std::to_string(num_chunks_) + " chunks" +
                               (started_ ? "" : " (no manifest)"));
  }
  std::string blob = std::move(blob_);
  blob_ = std::string();
  started_ = false;
  manifest_ = WeightManifest();
  have_.clear();
  num_chunks_ = 0;
  received_ = 0;
  return blob;
}

}  // namespace grpo::cluster
