// Strong integer ids: a GroupId cannot be passed where a PolicyVersion is expected.
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>

namespace grpo {

template <typename Tag>
class StrongId {
 public:
  constexpr StrongId() = default;
  constexpr explicit StrongId(uint64_t v) : value_(v) {}
  constexpr uint64_t value() const { return value_; }
  constexpr bool operator==(StrongId o) const { return value_ == o.value_; }
  constexpr bool operator!=(StrongId o) const { return value_ != o.value_; }
  constexpr bool operator<(StrongId o) const { return value_ < o.value_; }
  constexpr bool operator<=(StrongId o) const { return value_ <= o.value_; }
  constexpr bool operator>(StrongId o) const { return value_ > o.value_; }
  constexpr bool operator>=(StrongId o) const { return value_ >= o.value_; }

 private:
  uint64_t value_ = 0;
};

template <typename Tag>
std::ostream& operator<<(std::ostream& os, StrongId<Tag> id) {
  return os << id.value();
}

struct GroupIdTag {};
struct PolicyVersionTag {};
struct WorkerIdTag {};
struct StepTag {};

using GroupId = StrongId<GroupIdTag>;              // one prompt group, assigned at lease time
using PolicyVersion = StrongId<PolicyVersionTag>;  // weight version, +1 per learner update
using WorkerId = StrongId<WorkerIdTag>;            // a member of a role population
using Step = StrongId<StepTag>;                    // learner optimisation step

}  // namespace grpo

namespace std {
template <typename Tag>
struct hash<grpo::StrongId<Tag>> {
  size_t operator()(grpo::StrongId<Tag> id) const { return std::hash<uint64_t>()(id.value()); }
};
}  // namespace std
