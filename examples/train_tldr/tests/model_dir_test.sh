#!/usr/bin/env bash
# train_tldr from a Hugging Face GPT-2 folder (--model-dir), made here by tests/hf_gpt2_reference.py
# with a byte-level BPE tokenizer.json learned from the Debian sample:
#  - with 0 SFT steps, the SFT model exported back is the folder itself: identical logits, so SFT
#    starts from the folder's weights;
#  - the miniature pipeline (every stage, BRAIn) runs and exports the aligned policy, whose folder
#    gives exactly the logits of the run's checkpoint and agrees with NumPy's forward pass.
#   model_dir_test.sh <train_tldr> <hf_driver> <python with numpy> <examples/train_tldr> <scratch directory>
set -euo pipefail
bin=$1 driver=$2 python=$3 src=$4 root=$5
rm -rf "$root"
mkdir -p "$root/lists"
cp "$src/data/Translation-en.sample" "$root/lists/sample_i18n_Translation-en"
reference="$src/tests/hf_gpt2_reference.py"
"$python" "$reference" make "$root/gpt2" --corpus "$src/data/Translation-en.sample" --merges 200 \
  --layers 1 --d-model 32 --heads 2 --context 64
run() { "$bin" --config "$src/tests/mini.toml" --apt-lists "$root/lists" --model-dir "$root/gpt2" "$@"; }

# 1. SFT starts from the folder.
run --workdir "$root/zero" --sft-steps 0 sft > "$root/zero.log" 2>&1 || { cat "$root/zero.log"; exit 1; }
cmp "$root/gpt2/tokenizer.json" "$root/zero/tokenizer/tokenizer.json"
run --workdir "$root/zero" export --export-from "$root/zero/sft/model.pt" --export-to "$root/zero/exported" \
  > "$root/zero-export.log" 2>&1 || { cat "$root/zero-export.log"; exit 1; }
"$python" "$reference" compare "$driver" "$root/zero/sft/model.pt" "$root/gpt2"
"$python" "$reference" compare "$driver" "$root/zero/sft/model.pt" "$root/zero/exported"

# 2. The pipeline, and its aligned policy back as a folder.
run --workdir "$root/work" --arms brain > "$root/work.log" 2>&1 || { tail -50 "$root/work.log"; exit 1; }
runs=("$root"/work/export/*)
[ ${#runs[@]} -eq 1 ] && [ -f "${runs[0]}/config.json" ] || { echo "FAIL: expected one exported folder: ${runs[*]}"; exit 1; }
name=$(basename "${runs[0]}")
for f in config.json model.safetensors tokenizer.json; do
  [ -s "${runs[0]}/$f" ] || { echo "FAIL: ${runs[0]}/$f is missing"; exit 1; }
done
"$python" "$reference" compare "$driver" "$root/work/runs/$name/best.pt" "${runs[0]}"
grep -q "BRAIn" "$root/work/eval/results.md" || { echo "FAIL: no BRAIn row in the report"; exit 1; }
echo "model_dir_test: passed"
