#!/usr/bin/env bash
# The miniature pipeline end to end, its determinism and its crash safety:
#  - a run killed with SIGKILL inside every stage in turn (SFT, pairs, reward model, each arm,
#    evaluation), then resumed, must end with exactly the files of an uninterrupted run, byte for
#    byte — with 1 thread, and with 2 threads and 2 worker processes at once (there killed once
#    inside the arms, which run side by side);
#  - the shared stages run one command at a time (data, tokenizer, sft, pairs, rm, then the rest)
#    must give the same files as one command.
#   resume_test.sh <train_tldr> <Translation-en sample> <config> <scratch directory>
set -euo pipefail
bin=$1 sample=$2 config=$3 root=$4
rm -rf "$root"
mkdir -p "$root/lists"
cp "$sample" "$root/lists/sample_i18n_Translation-en"

# Every output that must not depend on interruptions or on how the stages were invoked.
outputs() {
  (cd "$1" && find sft/model.pt pairs rm/model.pt runs eval -type f \
     \( -name '*.pt' -o -name '*.jsonl' -o -name 'history.json' -o -name 'results.json' \) \
     ! -name 'state.pt' | sort)
}
same() {  # same <reference workdir> <workdir>
  local status=0 files
  files=$(outputs "$1")
  [ "$(echo "$files" | wc -l)" -ge 19 ] || { echo "FAIL: only $(echo "$files" | wc -l) outputs in $1"; return 1; }
  [ "$files" = "$(outputs "$2")" ] || { echo "FAIL: $2 has other outputs than $1"; diff <(echo "$files") <(outputs "$2") || true; return 1; }
  for f in $files; do cmp -s "$1/$f" "$2/$f" || { echo "FAIL: $f differs between $1 and $2"; status=1; }; done
  [ $status -eq 0 ] && echo "same: $(echo "$files" | wc -l) files of $2 equal $1's"
  return $status
}

# Starts a run in `workdir`, waits until a file matching `pattern` (a find -path pattern below the
# work directory) is written after the start, then kills the run with SIGKILL.
kill_when() {
  local workdir=$1 pattern=$2 threads=$3
  mkdir -p "$workdir"
  touch "$root/started"
  # The binary itself in the background (not a shell function, whose subshell would absorb the kill).
  "$bin" --config "$config" --threads "$threads" --apt-lists "$root/lists" --workdir "$workdir" > /dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 1200); do
    [ -n "$(find "$workdir" -path "$workdir/$pattern" -newer "$root/started" 2>/dev/null | head -n 1)" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "FAIL: the run ended before $pattern was written"; exit 1; }
    sleep 0.02
  done
  kill -9 "$pid"
  local rc=0
  wait "$pid" 2>/dev/null || rc=$?
  [ "$rc" -eq 137 ] || { echo "FAIL: the run was not killed (exit status $rc)"; exit 1; }
  echo "killed with SIGKILL after $pattern was written"
}

status=0
for threads in 1 2; do
  echo "== $threads thread(s): uninterrupted run"
  "$bin" --config "$config" --threads "$threads" --apt-lists "$root/lists" --workdir "$root/straight$threads" \
    > "$root/straight$threads.out" 2> "$root/straight$threads.err"
  cat "$root/straight$threads.out"
  grep -q "| BRAIn |" "$root/straight$threads.out" || { echo "FAIL: no results table"; exit 1; }

  echo "== $threads thread(s): killed inside every stage, then resumed"
  w=$root/killed$threads
  kill_when "$w" 'sft/state.pt' "$threads"
  kill_when "$w" 'pairs/train.part*.jsonl' "$threads"
  kill_when "$w" 'rm/state.pt' "$threads"
  if [ "$threads" -eq 1 ]; then
    # the main command runs its arms one after another in this order (--arms)
    for arm in brain dpo_sft dpo rso; do kill_when "$w" "runs/$arm-*/state.pt" "$threads"; done
  else
    # 2 workers run arms side by side, so the arm running next to the one killed may finish before
    # the next run starts (the mini config's arms take about a second): kill once inside the arms,
    # whichever arm checkpoints first, with both workers busy.
    kill_when "$w" 'runs/*/state.pt' "$threads"
  fi
  kill_when "$w" 'eval/*-t*.jsonl' "$threads"
  "$bin" --config "$config" --threads "$threads" --apt-lists "$root/lists" --workdir "$w" > "$root/killed$threads.out" 2>&1
  same "$root/straight$threads" "$w" || status=1
done

echo "== the tokeniser does not depend on --threads"
if cmp -s <(spm_export_vocab --model="$root/straight1/tokenizer/spm.model") \
          <(spm_export_vocab --model="$root/straight2/tokenizer/spm.model"); then
  echo "same: the tokeniser's pieces with 1 and 2 threads"
else
  echo "FAIL: the tokeniser's pieces differ between 1 and 2 threads"
  status=1
fi

echo "== the shared stages one command at a time"
w=$root/staged
for stage in data tokenizer sft pairs rm; do
  "$bin" --config "$config" --apt-lists "$root/lists" --workdir "$w" "$stage" > /dev/null 2>&1
done
"$bin" --config "$config" --apt-lists "$root/lists" --workdir "$w" > /dev/null 2>&1
same "$root/straight1" "$w" || status=1
exit $status
