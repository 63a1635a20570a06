#!/usr/bin/env bash
# The 256 MiB weight-broadcast benchmark on a many-core machine that has none of this project's
# packages (the 8-receiver target needs a core or so per hop; see `grpo bench broadcast`).
#
#   bash bench/device-broadcast.sh bundle [BUILD_DIR]   here: builds grpo-bench-broadcast and copies
#                                                       it with every library it loads, the C library
#                                                       and its loader included, into .device-bundle/
#   bash bench/device-broadcast.sh run [OPTIONS...]     there (from the repository root, with
#                                                       .device-bundle carried along): runs it through
#                                                       the bundled loader, so the host's own C library
#                                                       does not matter; OPTIONS go to the benchmark
#                                                       (default: --json --repeats 3)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bundle="$root/.device-bundle"
case "${1:-}" in
  bundle)
    build="${2:-$root/build}"
    cmake --build "$build" --target grpo-bench-broadcast >/dev/null
    bin="$build/apps/grpo-bench-broadcast"
    rm -rf "$bundle" && mkdir -p "$bundle"
    cp "$bin" "$bundle/"
    # Every resolved library, and the loader (the line without "=>").
    ldd "$bin" | awk '/=> \// {print $3} /ld-linux/ && !/=>/ {print $1}' | sort -u | while read -r lib; do
      cp -L "$lib" "$bundle/"
    done
    du -sh "$bundle"
    ;;
  run)
    shift
    [[ -x "$bundle/grpo-bench-broadcast" ]] || { echo "error: $bundle/grpo-bench-broadcast missing: run '$0 bundle' first and carry .device-bundle" >&2; exit 2; }
    loader="$(ls "$bundle"/ld-linux-*.so.* | head -n 1)"
    [[ $# -gt 0 ]] || set -- --json --repeats 3
    echo "cores: $(nproc)" >&2
    exec "$loader" --library-path "$bundle" "$bundle/grpo-bench-broadcast" "$@"
    ;;
  *)
    echo "usage: $0 bundle [BUILD_DIR] | run [OPTIONS...]" >&2
    exit 2
    ;;
esac
