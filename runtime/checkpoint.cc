#include "runtime/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

namespace grpo::runtime {
namespace fs = std::filesystem;
namespace {

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step-%08lld", static_cast<long long>(step));
  return buf;
}

Status fsync_path(const fs::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) return internal_error("cannot open " + p.string() + " to fsync");
  int rc = ::fsync(fd);
  ::close(fd);
  return rc == 0 ? ok_status() : internal_error("fsync of " + p.string() + " failed");
}

std::vector<std::pair<int64_t, fs::path>> list_checkpoints(const fs::path& dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind("step-", 0) != 0 || name.find('.') != std::string::npos) continue;
    if (!fs::exists(e.path() / "meta.json")) continue;
    try {
      out.emplace_back(std::stoll(name.substr(5)), e.path());
    } catch (...) {
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

Status save_checkpoint(const Trainer& trainer, const std::string& run_dir, const CheckpointInfo& info,
                       int64_t keep) {
  fs::path dir = fs::path(run_dir) / "checkpoints";
  fs::path final_path = dir / step_name(info.step);
  fs::path tmp = dir / (step_name(info.step) + ".tmp");
  std::error_code ec;
  fs::create_directories(dir, ec);
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) return internal_error("cannot create " + tmp.string() + ": " + ec.message());
  GRPO_RETURN_IF_ERROR(trainer.save(tmp.string()));
  {
    nlohmann::json meta = {{"step", info.step}, {"sft_pass_at_1", info.sft_pass_at_1},
                           {"optimizer_step", trainer.optimizer_step()},
                           {"buffer_cursor", info.buffer_cursor}};
    std::ofstream out(tmp / "meta.json");
    out << meta.dump(2) << "\n";
    if (!out) return internal_error("cannot write " + (tmp / "meta.json").string());
  }
  for (const auto& e : fs::directory_iterator(tmp)) GRPO_RETURN_IF_ERROR(fsync_path(e.path()));
  GRPO_RETURN_IF_ERROR(fsync_path(tmp));
  fs::remove_all(final_path, ec);
  fs::rename(tmp, final_path, ec);
  if (ec) return internal_error("cannot rename " + tmp.string() + ": " + ec.message());
  GRPO_RETURN_IF_ERROR(fsync_path(dir));
  auto all = list_checkpoints(dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) fs::remove_all(all[i].second, ec);
  return ok_status();
}

StatusOr<std::optional<CheckpointInfo>> latest_checkpoint(const std::string& run_dir) {
  auto all = list_checkpoints(fs::path(run_dir) / "checkpoints");
  if (all.empty()) return std::optional<CheckpointInfo>();
  const auto& [step, path] = all.back();
  std::ifstream in(path / "meta.json");
  nlohmann::json meta = nlohmann::json::parse(in, nullptr, false);
  if (meta.is_discarded() || !meta.contains("step"))
    return data_loss((path / "meta.json").string() + ": unreadable checkpoint metadata");
  CheckpointInfo info;
  info.step = meta["step"].get<int64_t>();
  info.path = path.string();
  if (meta.contains("sft_pass_at_1") && meta["sft_pass_at_1"].is_number())
    info.sft_pass_at_1 = meta["sft_pass_at_1"].get<double>();
  if (meta.contains("buffer_cursor") && meta["buffer_cursor"].is_number_unsigned())
    info.buffer_cursor = meta["buffer_cursor"].get<uint64_t>();
  return std::optional<CheckpointInfo>(info);
}

Status load_checkpoint(Trainer& trainer, const CheckpointInfo& info) { return trainer.load(info.path); }

}  // namespace grpo::runtime
