#!/usr/bin/env bash
# `train_tldr study` on the miniature pipeline (docs/train_tldr.md, "The protocol"):
#  - the pre-registration is written first and a study asking for other comparisons stops;
#  - the sweep runs at its own seed, never a study seed; every choice is one that was tried, the
#    edge rule's notes agree with the grids (an "interior" choice is no edge of what was tried),
#    each swept arm stays within its trial budget and the limits; SFT gets a temperature too;
#  - every pre-registered comparison has a verdict from its seed-level interval, with the seeds
#    asked for; the paper's tables, the n sweep, convergence and the curves are there;
#  - a choice once written never changes: an arm missing from sweep/choice.json is swept and
#    added, an edited entry is kept and used; a complete study reruns from its files.
#   study_test.sh <train_tldr> <Translation-en sample> <config> <scratch directory>
set -euo pipefail
bin=$1 sample=$2 config=$3 root=$4
rm -rf "$root"
mkdir -p "$root/lists"
cp "$sample" "$root/lists/sample_i18n_Translation-en"
options=(--config "$config" --threads 1 --apt-lists "$root/lists" --workdir "$root/w"
  --study-seeds 2 --study-other-seeds 1 --study-samples-seeds 1 --study-first-seed 1 --study-sweep-seed 101
  --study-betas 0.1,0.2 --study-beta-min 0.05 --study-beta-max 0.4 --study-lrs 1e-4,2e-4 --study-lr-min 1e-4
  --study-lr-max 2e-4 --study-trials 4 --study-temperatures 0.5,0.7 --study-samples 2,4 --study-curve-seeds 1
  --study-curve-prompts 8 --study-refreshes 2 --study-patience 1)
study() {
  "$bin" study "${options[@]}" "${@:2}" > "$root/$1.md" 2> "$root/$1.err" ||
    { cat "$root/$1.err"; echo "FAIL: study ($1) failed"; exit 1; }
}

echo "== the study from scratch"
study first
python3 - "$root/w" <<'EOF'
import json, sys
w = sys.argv[1]
r = json.load(open(f"{w}/study/results.json"))
choice = json.load(open(f"{w}/sweep/choice.json"))
pre = json.load(open(f"{w}/study/preregistration.json"))
fail = []
swept = ["dpo", "dpo_sft", "rso", "brain", "rloo", "grpo"]
if choice["seed"] != 101: fail.append(f"the sweep ran at seed {choice['seed']}")
for g in choice["grid"]:
    if not (0.05 <= g["beta"] <= 0.4 and 1e-4 <= g["lr"] <= 2e-4): fail.append(f"grid run outside the limits: {g}")
for arm in swept:
    s = choice["settings"].get(arm)
    if s is None: fail.append(f"no choice for {arm}"); continue
    tried = [g for g in choice["grid"] if g["arm"] == arm]
    betas = sorted({g["beta"] for g in tried}); lrs = sorted({g["lr"] for g in tried if g["beta"] == s["beta"]})
    if s["trials"] > 4 or s["trials"] != len(tried): fail.append(f"{arm}: {s['trials']} trials, {len(tried)} in the grid")
    if s["beta"] not in betas or s["lr"] not in lrs: fail.append(f"{arm}: the choice {s} was not tried")
    for value, values, note in ((s["beta"], betas, s["beta_edge"]), (s["lr"], lrs, s["lr_edge"])):
        edge = value in (values[0], values[-1]) and len(values) > 1
        if note == "interior" and edge: fail.append(f"{arm}: {value} is called interior but is an edge of {values}")
        if note not in ("interior", "at the lower limit", "at the upper limit", "budget spent"): fail.append(f"{arm}: note {note}")
    if s["temperature"] not in (0.5, 0.7): fail.append(f"{arm}: temperature {s['temperature']}")
if choice["sft_temperature"]["temperature"] not in (0.5, 0.7): fail.append("no SFT temperature from the grid")
if len(r["primary"]) != len(pre["primaries"]) or len(pre["primaries"]) < 8: fail.append("primaries missing")
for c in r["primary"]:
    if c["verdict"] not in ("ahead", "level", "behind", "undecided"): fail.append(f"{c['comparison']}: {c['verdict']}")
    if c["seeds"] != 2: fail.append(f"{c['comparison']}: {c['seeds']} seeds, expected 2")
    o = c["oracle"]
    if not (o["low"] <= o["low95"] <= o["high95"] <= o["high"]): fail.append(f"{c['comparison']}: intervals {o}")
    if len(o["per_seed"]) != 2: fail.append(f"{c['comparison']}: per-seed differences {o['per_seed']}")
second = {c["comparison"]: c for c in r["secondary"]}
if second["brain:dpo"]["seeds"] != 1 or second["brain:sft"]["seeds"] != 2: fail.append("secondary seeds")
titles = list(r["tables"])
if len(titles) != 4: fail.append(f"tables: {titles}")
def evals(summary, row):
    rows = {x["id"]: x for x in summary["rows"]}
    return rows[row]["evals"] if row in rows else None
def table(prefix):  # the JSON object's keys come back sorted, so look a table up by its title
    return next(v for k, v in r["tables"].items() if k.startswith(prefix))
t1 = table("Table 1:")
expect = {"brain": 2, "sft": 2, "rso": 1, "dpo": 1, "dpo_sft": 2}
for row, seeds in expect.items():
    e = evals(t1, row)
    if e is None or len(e) != seeds: fail.append(f"Table 1/{row}: {e}, expected {seeds} seeds")
bridge = table("Table 3:")
for row in ("dpo_sft_iw", "dpo_sft@brain", "dpo_sft_iw@dpo_sft"):
    if evals(bridge, row) is None: fail.append(f"no bridge row {row}")
b = choice["settings"]["brain"]
want = f"brain-n4-b{b['beta']:g}-lr{b['lr']:g}-s1-r2-p1-t{b['temperature']:g}"
if evals(t1, "brain")[0] != want: fail.append(f"BRAIn's row {evals(t1, 'brain')[0]}, expected {want}")
if any("-s101-" in e for row in t1["rows"] for e in row["evals"]): fail.append("a study row uses the sweep's seed")
if evals(r["n_sweep"], "brain-n2") is None: fail.append("no n = 2 row")
if len(r["convergence"]) < 10: fail.append(f"convergence of {len(r['convergence'])} rows")
for row in ("brain", "dpo_sft", "rloo"):
    if len(r["curves"].get(row, [])) != 1 or len(r["curves"][row][0]) < 2: fail.append(f"no curve for {row}")
    if len(r["validation_curves"].get(row, [])) != 1: fail.append(f"no validation curve for {row}")
print("\n".join("FAIL: " + f for f in fail) or "ok: pre-registration, sweep, verdicts, tables and curves as asked")
sys.exit(1 if fail else 0)
EOF
# gnuplot is installed by scripts/setup: every plot the report links must be drawn.
for png in frontier oracle_vs_steps oracle_vs_kl valid_rm_vs_steps; do
  [ -s "$root/w/study/$png.png" ] || { grep -i gnuplot "$root/first.err"; echo "FAIL: study/$png.png not drawn"; exit 1; }
done
for section in '### Pre-registered comparisons' '### The PPO family' '### Training length' '### Oracle score at matched KL' '### The sweep'; do
  grep -q "$section" "$root/first.md" || { echo "FAIL: no '$section' in the report"; exit 1; }
done

echo "== a study asking for other comparisons than it registered stops"
if "$bin" study "${options[@]}" --study-primaries brain:dpo > "$root/other.md" 2> "$root/other.err"; then
  echo "FAIL: the study ran with other primaries"; exit 1
fi
grep -q "pre-registered other comparisons" "$root/other.err" || { cat "$root/other.err"; echo "FAIL: no reason given"; exit 1; }

echo "== a choice is kept as written; an arm missing from it is swept and added"
python3 - "$root/w/sweep/choice.json" <<'EOF'
import json, sys
path = sys.argv[1]
c = json.load(open(path))
json.dump(c, open(path + ".first", "w"), indent=2)
b = c["settings"]["rso"]                         # RSO: one row, one seed, so little to retrain
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
if now["settings"]["rso"]["beta"] == first["settings"]["rso"]["beta"]:
    fail.append("the edited RSO choice was recomputed")
for arm in ["dpo", "dpo_sft", "brain", "rloo"]:
    if now["settings"][arm] != first["settings"][arm]: fail.append(f"{arm}'s choice changed")
if now["sft_temperature"] != first["sft_temperature"]: fail.append("SFT's temperature changed")
b = now["settings"]["rso"]
t1 = next(v for k, v in r["tables"].items() if k.startswith("Table 1:"))
row = {x["id"]: x for x in t1["rows"]}["rso"]["evals"][0]
if f"-b{b['beta']:g}-" not in row: fail.append(f"RSO's row {row} does not use the edited choice β = {b['beta']}")
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
