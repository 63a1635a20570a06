#include "cluster/nccl_group.h"

#include <algorithm>
#include <iterator>
#include <set>
#include <utility>

namespace grpo::cluster {
namespace {

NcclGroup refusal(uint64_t epoch, std::string error) {
  NcclGroup g;
  g.epoch = epoch;
  g.rank = -1;
  if (error.size() > kMaxNcclErrorBytes) error.resize(kMaxNcclErrorBytes);
  g.error = std::move(error);
  return g;
}

// A name for messages: printable, shortened.
std::string shown(std::string_view name) {
  std::string out;
  for (char c : name.substr(0, kMaxNcclMemberNameBytes)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return "'" + out + (name.size() > kMaxNcclMemberNameBytes ? "...'" : "'");
}

}  // namespace

std::string nccl_member_name(std::string_view role, uint64_t id) {
  return std::string(role) + "." + std::to_string(id);
}

Status check_nccl_member_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNcclMemberNameBytes)
    return invalid_argument("member name " + shown(name) + ": must be 1.." +
                            std::to_string(kMaxNcclMemberNameBytes) + " characters");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    if (!ok) return invalid_argument("member name " + shown(name) + ": only [a-z0-9_.-] allowed");
  }
  return ok_status();
}

Status check_nccl_group_registration(const NcclGroupRequest& r) {
  const std::string what = "NCCL group of epoch " + std::to_string(r.epoch) + ": ";
  if (r.unique_id.size() != kNcclUniqueIdBytes)
    return invalid_argument(what + "unique id of " + std::to_string(r.unique_id.size()) + " bytes, not " +
                            std::to_string(kNcclUniqueIdBytes));
  if (r.members.empty() || r.members.size() > kMaxNcclGroupMembers)
    return invalid_argument(what + std::to_string(r.members.size()) + " members, not 1.." +
                            std::to_string(kMaxNcclGroupMembers));
  if (r.piece_bytes == 0 || r.piece_bytes > kMaxNcclPieceBytes)
    return invalid_argument(what + "piece_bytes " + std::to_string(r.piece_bytes) + " not in [1, " +
                            std::to_string(kMaxNcclPieceBytes) + "]");
  std::set<std::string_view> seen;
  for (const std::string& m : r.members) {
    GRPO_RETURN_IF_ERROR(check_nccl_member_name(m).with_context(what));
    if (!seen.insert(m).second) return invalid_argument(what + "member " + shown(m) + " listed twice");
  }
  if (r.members.front() != r.member)
    return invalid_argument(what + "the registering member " + shown(r.member) +
                            " must be rank 0 (first in the list), not " + shown(r.members.front()));
  return ok_status();
}

NcclGroupRegistry::NcclGroupRegistry(size_t keep) : keep_(std::max<size_t>(1, keep)) {}

NcclGroup NcclGroupRegistry::handle(const NcclGroupRequest& request) {
  return request.unique_id.empty() ? query(request) : registration(request);
}

NcclGroup NcclGroupRegistry::registration(const NcclGroupRequest& r) {
  if (Status s = check_nccl_group_registration(r); !s.ok()) return refusal(r.epoch, s.message());
  if (!groups_.empty() && r.epoch < groups_.rbegin()->first)
    return refusal(r.epoch, "NCCL group of epoch " + std::to_string(r.epoch) + " is older than the newest, epoch " +
                                std::to_string(groups_.rbegin()->first));
  NcclGroup g;
  g.epoch = r.epoch;
  g.unique_id = r.unique_id;
  g.members = r.members;
  g.piece_bytes = r.piece_bytes;
  g.rank = -1;
  groups_[r.epoch] = g;  // a re-registration of the epoch replaces it
  while (groups_.size() > keep_) groups_.erase(groups_.begin());
  g.rank = 0;
  return g;
}

NcclGroup NcclGroupRegistry::query(const NcclGroupRequest& r) const {
  if (Status s = check_nccl_member_name(r.member); !s.ok()) return refusal(r.epoch, s.message());
  auto it = groups_.upper_bound(r.epoch);  // first epoch > r.epoch
  if (it == groups_.begin())
    return refusal(r.epoch, "no NCCL group for epoch " + std::to_string(r.epoch) + " yet" +
                                (groups_.empty() ? std::string()
                                                 : " (oldest kept: epoch " + std::to_string(groups_.begin()->first) + ")"));
  const NcclGroup& g = std::prev(it)->second;
  auto pos = std::find(g.members.begin(), g.members.end(), r.member);
  if (pos == g.members.end())
    return refusal(r.epoch, shown(r.member) + " is not a member of the NCCL group of epoch " + std::to_string(g.epoch));
  NcclGroup reply = g;
  reply.rank = static_cast<int32_t>(pos - g.members.begin());
  return reply;
}

}  // namespace grpo::cluster
