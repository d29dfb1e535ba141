#!/usr/bin/env bash
# src/distributed.hpp with real processes on 127.0.0.1 (a few seconds): tests/dist_driver.cpp run
# as N ranks with torchrun's environment variables.
#   - a world of one (no variables): every collective is the identity;
#   - 2 and 3 ranks: all_reduce_sum of 13 tensors of 9 dtypes (a transposed view, an empty tensor)
#     over many buckets and one, sum_gradients (a parameter unused on rank 0, one unused
#     everywhere), sum, all_gather of different lengths (empty, NULs), broadcast and its refusal
#     of different layouts, barrier: all against exact integer-valued sums;
#   - faults: a rank killed with SIGKILL before an all-reduce (rank 1; rank 0, the store's
#     server; timeout 3 s) and a rank alive but silent (timeout 2 s) must make every other rank
#     exit with the layer's error naming the operation, well within 20 s; a rank whose peer never
#     starts fails the rendezvous within its timeout (1 s);
#   - 2 ranks: a 100 MB float32 all-reduce, timed (printed for docs/distributed.md).
# Usage: distributed_test.sh DRIVER WORKDIR
set -euo pipefail
driver=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
failed=0

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000))
}

# run NAME WORLD RANKS... -- ARGS: starts the listed ranks of a WORLD-rank run with ARGS, waits
# for all (a hung rank is killed after 60 s), leaves each rank's exit status in
# $work/NAME.R.rc and its output in $work/NAME.R.log, and the run's milliseconds in $elapsed. Retries
# with another port when the one picked was taken meanwhile.
run() {
  local name=$1 world=$2
  shift 2
  local ranks=()
  while [ "$1" != "--" ]; do ranks+=("$1"); shift; done
  shift
  local attempt
  for attempt in 1 2 3; do
    local port pids=() start r
    port=$(free_port)
    start=$(date +%s%N)
    for r in "${ranks[@]}"; do
      # The subshell reports the status, and says "Killed" about the victim to /dev/null.
      (
        rc=0
        RANK=$r WORLD_SIZE=$world LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
          timeout -s KILL 60 "$driver" "$@" >"$work/$name.$r.log" 2>&1 || rc=$?
        echo $rc >"$work/$name.$r.rc"
      ) 2>/dev/null &
      pids+=($!)
    done
    wait "${pids[@]}"
    elapsed=$((($(date +%s%N) - start) / 1000000))
    grep -qi 'address already in use' "$work/$name".*.log || return 0
    echo "port $port was taken: retrying"
  done
}

expect() {  # expect NAME RANK RC [TEXT...]: rank's exit status and that its output holds each TEXT
  local name=$1 r=$2 rc=$3
  shift 3
  local got
  got=$(cat "$work/$name.$r.rc")
  if [ "$got" != "$rc" ]; then
    echo "FAILED: $name rank $r exited $got, expected $rc:"; cat "$work/$name.$r.log"; failed=1; return
  fi
  local text
  for text in "$@"; do
    if ! grep -qF -- "$text" "$work/$name.$r.log"; then
      echo "FAILED: $name rank $r's output lacks '$text':"; cat "$work/$name.$r.log"; failed=1
    fi
  done
}

within() {  # within NAME SECONDS: the last run's elapsed time ($elapsed, in ms)
  if [ "$elapsed" -ge $(($2 * 1000)) ]; then echo "FAILED: $1 took $elapsed ms (limit $2 s)"; failed=1; fi
  echo "$1: $elapsed ms"
}

# A world of one: no environment, no sockets.
rc=0
env -u RANK -u WORLD_SIZE -u LOCAL_RANK -u MASTER_ADDR -u MASTER_PORT "$driver" collectives >"$work/single.log" 2>&1 || rc=$?
if [ $rc != 0 ] || ! grep -qF "rank 0 of 1: ok" "$work/single.log"; then
  echo "FAILED: world of one:"; cat "$work/single.log"; failed=1
fi

for world in 2 3; do
  run collectives$world $world $(seq 0 $((world - 1))) -- collectives
  for r in $(seq 0 $((world - 1))); do expect collectives$world $r 0 "rank $r of $world: ok"; done
  within collectives$world 30
done

# Faults. The victim's own status is whatever killing it gives; every other rank must exit 3.
for world in 2 3; do
  run die$world $world $(seq 0 $((world - 1))) -- die --timeout-ms 3000
  for r in $(seq 0 $((world - 1))); do
    [ $r = 1 ] || expect die$world $r 3 "rank $r of $world: all_reduce_sum failed:" "a rank may have died; timeout 3 s"
  done
  within die$world 20
done
run die_master 2 0 1 -- die --timeout-ms 3000 --victim 0
expect die_master 1 3 "rank 1 of 2: all_reduce_sum failed:"
within die_master 20

# A silent rank: rank 0 times out; the script ends rank 1 once rank 0 has returned.
port=$(free_port)
RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port timeout -s KILL 60 "$driver" stall --timeout-ms 2000 \
  >"$work/stall.1.log" 2>&1 &
silent=$!
start=$(date +%s%N)
rc=0
RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port timeout -s KILL 60 "$driver" stall --timeout-ms 2000 \
  >"$work/stall.0.log" 2>&1 || rc=$?
elapsed=$((($(date +%s%N) - start) / 1000000))
kill -KILL $silent 2>/dev/null || true
wait $silent 2>/dev/null || true
echo $rc >"$work/stall.0.rc"
expect stall 0 3 "rank 0 of 2: all_reduce_sum failed:" "timeout 2 s"
within stall 20

# A peer that never comes: the rendezvous fails within its timeout.
run alone 2 0 -- collectives --timeout-ms 1000
expect alone 0 1 "rank 0 of 2: rendezvous at 127.0.0.1:"
within alone 20

# The all-reduce's speed here (2 ranks on one machine's loopback).
run bench 2 0 1 -- bench 100
expect bench 0 0 "all_reduce_sum of 100 MB float32, 2 ranks"
expect bench 1 0
grep -h "GB/s" "$work/bench.0.log" || true

if [ $failed != 0 ]; then echo "distributed_test: FAILED"; exit 1; fi
echo "distributed_test: ok"
