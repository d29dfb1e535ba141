#!/usr/bin/env bash
# Data-parallel train_tldr (src/ranks.hpp) on 127.0.0.1:
#  - the miniature pipeline (BRAIn and DPO) on 2 ranks, with uneven and empty shares, trains what
#    one process trains with the same global batches: SFT and policy parameters within 1e-4, the reward model within 2e-3 (its
#    head bias has no gradient, r_w - r_l cancels it, so Adam turns rounding noise of either run
#    into its steps), the same preference rankings and the same test summaries;
#  - rank 1 killed with SIGKILL inside an arm makes rank 0 stop with an error within the timeout;
#    rerun on 2 ranks, the job ends with exactly the files of an uninterrupted 2-rank run;
#  - rank 1 killed inside the reward model's stage, the job resumed by one process (another world
#    size) ends within the same tolerances of the uninterrupted run.
#   dp_test.sh <train_tldr> <tldr_checkpoint_diff> <scripts/train-tldr-dp> <Translation-en sample> <config> <scratch>
set -euo pipefail
bin=$1 diff_tool=$2 launcher=$3 sample=$4 config=$5 root=$6
rm -rf "$root"
mkdir -p "$root/lists"
cp "$sample" "$root/lists/sample_i18n_Translation-en"
# Odd batches split unevenly (SFT 4 + 3 examples, reward model 4 + 3 rankings, validation 4 + 3
# prompts), and minibatches of one unit leave rank 1 with an empty share at every alignment step
# (no loss, no backward: it still joins the gradient sums).
args=(--config "$config" --threads 1 --apt-lists "$root/lists" --arms brain,dpo --dist-timeout 20
      --sft-batch 7 --rm-batch 7 --eval-valid-prompts 7 --align-groups-per-step 1)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

echo "== one process"
"$bin" "${args[@]}" --workdir "$root/one" > "$root/one.out" 2>&1 || { tail -20 "$root/one.out"; exit 1; }
echo "== two ranks"
TLDR_BIN=$bin TLDR_DP_LOGS=$root/two-logs "$launcher" 2 "${args[@]}" --workdir "$root/two" > "$root/two.out" 2>&1 ||
  { tail -20 "$root/two.out"; cat "$root/two-logs/"*; exit 1; }
grep -q "| BRAIn |" "$root/two.out" || { echo "FAIL: no results table from rank 0"; exit 1; }
[ "$(grep -c '| BRAIn |' "$root/two-logs/rank-1.out" || true)" -eq 0 ] || { echo "FAIL: rank 1 printed the report too"; exit 1; }

close() {  # close <workdir a> <workdir b>: the same training up to rounding
  local a=$1 b=$2 status=0
  "$diff_tool" "$a/sft/model.pt" "$b/sft/model.pt" 1e-4 || status=1
  "$diff_tool" "$a/rm/model.pt" "$b/rm/model.pt" 2e-3 || status=1
  for run in "$a"/runs/*/; do
    "$diff_tool" "$run/best.pt" "$b/runs/$(basename "$run")/best.pt" 1e-4 || status=1
  done
  cmp "$a/pairs/train.jsonl" "$b/pairs/train.jsonl" || { echo "FAIL: the rankings differ"; status=1; }
  for f in "$a"/eval/*-t*.jsonl; do
    python3 - "$f" "$b/eval/$(basename "$f")" <<'PY' || status=1
import json, sys
a, b = ([json.loads(line)["summary"] for line in open(f)] for f in sys.argv[1:])
same = sum(x == y for x, y in zip(a, b))
print(f"{sys.argv[2]}: {same} of {len(a)} test summaries as in {sys.argv[1]}")
sys.exit(0 if len(a) == len(b) and same == len(a) and a else 1)
PY
  done
  return $status
}
status=0
close "$root/one" "$root/two" || status=1

# Starts 2 ranks in `workdir`, kills rank 1 with SIGKILL once `pattern` (a find -path pattern below
# the work directory) is written, and checks that rank 0 then fails with the group's error.
kill_rank1_when() {
  local workdir=$1 pattern=$2 port
  port=$(free_port)
  mkdir -p "$workdir"
  touch "$root/started"
  RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$bin" "${args[@]}" --workdir "$workdir" > "$root/rank0.out" 2>&1 &
  local rank0=$!
  RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$bin" "${args[@]}" --workdir "$workdir" > /dev/null 2>&1 &
  local rank1=$!
  for _ in $(seq 1 3000); do
    [ -n "$(find "$workdir" -path "$workdir/$pattern" -newer "$root/started" 2>/dev/null | head -n 1)" ] && break
    kill -0 "$rank1" 2>/dev/null || { echo "FAIL: the run ended before $pattern was written"; exit 1; }
    sleep 0.01
  done
  kill -9 "$rank1"
  local killed=$SECONDS rc=0
  wait "$rank0" || rc=$?
  wait "$rank1" 2>/dev/null || true
  local took=$((SECONDS - killed))
  [ "$rc" -ne 0 ] || { echo "FAIL: rank 0 finished although rank 1 was killed"; exit 1; }
  grep -q "rank 0 of 2: .* failed" "$root/rank0.out" || { echo "FAIL: rank 0's error does not name the group"; tail -5 "$root/rank0.out"; exit 1; }
  [ "$took" -le 30 ] || { echo "FAIL: rank 0 took ${took}s to stop (timeout 20 s)"; exit 1; }
  echo "rank 1 killed after $pattern was written; rank 0 stopped in ${took}s: $(grep -o 'rank 0 of 2: .*' "$root/rank0.out" | head -c 160)"
}

echo "== two ranks, rank 1 killed inside an arm, rerun on two ranks"
kill_rank1_when "$root/killed" 'runs/*/state.pt'
TLDR_BIN=$bin TLDR_DP_LOGS=$root/killed-logs "$launcher" 2 "${args[@]}" --workdir "$root/killed" > "$root/killed.out" 2>&1 ||
  { tail -20 "$root/killed.out"; exit 1; }
files=$(cd "$root/two" && find sft/model.pt pairs rm/model.pt runs eval -type f \
  \( -name '*.pt' -o -name '*.jsonl' -o -name 'history.json' -o -name 'results.json' \) ! -name 'state.pt' | sort)
[ "$(echo "$files" | wc -l)" -ge 10 ] || { echo "FAIL: only $(echo "$files" | wc -l) outputs"; exit 1; }
for f in $files; do cmp -s "$root/two/$f" "$root/killed/$f" || { echo "FAIL: $f differs after the resume"; status=1; }; done
[ $status -eq 0 ] && echo "resumed on 2 ranks: $(echo "$files" | wc -l) files equal the uninterrupted run's"

echo "== two ranks, rank 1 killed inside the reward model, resumed by one process"
kill_rank1_when "$root/resized" 'rm/state.pt'
"$bin" "${args[@]}" --workdir "$root/resized" > "$root/resized.out" 2>&1 || { tail -20 "$root/resized.out"; exit 1; }
close "$root/two" "$root/resized" || status=1
[ $status -eq 0 ] && echo "dp_test: passed"
exit $status
