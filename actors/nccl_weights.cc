#include "actors/nccl_weights.h"

#include <utility>

#include "kernels/cuda/nccl_allreduce.h"
#include "kernels/cuda/nccl_host_broadcast.h"

namespace grpo::actors {
namespace {

// kernels::NcclHostBroadcast as the channel's DeviceBroadcast.
class NcclDeviceBroadcast final : public cluster::DeviceBroadcast {
 public:
  explicit NcclDeviceBroadcast(std::unique_ptr<kernels::NcclHostBroadcast> impl) : impl_(std::move(impl)) {}
  int rank() const override { return impl_->rank(); }
  int world() const override { return impl_->world(); }
  uint64_t capacity() const override { return impl_->capacity(); }
  bool healthy() const override { return impl_->healthy(); }
  Status broadcast(const char* send, char* recv, uint64_t bytes, int root) override {
    return impl_->broadcast(send, recv, bytes, root);
  }

 private:
  std::unique_ptr<kernels::NcclHostBroadcast> impl_;
};

}  // namespace

StatusOr<std::string> make_nccl_unique_id() { return kernels::nccl_unique_id(); }

StatusOr<std::unique_ptr<cluster::NcclWeightChannel>> join_nccl_weight_channel(const cluster::NcclGroup& group,
                                                                                 const NcclJoinOptions& options) {
  const std::string what = "NCCL group of epoch " + std::to_string(group.epoch);
  if (group.rank < 0 || static_cast<size_t>(group.rank) >= group.members.size())
    return invalid_argument(what + ": no rank for this member" + (group.error.empty() ? "" : ": " + group.error));
  if (group.piece_bytes < cluster::kNcclWeightHeaderBytes || group.piece_bytes > cluster::kMaxNcclPieceBytes)
    return invalid_argument(what + ": piece_bytes " + std::to_string(group.piece_bytes) + " not in [" +
                            std::to_string(cluster::kNcclWeightHeaderBytes) + ", " +
                            std::to_string(cluster::kMaxNcclPieceBytes) + "]");
  kernels::NcclOptions nccl;
  nccl.timeout_ms = options.timeout_ms;
  auto comm = kernels::NcclAllReduce::create(group.unique_id, group.rank, static_cast<int>(group.members.size()),
                                             options.device, nccl);
  if (!comm.ok()) return comm.status().with_context(what);
  auto host = kernels::NcclHostBroadcast::create(std::move(comm).value(), group.piece_bytes);
  if (!host.ok()) return host.status().with_context(what);
  cluster::NcclWeightChannelOptions channel;
  channel.root = 0;
  channel.verify_root = options.verify_root;
  auto out = cluster::NcclWeightChannel::create(std::make_unique<NcclDeviceBroadcast>(std::move(host).value()), channel);
  if (!out.ok()) return out.status().with_context(what);
  return out;
}

}  // namespace grpo::actors
