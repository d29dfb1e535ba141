#!/usr/bin/env bash
# The miniature pipeline end to end, and its crash safety: a run killed with SIGKILL in the middle
# of SFT and again in the middle of BRAIn, then resumed, must end with exactly the files of an
# uninterrupted run (models, histories, evaluation), byte for byte.
#   resume_test.sh <train_tldr> <Translation-en sample> <config> <scratch directory>
set -euo pipefail
bin=$1 sample=$2 config=$3 root=$4
rm -rf "$root"
mkdir -p "$root/lists"
cp "$sample" "$root/lists/sample_i18n_Translation-en"
run() { "$bin" --config "$config" --apt-lists "$root/lists" --workdir "$1" "${@:2}"; }

echo "== uninterrupted run"
run "$root/straight" > "$root/straight.out"
cat "$root/straight.out"
grep -q "| BRAIn |" "$root/straight.out" || { echo "FAIL: no results table"; exit 1; }

# Starts the run, waits until `file` exists (a checkpoint of the stage to interrupt), kills -9.
kill_when() {
  local file=$1
  # The binary itself in the background (not a shell function, whose subshell would absorb the kill).
  "$bin" --config "$config" --apt-lists "$root/lists" --workdir "$root/killed" > /dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 600); do
    [ -e "$root/killed/$file" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "FAIL: the run ended before $file appeared"; exit 1; }
    sleep 0.05
  done
  kill -9 "$pid"
  local rc=0
  wait "$pid" 2>/dev/null || rc=$?
  [ "$rc" -eq 137 ] || { echo "FAIL: the run was not killed (exit status $rc)"; exit 1; }
  echo "killed with SIGKILL after $file appeared"
}
echo "== killed during SFT, then during BRAIn, then resumed"
kill_when sft/state.pt
[ ! -e "$root/killed/sft/model.pt" ] || { echo "FAIL: SFT finished before the kill"; exit 1; }
kill_when brain/state.pt
[ ! -e "$root/killed/brain/history.json" ] || { echo "FAIL: BRAIn finished before the kill"; exit 1; }
run "$root/killed" > "$root/killed.out"

status=0
for f in sft/model.pt rm/model.pt pairs/train.jsonl dpo_sft/best.pt dpo_sft/history.json brain/best.pt \
         brain/history.json eval/results.json eval/brain.jsonl; do
  if cmp -s "$root/straight/$f" "$root/killed/$f"; then echo "same: $f"; else echo "FAIL: $f differs"; status=1; fi
done
exit $status
