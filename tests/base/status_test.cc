#include "base/status.h"

#include <gtest/gtest.h>

#include "base/ids.h"

namespace grpo {
namespace {

StatusOr<int> half(int x) {
  if (x % 2) return invalid_argument("odd: " + std::to_string(x));
  return x / 2;
}

Status quarter(int x, int* out) {
  GRPO_ASSIGN_OR_RETURN(int h, half(x));
  GRPO_ASSIGN_OR_RETURN(int q, half(h));
  *out = q;
  return ok_status();
}

TEST(StatusTest, OkAndErrorsFormat) {
  EXPECT_TRUE(ok_status().ok());
  EXPECT_EQ(ok_status().to_string(), "OK");
  Status s = not_found("key 7");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.to_string(), "NOT_FOUND: key 7");
  EXPECT_EQ(s.with_context("store").message(), "store: key 7");
}

TEST(StatusTest, AssignOrReturnPropagatesFirstError) {
  int out = -1;
  EXPECT_TRUE(quarter(12, &out).ok());
  EXPECT_EQ(out, 3);
  Status s = quarter(6, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "odd: 3");
}

TEST(StatusTest, StatusOrValueOfErrorDies) {
  StatusOr<int> e = internal_error("boom");
  EXPECT_DEATH({ (void)e.value(); }, "boom");
}

TEST(StrongIdTest, ComparesAndHashes) {
  GroupId a(3), b(4);
  EXPECT_LT(a, b);
  EXPECT_EQ(a, GroupId(3));
  EXPECT_NE(std::hash<GroupId>()(a), std::hash<GroupId>()(b));
}

}  // namespace
}  // namespace grpo
