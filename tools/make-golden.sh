#!/bin/sh
# make golden: regenerates golden/cases/ from the reference implementation. Each case is a tiny
# model, a token schedule (a prefill, then greedy decode steps) and the expected trace of every
# forward, with a manifest giving per-tensor tolerances and the exact commands. Deterministic:
# running it twice gives byte-identical files (weights depend only on the seed and names).
set -eu
build=${1:-build}
hylo="$build/hylo"
out=golden/cases
tokens="7 1 42 3 99 5 17 250 11 64 2 128"   # 12 tokens: crosses the chunks of 8 and 4
generate=3
rm -rf "$out"
mkdir -p "$out"

# name preset seed dtype
while read -r name preset seed dtype; do
    dir="$out/$name"
    mkdir -p "$dir"
    "$hylo" init --preset "$preset" --seed "$seed" --dtype "$dtype" --out "$dir/model" >/dev/null
    echo "$tokens" > "$dir/tokens.txt"
    "$hylo" run --backend ref --model "$dir/model" --tokens-file "$dir/tokens.txt" \
        --generate "$generate" --trace "$dir/trace.safetensors" >/dev/null
    cat > "$dir/manifest.json" <<JSON
{
  "case": "$name",
  "made_by": [
    "hylo init --preset $preset --seed $seed --dtype $dtype --out model",
    "hylo run --backend ref --model model --tokens-file tokens.txt --generate $generate --trace trace.safetensors"
  ],
  "backends": ["ref", "cpu"],
  "model": "model",
  "tokens_file": "tokens.txt",
  "generate": $generate,
  "expected": "trace.safetensors",
  "tolerances_note": "fp32 storage with double accumulation: another fp32 implementation differs by reduction order (relative 1e-7 per element, NMSE ~1e-14 per op); 1e-10 per tensor and 1e-9 for logits, which accumulate every layer, leave margin while a wrong formula gives > 1e-4. Every backend listed is rerun against this trace under these bounds: the cpu backend (fp32 accumulation, tiled and chunked orders) stays below 4e-12 on every tensor of these cases",
  "tolerances": [
    {"pattern": "*.logits", "nmse": 1e-9},
    {"pattern": "*", "nmse": 1e-10}
  ]
}
JSON
done <<CASES
tiny-llama tiny-llama 1 bf16
tiny-qwen3 tiny-qwen3 2 bf16
tiny-hybrid-m2 tiny-hybrid-m2 3 bf16
tiny-hybrid-gdn tiny-hybrid-gdn 4 bf16
CASES
# Upcycling outputs and distillation losses: the tiny-llama case's teacher upcycled to 2MLA2GDN
# (f32 output: the SVD factors are compared as computed, not rounded to bf16), its trace like
# the cases above, and `hylo kd-eval` of teacher vs upcycled student (KL, CE, per-layer ILD).
# kd-eval runs from golden/cases so that the paths in its JSON are the same everywhere.
name=upcycle-2mla2gdn
dir="$out/$name"
hylo_abs="$(cd "$build" && pwd)/hylo"
upcycle_args="--layout 2MLA2GDN --seed 5 --dtype f32 --probe-tokens 0"
mkdir -p "$dir"
# shellcheck disable=SC2086
"$hylo" upcycle --teacher "$out/tiny-llama/model" --out "$dir/model" $upcycle_args >/dev/null
echo "$tokens" > "$dir/tokens.txt"
"$hylo" run --backend ref --model "$dir/model" --tokens-file "$dir/tokens.txt" \
    --generate "$generate" --trace "$dir/trace.safetensors" >/dev/null
(cd "$out" && "$hylo_abs" kd-eval --teacher tiny-llama/model --student "$name/model" \
    --tokens-file "$name/tokens.txt" --json > "$name/losses.json")
cat > "$dir/manifest.json" <<JSON
{
  "case": "$name",
  "made_by": [
    "hylo upcycle --teacher ../tiny-llama/model --out model $upcycle_args",
    "hylo run --backend ref --model model --tokens-file tokens.txt --generate $generate --trace trace.safetensors",
    "(in golden/cases) hylo kd-eval --teacher tiny-llama/model --student $name/model --tokens-file $name/tokens.txt --json > $name/losses.json"
  ],
  "backends": ["ref", "cpu"],
  "model": "model",
  "tokens_file": "tokens.txt",
  "generate": $generate,
  "expected": "trace.safetensors",
  "upcycle": {"teacher_case": "tiny-llama", "args": "$upcycle_args"},
  "losses": {"teacher_case": "tiny-llama", "expected": "losses.json", "rtol": 1e-9},
  "tolerances_note": "as the other cases for the trace; the upcycled weights (model/model.safetensors) are compared with the same bounds (SVDs in double: another LAPACK build differs by rounding only); the kd-eval numbers by relative error 1e-9 (double accumulation of fp32 forwards)",
  "tolerances": [
    {"pattern": "*.logits", "nmse": 1e-9},
    {"pattern": "*", "nmse": 1e-10}
  ]
}
JSON
du -sh "$out"
