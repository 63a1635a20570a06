// The NCCL group set-up (cluster/nccl_group.h): the NcclGroupRequest / NcclGroup messages through
// the codec (round trip, kinds, bounds) and the coordinator's NcclGroupRegistry.
#include "cluster/nccl_group.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cluster/codec.h"

namespace grpo::cluster {
namespace {

std::string fake_id(char fill = '\x07') {
  std::string id(kNcclUniqueIdBytes, fill);
  id[0] = '\0';  // binary: NULs and high bytes survive
  id[1] = '\xff';
  return id;
}

NcclGroupRequest registration(uint64_t epoch, std::vector<std::string> members, char fill = '\x07') {
  NcclGroupRequest r;
  r.epoch = epoch;
  r.member = members.empty() ? "learner.0" : members.front();
  r.unique_id = fake_id(fill);
  r.members = std::move(members);
  r.piece_bytes = 64 << 20;
  return r;
}

NcclGroupRequest query(uint64_t epoch, const std::string& member) {
  NcclGroupRequest r;
  r.epoch = epoch;
  r.member = member;
  return r;
}

// ---- Codec ------------------------------------------------------------------------------------

TEST(NcclGroupCodecTest, RequestRoundTrips) {
  NcclGroupRequest in = registration(42, {"learner.0", "generator.0", "generator.7"});
  const std::string bytes = encode(in);
  auto kind = peek_kind(bytes);
  ASSERT_TRUE(kind.ok()) << kind.status();
  EXPECT_EQ(*kind, MessageKind::kNcclGroupRequest);
  EXPECT_STREQ(message_kind_name(*kind), "NcclGroupRequest");
  NcclGroupRequest out;
  ASSERT_TRUE(decode(bytes, &out).ok());
  EXPECT_EQ(out.epoch, 42u);
  EXPECT_EQ(out.member, "learner.0");
  EXPECT_EQ(out.unique_id, in.unique_id);
  EXPECT_EQ(out.members, in.members);
  EXPECT_EQ(out.piece_bytes, in.piece_bytes);

  NcclGroupRequest q = query(43, "generator.7"), q_out;
  ASSERT_TRUE(decode(encode(q), &q_out).ok());
  EXPECT_EQ(q_out.epoch, 43u);
  EXPECT_EQ(q_out.member, "generator.7");
  EXPECT_TRUE(q_out.unique_id.empty());
  EXPECT_TRUE(q_out.members.empty());
}

TEST(NcclGroupCodecTest, GroupRoundTrips) {
  NcclGroup in;
  in.epoch = 9;
  in.unique_id = fake_id();
  in.members = {"learner.0", "generator.1"};
  in.piece_bytes = 1 << 20;
  in.rank = 1;
  const std::string bytes = encode(in);
  EXPECT_EQ(peek_kind(bytes).value(), MessageKind::kNcclGroup);
  EXPECT_STREQ(message_kind_name(MessageKind::kNcclGroup), "NcclGroup");
  NcclGroup out;
  ASSERT_TRUE(decode(bytes, &out).ok());
  EXPECT_EQ(out.epoch, 9u);
  EXPECT_EQ(out.unique_id, in.unique_id);
  EXPECT_EQ(out.members, in.members);
  EXPECT_EQ(out.piece_bytes, in.piece_bytes);
  EXPECT_EQ(out.rank, 1);
  EXPECT_TRUE(out.error.empty());

  NcclGroup refused, refused_out;
  refused.epoch = 3;
  refused.error = "no NCCL group for epoch 3 yet";
  ASSERT_EQ(refused.rank, -1);  // the default, also on the wire
  ASSERT_TRUE(decode(encode(refused), &refused_out).ok());
  EXPECT_EQ(refused_out.rank, -1);
  EXPECT_EQ(refused_out.error, refused.error);
}

TEST(NcclGroupCodecTest, KindsAreNumberedApart) {
  EXPECT_EQ(static_cast<int>(MessageKind::kNcclGroupRequest), 20);
  EXPECT_EQ(static_cast<int>(MessageKind::kNcclGroup), 21);
  // Another kind does not decode as these, and these not as another.
  NcclGroup g;
  EXPECT_EQ(decode(encode(query(1, "generator.0")), &g).code(), StatusCode::kInvalidArgument);
  Heartbeat hb;
  EXPECT_EQ(decode(encode(g), &hb).code(), StatusCode::kInvalidArgument);
}

void expect_refused(const NcclGroupRequest& m, const std::string& needle) {
  NcclGroupRequest out;
  Status s = decode(encode(m), &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(needle), std::string::npos) << s;
}
void expect_refused(const NcclGroup& m, const std::string& needle) {
  NcclGroup out;
  Status s = decode(encode(m), &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(needle), std::string::npos) << s;
}

TEST(NcclGroupCodecTest, BoundsAreEnforced) {
  auto r = registration(1, {"learner.0"});
  r.unique_id.pop_back();
  expect_refused(r, "unique id of 127 bytes");
  r.unique_id = fake_id() + "x";
  expect_refused(r, "unique id of 129 bytes");

  r = registration(1, std::vector<std::string>(kMaxNcclGroupMembers + 1, "generator.1"));
  expect_refused(r, "4098 NCCL group members");
  r = registration(1, std::vector<std::string>(kMaxNcclGroupMembers, "g"));  // at the limit: fine
  NcclGroupRequest ok_out;
  EXPECT_TRUE(decode(encode(r), &ok_out).ok());

  r = registration(1, {"learner.0", std::string(kMaxNcclMemberNameBytes + 1, 'g')});
  expect_refused(r, "member name of 65 bytes");
  r = registration(1, {"learner.0"});
  r.member = std::string(kMaxNcclMemberNameBytes + 1, 'l');
  expect_refused(r, "member name of 65 bytes");
  r = registration(1, {"learner.0"});
  r.piece_bytes = kMaxNcclPieceBytes + 1;
  expect_refused(r, "piece_bytes");

  NcclGroup g;
  g.unique_id = fake_id();
  g.members = {"learner.0", "generator.0"};
  g.piece_bytes = 1024;
  g.rank = 2;
  expect_refused(g, "rank 2 not in [-1, 2)");
  g.rank = -2;
  expect_refused(g, "rank -2");
  g.rank = 1;
  g.unique_id.clear();
  expect_refused(g, "without a unique id");
  g.rank = -1;
  g.error = std::string(kMaxNcclErrorBytes + 1, 'e');
  expect_refused(g, "error text of 1025 bytes");
  g.error = std::string(kMaxNcclErrorBytes, 'e');
  NcclGroup out;
  EXPECT_TRUE(decode(encode(g), &out).ok());
}

TEST(NcclGroupCodecTest, TruncatedBytesAreDataLoss) {
  const std::string bytes = encode(registration(5, {"learner.0", "generator.0"}));
  for (size_t n = 0; n < bytes.size(); n += 8) {
    NcclGroupRequest out;
    Status s = decode(std::string_view(bytes).substr(0, n), &out);
    EXPECT_FALSE(s.ok()) << n;
    EXPECT_TRUE(s.code() == StatusCode::kDataLoss || s.code() == StatusCode::kInvalidArgument) << s;
  }
}

// ---- Registry ---------------------------------------------------------------------------------

TEST(NcclGroupRegistryTest, MembersGetTheirRankAndTheRootsId) {
  EXPECT_EQ(nccl_member_name("generator", 3), "generator.3");
  NcclGroupRegistry reg;
  EXPECT_EQ(reg.newest_epoch(), -1);
  NcclGroup root = reg.handle(registration(10, {"learner.0", "generator.0", "generator.2"}));
  ASSERT_EQ(root.rank, 0) << root.error;
  EXPECT_EQ(root.epoch, 10u);
  EXPECT_EQ(reg.newest_epoch(), 10);

  NcclGroup g2 = reg.handle(query(10, "generator.2"));
  EXPECT_EQ(g2.rank, 2) << g2.error;
  EXPECT_EQ(g2.unique_id, fake_id());
  EXPECT_EQ(g2.members.size(), 3u);
  EXPECT_EQ(g2.piece_bytes, uint64_t{64} << 20);
  EXPECT_EQ(reg.handle(query(10, "generator.0")).rank, 1);
  EXPECT_EQ(reg.handle(query(10, "learner.0")).rank, 0);

  // A later version uses the same group until the root registers another.
  NcclGroup later = reg.handle(query(12, "generator.0"));
  EXPECT_EQ(later.rank, 1);
  EXPECT_EQ(later.epoch, 10u);

  // The reply survives the wire.
  NcclGroup wire;
  ASSERT_TRUE(decode(encode(g2), &wire).ok());
  EXPECT_EQ(wire.rank, 2);
}

TEST(NcclGroupRegistryTest, QueriesThatCannotBeAnsweredSayWhy) {
  NcclGroupRegistry reg;
  NcclGroup none = reg.handle(query(4, "generator.0"));
  EXPECT_EQ(none.rank, -1);
  EXPECT_TRUE(none.unique_id.empty());
  EXPECT_NE(none.error.find("no NCCL group for epoch 4 yet"), std::string::npos) << none.error;

  ASSERT_EQ(reg.handle(registration(5, {"learner.0", "generator.0"})).rank, 0);
  NcclGroup early = reg.handle(query(4, "generator.0"));
  EXPECT_EQ(early.rank, -1);
  EXPECT_NE(early.error.find("oldest kept: epoch 5"), std::string::npos) << early.error;

  NcclGroup stranger = reg.handle(query(5, "generator.9"));
  EXPECT_EQ(stranger.rank, -1);
  EXPECT_TRUE(stranger.unique_id.empty());
  EXPECT_NE(stranger.error.find("'generator.9' is not a member of the NCCL group of epoch 5"), std::string::npos)
      << stranger.error;

  NcclGroup bad_name = reg.handle(query(5, "Generator 0"));
  EXPECT_EQ(bad_name.rank, -1);
  EXPECT_NE(bad_name.error.find("only [a-z0-9_.-]"), std::string::npos) << bad_name.error;

  // Every refusal fits the wire's bounds.
  NcclGroup wire;
  EXPECT_TRUE(decode(encode(stranger), &wire).ok());
}

TEST(NcclGroupRegistryTest, MalformedRegistrationsAreRefused) {
  NcclGroupRegistry reg;
  struct Case {
    NcclGroupRequest request;
    std::string needle;
  };
  std::vector<Case> cases;
  auto r = registration(1, {"learner.0", "generator.0"});
  r.unique_id.resize(16);
  cases.push_back({r, "unique id of 16 bytes"});
  r = registration(1, {"learner.0", "generator.0", "generator.0"});
  cases.push_back({r, "listed twice"});
  r = registration(1, {"generator.0", "learner.0"});
  r.member = "learner.0";
  cases.push_back({r, "must be rank 0"});
  r = registration(1, {"learner.0", "GPU#1"});
  cases.push_back({r, "only [a-z0-9_.-]"});
  r = registration(1, {"learner.0"});
  r.piece_bytes = 0;
  cases.push_back({r, "piece_bytes 0"});
  r = registration(1, {});
  r.member = "learner.0";
  cases.push_back({r, "0 members"});
  for (const Case& c : cases) {
    NcclGroup g = reg.handle(c.request);
    EXPECT_EQ(g.rank, -1) << c.needle;
    EXPECT_NE(g.error.find(c.needle), std::string::npos) << g.error;
    EXPECT_TRUE(check_nccl_group_registration(c.request).code() == StatusCode::kInvalidArgument) << c.needle;
  }
  EXPECT_EQ(reg.size(), 0u);
}

TEST(NcclGroupRegistryTest, EpochsOnlyMoveForwardAndOldOnesAreDropped) {
  NcclGroupRegistry reg(/*keep=*/2);
  ASSERT_EQ(reg.handle(registration(5, {"learner.0", "generator.0"}, 'a')).rank, 0);
  // The root's retry at the same epoch (a fresh id after a failed creation) replaces it.
  ASSERT_EQ(reg.handle(registration(5, {"learner.0", "generator.1"}, 'b')).rank, 0);
  EXPECT_EQ(reg.handle(query(5, "generator.0")).rank, -1);
  NcclGroup g = reg.handle(query(5, "generator.1"));
  EXPECT_EQ(g.rank, 1);
  EXPECT_EQ(g.unique_id, fake_id('b'));
  // Older than the newest: refused.
  NcclGroup stale = reg.handle(registration(4, {"learner.0", "generator.0"}));
  EXPECT_EQ(stale.rank, -1);
  EXPECT_NE(stale.error.find("older than the newest, epoch 5"), std::string::npos) << stale.error;

  ASSERT_EQ(reg.handle(registration(7, {"learner.0", "generator.0"}, 'c')).rank, 0);
  ASSERT_EQ(reg.handle(registration(9, {"learner.0", "generator.2"}, 'd')).rank, 0);
  EXPECT_EQ(reg.size(), 2u);  // epoch 5 dropped
  EXPECT_EQ(reg.handle(query(6, "generator.1")).rank, -1);
  EXPECT_EQ(reg.handle(query(8, "generator.0")).epoch, 7u);
  EXPECT_EQ(reg.handle(query(8, "generator.0")).unique_id, fake_id('c'));
  EXPECT_EQ(reg.handle(query(100, "generator.2")).epoch, 9u);
  EXPECT_EQ(reg.handle(query(100, "generator.0")).rank, -1);  // not in the newest group
}

}  // namespace
}  // namespace grpo::cluster
