// `grpoctl keygen` writes the cluster and admin keypairs with the right modes, and refuses to
// replace existing keys without --force. Runs the real binary as a child process.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "cluster/security.h"
#include "run_grpo.h"

namespace grpo {
namespace {

using testing::app_binary;
using testing::run_program;
using testing::RunResult;

// The grpoctl of this test's own build folder (tests/apps/run_grpo.h).
std::string grpoctl_binary() { return app_binary("grpoctl"); }

class GrpoctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/grpoctl_test.XXXXXX";
    const char* dir = ::mkdtemp(tmpl);
    ASSERT_NE(dir, nullptr);
    dir_ = dir;
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  RunResult grpoctl(const std::vector<std::string>& args) {
    return run_program(grpoctl_binary(), args,
                       dir_ + "/run" + std::to_string(++runs_) + ".log");
  }

  static int mode(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return -1;
    return static_cast<int>(st.st_mode & 0777);
  }

  std::string dir_;
  int runs_ = 0;
};

TEST_F(GrpoctlTest, KeygenWritesFourKeyFilesWithModes) {
  const std::string out = dir_ + "/keys/new";  // created, parents included
  RunResult r = grpoctl({"keygen", "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(mode(out), 0700);
  EXPECT_EQ(mode(out + "/cluster.key"), 0600);
  EXPECT_EQ(mode(out + "/admin.key"), 0600);
  EXPECT_EQ(mode(out + "/cluster.pub"), 0644);
  EXPECT_EQ(mode(out + "/admin.pub"), 0644);

  auto cluster = cluster::read_key_file(out + "/cluster.key");
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  auto admin = cluster::read_key_file(out + "/admin.key");
  ASSERT_TRUE(admin.ok()) << admin.status();
  EXPECT_NE(cluster->public_key, admin->public_key);
  auto cluster_pub = cluster::read_public_key_file(out + "/cluster.pub");
  auto admin_pub = cluster::read_public_key_file(out + "/admin.pub");
  ASSERT_TRUE(cluster_pub.ok() && admin_pub.ok());
  EXPECT_EQ(*cluster_pub, cluster->public_key);
  EXPECT_EQ(*admin_pub, admin->public_key);
  // Public files hold no secret.
  EXPECT_FALSE(cluster::read_key_file(out + "/cluster.pub").ok());
  EXPECT_EQ(testing::read_file(out + "/cluster.pub").find(cluster->secret_key), std::string::npos);
  EXPECT_NE(r.output.find(cluster->public_key), std::string::npos) << r.output;
}

TEST_F(GrpoctlTest, KeygenRefusesToOverwriteWithoutForce) {
  ASSERT_EQ(grpoctl({"keygen", "--out", dir_}).exit_code, 0);
  const std::string before = testing::read_file(dir_ + "/cluster.key");

  RunResult again = grpoctl({"keygen", "--out", dir_});
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_NE(again.output.find("error: keygen: " + dir_ + "/cluster.key"), std::string::npos)
      << again.output;
  EXPECT_NE(again.output.find("--force"), std::string::npos) << again.output;
  EXPECT_EQ(testing::read_file(dir_ + "/cluster.key"), before);

  // One leftover file is enough to refuse.
  ASSERT_EQ(std::system(("rm '" + dir_ + "/cluster.key' '" + dir_ + "/cluster.pub' '" + dir_ +
                         "/admin.key'").c_str()),
            0);
  RunResult partial = grpoctl({"keygen", "--out", dir_});
  EXPECT_EQ(partial.exit_code, 1) << partial.output;
  EXPECT_NE(partial.output.find("admin.pub exists already"), std::string::npos)
      << partial.output;

  RunResult forced = grpoctl({"keygen", "--out", dir_, "--force"});
  ASSERT_EQ(forced.exit_code, 0) << forced.output;
  auto replaced = cluster::read_key_file(dir_ + "/cluster.key");
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_EQ(mode(dir_ + "/cluster.key"), 0600);
  EXPECT_NE(testing::read_file(dir_ + "/cluster.key"), before);
}

TEST_F(GrpoctlTest, BadArgumentsAndUnusableFolders) {
  EXPECT_EQ(grpoctl({}).exit_code, 2);
  EXPECT_EQ(grpoctl({"keygen"}).exit_code, 2);  // --out is required
  EXPECT_EQ(grpoctl({"nonsense"}).exit_code, 2);
  EXPECT_EQ(grpoctl({"keygen", "--help"}).exit_code, 0);

  std::ofstream(dir_ + "/file") << "x";
  RunResult r = grpoctl({"keygen", "--out", dir_ + "/file/keys"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(dir_ + "/file exists and is not a folder"), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace grpo
