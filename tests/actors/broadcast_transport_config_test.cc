// broadcaster.transport: "zmq" by default, "nccl" only in builds with CUDA and NCCL (a config
// error naming the key elsewhere), nothing else.
#include <gtest/gtest.h>

#include "actors/run_config.h"

namespace grpo::actors {
namespace {

StatusOr<RunSettings> settings(const std::vector<std::string>& overrides, const std::string& text = "") {
  auto cfg = Config::parse(run_schema(), text, "t.toml", overrides);
  if (!cfg.ok()) return cfg.status();
  return settings_from_config(*cfg);
}

TEST(BroadcastTransportConfigTest, DefaultIsTheZeroMqChain) {
  const ConfigKey* key = run_schema().find("broadcaster.transport");
  ASSERT_NE(key, nullptr);  // listed by `grpo config-keys`
  EXPECT_EQ(key->default_value, "\"zmq\"");
  EXPECT_EQ(key->choices, (std::vector<std::string>{"zmq", "nccl"}));
  auto s = settings({});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->broadcast_transport, "zmq");
  auto z = settings({"broadcaster.transport=zmq"});
  ASSERT_TRUE(z.ok()) << z.status();
  EXPECT_EQ(z->broadcast_transport, "zmq");
}

TEST(BroadcastTransportConfigTest, UnknownTransportIsRefused) {
  auto s = settings({"broadcaster.transport=tcp"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("broadcaster.transport"), std::string::npos) << s.status();
}

TEST(BroadcastTransportConfigTest, NcclNeedsANcclBuild) {
  for (const auto& [overrides, text] :
       std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"broadcaster.transport=nccl"}, ""}, {{}, "[broadcaster]\ntransport = \"nccl\"\n"}}) {
    auto s = settings(overrides, text);
    if (nccl_transport_built()) {
      ASSERT_TRUE(s.ok()) << s.status();
      EXPECT_EQ(s->broadcast_transport, "nccl");
    } else {
      ASSERT_FALSE(s.ok());
      EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
      const std::string where = text.empty() ? "command line" : "t.toml:2";
      EXPECT_EQ(s.status().message(),
                where + ": broadcaster.transport: \"nccl\" needs a grpo built with CUDA and NCCL, and this one was "
                        "built without them; use \"zmq\"");
    }
  }
}

}  // namespace
}  // namespace grpo::actors
