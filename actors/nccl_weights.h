// One rank's NCCL weight channel (broadcaster.transport = "nccl"), made from the group the
// coordinator handed out: joins the group's communicator on a CUDA device and puts
// kernels::NcclHostBroadcast (kernels/cuda/nccl_host_broadcast.h) under a
// cluster::NcclWeightChannel (cluster/nccl_weight_channel.h) as its DeviceBroadcast.
//
//   root (learner 0):   id = make_nccl_unique_id(); register NcclGroupRequest{epoch, "learner.0",
//                       id, members, piece_bytes} with the coordinator, get NcclGroup{rank 0};
//   everyone:           channel = join_nccl_weight_channel(group, {device});   // collective
//   root:               channel->send(manifest, blob);
//   others:             channel->receive(manifest, &blob);  // not OK: take the ZeroMQ chain's copy
//
// Exists only in builds with GRPO_HAVE_NCCL (CMake found CUDA and NCCL): grpo_actors then compiles
// nccl_weights.cc, and a target that calls these functions links grpo_kernels_nccl as well.
#pragma once

#include <memory>
#include <string>

#include "base/status.h"
#include "cluster/messages.h"
#include "cluster/nccl_weight_channel.h"

namespace grpo::actors {

struct NcclJoinOptions {
  int device = 0;              // this rank's CUDA device (each rank of a group needs its own)
  int timeout_ms = 300000;     // creation, each collective, finalisation (kernels::NcclOptions)
  bool verify_root = false;    // cluster::NcclWeightChannelOptions::verify_root
};

// A fresh NCCL unique id for a group this process will be rank 0 of (kernels::nccl_unique_id; it
// starts NCCL's bootstrap listener here, which must live until every member has joined).
StatusOr<std::string> make_nccl_unique_id();

// Joins `group` as group.rank (collective: every member calls it at about the same time) with a
// staging buffer of group.piece_bytes on options.device; the root is rank 0. InvalidArgument for a
// group without a rank (rank < 0: group.error says why) or with piece_bytes below the header;
// otherwise kernels::NcclAllReduce::create's and NcclHostBroadcast::create's errors.
StatusOr<std::unique_ptr<cluster::NcclWeightChannel>> join_nccl_weight_channel(
    const cluster::NcclGroup& group, const NcclJoinOptions& options);

}  // namespace grpo::actors
