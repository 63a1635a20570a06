# Wire schema of the messages between roles (see cluster/messages.h for the value types and what
# each field means). Every message on a socket is one Envelope, serialized as an unpacked Cap'n
# Proto flat array by cluster/codec.cc; only cluster/ sees these generated types.
#
# Evolution: add fields with new ordinals at the end of a struct and new union members at the end
# of Envelope.body; never renumber or change a field's type. A change that old readers cannot
# handle bumps kSchemaVersion in cluster/messages.h.
@0x817a1777993d0b79;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("grpo::cluster::wire");

struct SamplingParams {
  temperature @0 :Float64 = 1.0;
  topP @1 :Float64 = 1.0;
  topK @2 :Int32;
  maxNewTokens @3 :Int32 = 64;
}

struct LeaseRequest {
  workerId @0 :UInt64;
  policyVersion @1 :UInt64;
  maxGroups @2 :Int32 = 1;
  restarted @3 :Bool;  # the worker's first request since it started: its last grant was lost
  epoch @4 :UInt64;    # the worker process's epoch (see Heartbeat.epoch); stale epochs are fenced
  retry @5 :Bool;      # no grant came for the previous request: it or its grant was lost
}

struct PromptLease {
  groupId @0 :UInt64;
  promptIndex @1 :UInt64;
  prompt @2 :Text;
  answer @3 :Text;
  groupSize @4 :Int32 = 1;
  minVersion @5 :UInt64;
  deadlineMs @6 :UInt64;
  seed @7 :UInt64;
  sampling @8 :SamplingParams;
}

struct Completion {
  tokenIds @0 :List(Int32);
  logprobs @1 :List(Float32);
  versions @2 :List(UInt64);
  text @3 :Text;
  finished @4 :Bool;
}

struct RolloutGroup {
  groupId @0 :UInt64;
  generatorId @1 :UInt64;
  prompt @2 :Text;
  answer @3 :Text;
  promptIds @4 :List(Int32);
  completions @5 :List(Completion);
}

struct RewardBreakdown {
  total @0 :Float64;
  accuracy @1 :Float64;
  format @2 :Float64;
  language @3 :Float64;
  length @4 :Float64;
  correct @5 :Bool;
}

struct ScoredGroup {
  rollout @0 :RolloutGroup;
  rewards @1 :List(RewardBreakdown);
  verifierId @2 :UInt64;
}

struct TrainBatchRequest {
  learnerId @0 :UInt64;
  step @1 :UInt64;
  minVersion @2 :UInt64;
  numGroups @3 :Int32 = 1;
}

struct TrainBatch {
  step @0 :UInt64;
  groups @1 :List(ScoredGroup);
  dropped @2 :UInt64;  # groups with all-equal rewards discarded by dynamic sampling this step
}

struct TensorMeta {
  name @0 :Text;
  shape @1 :List(Int64);
  dtype @2 :Text;
  offset @3 :UInt64;
  nbytes @4 :UInt64;
}

struct WeightManifest {
  version @0 :UInt64;
  tensors @1 :List(TensorMeta);
  totalBytes @2 :UInt64;
  chunkBytes @3 :UInt32;
  chunkChecksums @4 :List(UInt64);
  # Chained broadcast: the endpoints of the hops after the recipient, in order. The recipient
  # forwards this manifest (minus the head of the list) and every verified chunk to relay[0].
  relay @5 :List(Text);
}

struct WeightChunk {
  version @0 :UInt64;
  index @1 :UInt32;
  checksum @2 :UInt64;
  data @3 :Data;
}

struct Heartbeat {
  role @0 :Text;
  workerId @1 :UInt64;
  epoch @2 :UInt64;
  policyVersion @3 :UInt64;
  timestampMs @4 :UInt64;
  inFlight @5 :Int64;
  step @6 :UInt64;
  groupsRetired @7 :UInt64;
  groupsStored @8 :UInt64;      # buffer: unique scored groups ever accepted
  leasesCompleted @9 :UInt64;   # generator: lease groups finished and sent on, cumulative
  # buffer: ids of groups it holds (stored now or before) that it has not reported yet, or that
  # the coordinator asked about (StoredQuery); at most kMaxReportedGroupIds (cluster/codec.h)
  storedIds @10 :List(UInt64);
}

struct LeaseGrant {
  workerId @0 :UInt64;
  leases @1 :List(PromptLease);
  retire @2 :Bool;  # the worker is retired (scaled down): finish nothing new, exit
  verifiers @3 :Int32;  # verifiers in service: send group g to verifier g mod this (0 = config's)
}

# grpoctl -> coordinator (ROUTER/DEALER admin socket).
struct AdminRequest {
  command @0 :Text;   # status | members | scale | pause | resume
  role @1 :Text;      # scale: generator | verifier
  count @2 :Int32;    # scale: the new count
}

struct MemberInfo {
  role @0 :Text;
  workerId @1 :UInt64;
  epoch @2 :UInt64;
  state @3 :Text;           # up | draining | retired | lost
  lastSeenMsAgo @4 :UInt64;
  policyVersion @5 :UInt64;
  inFlight @6 :Int64;
  leasesCompleted @7 :UInt64;
}

struct AdminReply {
  ok @0 :Bool;
  error @1 :Text;
  runState @2 :Text;        # running | paused | draining | done
  learnerStep @3 :UInt64;
  totalSteps @4 :UInt64;
  leasesIssued @5 :UInt64;
  leasesCompleted @6 :UInt64;
  leasesInFlight @7 :UInt64;
  groupsStored @8 :UInt64;  # the buffer's unique scored groups
  groupsRetired @9 :UInt64;
  desiredGenerators @10 :Int32;
  desiredVerifiers @11 :Int32;
  members @12 :List(MemberInfo);
  epoch @13 :UInt64;        # the coordinator's epoch
  message @14 :Text;        # human summary of what a command did
  leasesAwaitingStorage @15 :UInt64;  # finished by their generator, not yet confirmed by the buffer
}

# generator -> broadcaster: send these chunks of `version` again (they failed their checksum).
struct WeightChunkRequest {
  version @0 :UInt64;
  workerId @1 :UInt64;
  indices @2 :List(UInt32);
}

# coordinator -> buffer: which of these group ids do you hold? The buffer answers with a Heartbeat
# whose storedIds lists those it holds. At most kMaxReportedGroupIds ids (cluster/codec.h).
struct StoredQuery {
  ids @0 :List(UInt64);
}

struct Envelope {
  schemaVersion @0 :UInt32;
  body :union {
    leaseRequest @1 :LeaseRequest;
    promptLease @2 :PromptLease;
    rolloutGroup @3 :RolloutGroup;
    scoredGroup @4 :ScoredGroup;
    trainBatchRequest @5 :TrainBatchRequest;
    trainBatch @6 :TrainBatch;
    weightManifest @7 :WeightManifest;
    weightChunk @8 :WeightChunk;
    heartbeat @9 :Heartbeat;
    leaseGrant @10 :LeaseGrant;
    adminRequest @11 :AdminRequest;
    adminReply @12 :AdminReply;
    weightChunkRequest @13 :WeightChunkRequest;
    storedQuery @14 :StoredQuery;
    ncclGroupRequest @15 :NcclGroupRequest;
    ncclGroup @16 :NcclGroup;
  }
}

# NCCL weight broadcast (broadcaster.transport = "nccl"): forming a group of GPUs through the
# coordinator (cluster/nccl_group.h). The root registers a group (uniqueId, members, pieceBytes
# set); a member asks for the group current at an epoch (those empty) and gets its rank.
struct NcclGroupRequest {
  epoch @0 :UInt64;          # the weight version from which the group is used
  member @1 :Text;           # the requester: "learner.0", "generator.3"
  uniqueId @2 :Data;         # root: the NCCL unique id (128 bytes); member: empty
  members @3 :List(Text);    # root: every member in rank order, itself first
  pieceBytes @4 :UInt64;     # root: bytes per broadcast (each member's staging buffer)
}

struct NcclGroup {
  epoch @0 :UInt64;          # the group's own epoch (<= the one asked for)
  uniqueId @1 :Data;         # 128 bytes; empty when rank is -1
  members @2 :List(Text);
  pieceBytes @3 :UInt64;
  rank @4 :Int32 = -1;       # the requester's rank; -1: no group for it (error says why)
  error @5 :Text;
}
