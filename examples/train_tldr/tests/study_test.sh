#!/usr/bin/env bash
# `train_tldr study` on the miniature pipeline: every table is there with the seeds asked for
# (--study-seeds for the arms, --study-samples-seeds for the n sweep's other n), every swept arm
# and SFT get a choice from the validation sweep, and a choice once written never changes: an
# arm missing from sweep/choice.json (one the method table gained later) is swept and added,
# while an edited entry is kept as written and used.
#   study_test.sh <train_tldr> <Translation-en sample> <config> <scratch directory>
set -euo pipefail
bin=$1 sample=$2 config=$3 root=$4
rm -rf "$root"
mkdir -p "$root/lists"
cp "$sample" "$root/lists/sample_i18n_Translation-en"
study() {
  "$bin" study --config "$config" --threads 1 --apt-lists "$root/lists" --workdir "$root/w" --study-seeds 2 \
    --study-samples-seeds 1 --study-betas 0.1,0.2 --study-lrs 1e-4 --study-temperatures 0.5,0.7 --study-samples 2,4 \
    > "$root/$1.md" 2> "$root/$1.err" || { cat "$root/$1.err"; echo "FAIL: study ($1) failed"; exit 1; }
}

echo "== the study from scratch"
study first
python3 - "$root/w" <<'EOF'
import json, sys
w = sys.argv[1]
r = json.load(open(f"{w}/study/results.json"))
choice = json.load(open(f"{w}/sweep/choice.json"))
fail = []
swept = ["dpo", "dpo_sft", "rso", "brain", "rloo", "grpo"]
for arm in swept + ["sft"]:
    s = choice["settings"].get(arm)
    if s is None: fail.append(f"no choice for {arm}"); continue
    if s["temperature"] not in (0.5, 0.7): fail.append(f"{arm}: temperature {s['temperature']} is not in the grid")
    if arm != "sft" and (s["beta"] not in (0.1, 0.2) or s["lr"] != 1e-4): fail.append(f"{arm}: {s} is not in the grid")
if len(choice["grid"]) != 2 * len(swept): fail.append(f"{len(choice['grid'])} grid runs, expected {2 * len(swept)}")
def evals(section, row):
    rows = {x["id"]: x for x in r[section]["rows"]}
    return rows[row]["evals"] if row in rows else None
expect = {("table1", "brain"): 2, ("table1", "sft"): 2, ("table1", "rso"): 2, ("bridge", "dpo_sft_iw"): 2,
          ("ablations", "brain_no_baseline"): 2, ("policy_gradient", "rloo"): 2, ("policy_gradient", "grpo"): 2,
          ("n_sweep", "brain"): 2, ("n_sweep", "brain-n2"): 1, ("n_sweep", "dpo_sft-n2"): 1}
for (section, row), seeds in expect.items():
    e = evals(section, row)
    if e is None: fail.append(f"no row {row} in {section}"); continue
    if len(e) != seeds: fail.append(f"{section}/{row}: {len(e)} seeds, expected {seeds}")
b = choice["settings"]["brain"]
if evals("table1", "brain")[0] != f"brain-n4-b{b['beta']:g}-lr{b['lr']:g}-s7-t{b['temperature']:g}":
    fail.append(f"BRAIn's row {evals('table1', 'brain')[0]} does not use the choice {b}")
print("\n".join("FAIL: " + f for f in fail) or "ok: every table, seeds and choice as asked")
sys.exit(1 if fail else 0)
EOF
grep -q '### The PPO family' "$root/first.md" || { echo "FAIL: no PPO-family section in results.md"; exit 1; }

echo "== a choice is kept as written; an arm missing from it is swept and added"
python3 - "$root/w/sweep/choice.json" <<'EOF'
import json, sys
path = sys.argv[1]
c = json.load(open(path))
json.dump(c, open(path + ".first", "w"), indent=2)
b = c["settings"]["brain"]
b["beta"] = 0.2 if b["beta"] == 0.1 else 0.1   # a hand edit: must be used, not recomputed
del c["settings"]["grpo"]                       # as if the table had gained GRPO after the sweep
c["grid"] = [g for g in c["grid"] if g["arm"] != "grpo"]
c["temperatures"] = [t for t in c["temperatures"] if t["arm"] != "grpo"]
json.dump(c, open(path, "w"), indent=2)
EOF
study second
python3 - "$root/w" <<'EOF'
import json, sys
w = sys.argv[1]
first = json.load(open(f"{w}/sweep/choice.json.first"))
now = json.load(open(f"{w}/sweep/choice.json"))
r = json.load(open(f"{w}/study/results.json"))
fail = []
if now["settings"].get("grpo") != first["settings"]["grpo"]:
    fail.append(f"GRPO re-swept to {now['settings'].get('grpo')}, first {first['settings']['grpo']}")
if now["settings"]["brain"]["beta"] == first["settings"]["brain"]["beta"]:
    fail.append("the edited BRAIn choice was recomputed")
for arm in ["dpo", "dpo_sft", "rso", "rloo", "sft"]:
    if now["settings"][arm] != first["settings"][arm]: fail.append(f"{arm}'s choice changed")
b = now["settings"]["brain"]
row = {x["id"]: x for x in r["table1"]["rows"]}["brain"]["evals"][0]
if f"-b{b['beta']:g}-" not in row: fail.append(f"BRAIn's row {row} does not use the edited choice β = {b['beta']}")
print("\n".join("FAIL: " + f for f in fail) or "ok: the written choice kept, the missing arm added as before")
sys.exit(1 if fail else 0)
EOF
echo "== a complete study reruns from its files: nothing trained, the choice and the tables unchanged"
cp "$root/w/sweep/choice.json" "$root/choice.second"
cp "$root/w/study/results.json" "$root/results.second"
runs_before=$(ls "$root/w/runs" | wc -l)
study third
cmp -s "$root/w/sweep/choice.json" "$root/choice.second" || { echo "FAIL: the third study changed the choice"; exit 1; }
[ "$(ls "$root/w/runs" | wc -l)" -eq "$runs_before" ] || { echo "FAIL: the third study trained new runs"; exit 1; }
python3 - "$root/w/study/results.json" "$root/results.second" <<'EOF2'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
for d in (a, b): d.pop("wall_seconds", None)
sys.exit(0 if a == b else "FAIL: the third study's tables differ")
EOF2
echo "ok: nothing retrained, same choice and tables"
echo "== study test passed"
