// The CAF atoms of GRPO Cluster's actors. Payloads between roles are Cap'n Proto bytes
// (cluster/codec.h) carried as std::string, so no custom type needs a CAF type id.
#pragma once

#include <caf/all.hpp>

CAF_BEGIN_TYPE_ID_BLOCK(grpo, caf::first_custom_type_id)
CAF_ADD_ATOM(grpo, grpo::actors, wire_atom, "wire")        // (wire_atom, std::string bytes)
CAF_ADD_ATOM(grpo, grpo::actors, start_atom, "start")      // begin work
CAF_ADD_ATOM(grpo, grpo::actors, stop_atom, "stop")        // finish the current unit, then report
CAF_ADD_ATOM(grpo, grpo::actors, done_atom, "done")        // (done_atom, role, detail)
CAF_ADD_ATOM(grpo, grpo::actors, tick_atom, "tick")        // periodic work (heartbeats, deadlines)
CAF_ADD_ATOM(grpo, grpo::actors, admin_atom, "admin")      // (admin_atom, bytes) -> reply bytes
CAF_ADD_ATOM(grpo, grpo::actors, weights_atom, "weights")  // a weight version is complete (WeightRelay)
CAF_ADD_ATOM(grpo, grpo::actors, flush_atom, "flush")      // send what was batched (the buffer's storage reports)
CAF_END_TYPE_ID_BLOCK(grpo)
