// Forming the GPU groups of the NCCL weight broadcast (broadcaster.transport = "nccl") through the
// coordinator: the exchange of NCCL unique ids.
//
//   root (learner 0)                         coordinator                      member (generator k)
//   id = nccl_unique_id()
//   NcclGroupRequest{epoch, "learner.0",
//                    id, members, piece} -->  NcclGroupRegistry::handle
//                                       <--   NcclGroup{rank 0}
//                                                                 <--  NcclGroupRequest{epoch, "generator.k"}
//                                             NcclGroupRegistry::handle -->  NcclGroup{id, members, rank r}
//   every member: NcclAllReduce::create(id, rank, members.size(), device), then NcclWeightChannel
//   (cluster/nccl_weight_channel.h) with a staging buffer of piece_bytes.
//
// Members are named "ROLE.ID" ("learner.0", "generator.3"); the list is in rank order, the root
// first. An epoch is the weight version from which a group is used; the root registers a new one
// when the members change or the previous group broke (a failed collective needs a fresh id). A
// member asking for epoch E gets the newest group registered for an epoch <= E, so a group formed
// at version 10 also answers for version 11, and the reply's epoch tells the member whether it
// already holds that group's communicator. Registering an epoch again replaces its group (the
// root's retry with a fresh id); registering an epoch older than the newest is refused.
//
// The messages are bounded by decode() (cluster/codec.h): ids of exactly kNcclUniqueIdBytes (or
// none), at most kMaxNcclGroupMembers names of at most kMaxNcclMemberNameBytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "base/status.h"
#include "cluster/messages.h"

namespace grpo::cluster {

// "generator.3".
std::string nccl_member_name(std::string_view role, uint64_t id);

// InvalidArgument unless `name` is 1..kMaxNcclMemberNameBytes characters of [a-z0-9_.-].
Status check_nccl_member_name(std::string_view name);

// A registration (non-empty unique_id) as the coordinator accepts it: an id of kNcclUniqueIdBytes,
// 1..kMaxNcclGroupMembers well-formed, distinct member names with the requester first, and
// piece_bytes in [1, kMaxNcclPieceBytes]. InvalidArgument naming the problem otherwise.
Status check_nccl_group_registration(const NcclGroupRequest& request);

// The coordinator's table of groups, newest `keep` epochs. Owned by the coordinator's thread; not
// synchronized.
class NcclGroupRegistry {
 public:
  explicit NcclGroupRegistry(size_t keep = 4);

  // Answers a request: a registration (unique_id set) is checked and stored, and answered with the
  // group and rank 0; a query (unique_id empty) is answered with the newest group of an epoch <=
  // request.epoch and the requester's rank in it. Whatever goes wrong is answered with rank -1, no
  // id, and `error` saying why (malformed registration, stale epoch, no group yet, not a member).
  NcclGroup handle(const NcclGroupRequest& request);

  // Newest registered epoch; -1 when none.
  int64_t newest_epoch() const { return groups_.empty() ? -1 : static_cast<int64_t>(groups_.rbegin()->first); }
  size_t size() const { return groups_.size(); }

 private:
  NcclGroup registration(const NcclGroupRequest& request);
  NcclGroup query(const NcclGroupRequest& request) const;

  size_t keep_;
  std::map<uint64_t, NcclGroup> groups_;  // by epoch; each stored with rank -1
};

}  // namespace grpo::cluster
