#include "storage/state_store.h"

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "tests/storage/test_dir.h"

namespace grpo::storage {
namespace {

using test_util::TestDir;

std::unique_ptr<StateStore> open_store(const std::string& dir) {
  auto store = StateStore::open(dir);
  GRPO_CHECK_MSG(store.ok(), store.status().to_string());
  return std::move(store).value();
}

TEST(StateStoreTest, GetMissingKeyReturnsNotFound) {
  TestDir dir;
  auto store = open_store(dir.path());
  auto v = store->get("run/state");
  EXPECT_EQ(v.status().code(), StatusCode::kNotFound);
  EXPECT_NE(v.status().message().find("run/state"), std::string::npos) << v.status();
}

TEST(StateStoreTest, PutGetRoundTrip) {
  TestDir dir;
  auto store = open_store(dir.path());
  ASSERT_TRUE(store->put("run/state", "running").ok());
  const std::string binary("\0\xff\x01", 3);
  ASSERT_TRUE(store->put("blob", binary).ok());
  EXPECT_EQ(*store->get("run/state"), "running");
  EXPECT_EQ(*store->get("blob"), binary);
  ASSERT_TRUE(store->put("run/state", "paused").ok());
  EXPECT_EQ(*store->get("run/state"), "paused");
  EXPECT_EQ(store->put("", "x").code(), StatusCode::kInvalidArgument);
}

TEST(StateStoreTest, RemoveDeletesKey) {
  TestDir dir;
  auto store = open_store(dir.path());
  ASSERT_TRUE(store->put("k", "v").ok());
  ASSERT_TRUE(store->remove("k").ok());
  EXPECT_EQ(store->get("k").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store->remove("k").ok());
}

TEST(StateStoreTest, U64RoundTripAndDefault) {
  TestDir dir;
  auto store = open_store(dir.path());
  EXPECT_EQ(*store->get_u64("prompt/cursor", 17), 17u);
  ASSERT_TRUE(store->put_u64("prompt/cursor", 0).ok());
  EXPECT_EQ(*store->get_u64("prompt/cursor", 17), 0u);
  ASSERT_TRUE(store->put_u64("policy/version", 0xfedcba9876543210ull).ok());
  EXPECT_EQ(*store->get_u64("policy/version", 0), 0xfedcba9876543210ull);
}

TEST(StateStoreTest, GetU64OfWrongLengthReturnsDataLoss) {
  TestDir dir;
  auto store = open_store(dir.path());
  ASSERT_TRUE(store->put("n", "abc").ok());
  auto v = store->get_u64("n", 0);
  EXPECT_EQ(v.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(v.status().message().find("'n'"), std::string::npos) << v.status();
}

TEST(StateStoreTest, WriteAppliesAllPairs) {
  TestDir dir;
  auto store = open_store(dir.path());
  ASSERT_TRUE(store->write({{"run/state", "running"},
                            {"policy/version", StateStore::encode_u64(3)},
                            {"a", "1"},
                            {"a", "2"}})
                  .ok());
  EXPECT_EQ(*store->get("run/state"), "running");
  EXPECT_EQ(*store->get_u64("policy/version", 0), 3u);
  EXPECT_EQ(*store->get("a"), "2");
  EXPECT_TRUE(store->write({}).ok());
}

TEST(StateStoreTest, WriteWithEmptyKeyChangesNothing) {
  TestDir dir;
  auto store = open_store(dir.path());
  Status s = store->write({{"x", "1"}, {"", "2"}});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->get("x").status().code(), StatusCode::kNotFound);
}

TEST(StateStoreTest, ReopenKeepsValues) {
  TestDir dir;
  {
    auto store = open_store(dir.path());
    ASSERT_TRUE(store->put("run/state", "running").ok());
    ASSERT_TRUE(store->put_u64("prompt/cursor", 1234).ok());
    ASSERT_TRUE(store->write({{"policy/version", StateStore::encode_u64(9)}}).ok());
  }
  auto store = open_store(dir.path());
  EXPECT_EQ(*store->get("run/state"), "running");
  EXPECT_EQ(*store->get_u64("prompt/cursor", 0), 1234u);
  EXPECT_EQ(*store->get_u64("policy/version", 0), 9u);
}

TEST(StateStoreTest, SecondOpenOfSameDirectoryIsUnavailable) {
  TestDir dir;
  auto store = open_store(dir.path());
  auto second = StateStore::open(dir.path());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable) << second.status();
}

}  // namespace
}  // namespace grpo::storage
