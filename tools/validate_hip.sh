#!/usr/bin/env bash
# validate_hip.sh: builds the HIP backend and checks it against the reference on this machine's
# GPU, ending with one table (README "HIP backend"):
#   1. hylo-hip-check: every op on fresh random inputs (outputs poisoned with NaN first), NMSE
#      per op against ref/ under per-dtype limits, under each GEMM engine; the golden models
#      whole in fp32 and bf16;
#   2. every golden case (golden/cases/*) rerun with --backend hip, its trace diffed against
#      the expected one by `hylo diff` under the manifest's tolerances;
#   3. tiny hybrids (MLA + GDN, MLA + Mamba2) and a teacher on a 300-token prompt (many chunks,
#      several decode splits) and 4 decode steps, ref trace vs hip trace, same tolerances.
# Options: --platform nvidia|amd (default: nvidia when nvidia-smi sees a GPU), --seed N,
# --bench (after the table, hylo-hip-bench on random full-size Llama-3.2-1B models in bf16: the
# teacher, 4MLA12GDN and 4MLA12M2 at each context of --bench-contexts LIST, all three decoding
# over a cache of --long N positions (a model that does not fit says so), then the fused KD/CE
# loss: the README's table), --long-prefill C (the two hybrids fill that cache by a real
# prefill of N tokens, C per forward call, instead of random values: ~8 minutes each at 2M on
# an H100), --no-build (use the binaries already in build/ and build/hip-<platform>/). Exit
# status 0 when every check passes.
set -uo pipefail
cd "$(dirname "$0")/.."

platform=""; seed=1; bench=0; build=1; contexts="1024,8192,32768,131072"; long=2097152
long_prefill=0
while [ $# -gt 0 ]; do
    case "$1" in
    --platform) platform=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --bench) bench=1; shift ;;
    --no-build) build=0; shift ;;
    --bench-contexts) contexts=$2; shift 2 ;;
    --long) long=$2; shift 2 ;;
    --long-prefill) long_prefill=$2; shift 2 ;;
    *) echo "usage: tools/validate_hip.sh [--platform nvidia|amd] [--seed N] [--bench]" \
            "[--bench-contexts LIST] [--long N] [--long-prefill C] [--no-build]" >&2; exit 2 ;;
    esac
done
if [ -z "$platform" ]; then
    if nvidia-smi -L >/dev/null 2>&1; then platform=nvidia; else platform=amd; fi
fi
if [ "$build" = 1 ]; then
    make -s -j"$(nproc 2>/dev/null || echo 4)" all hip HIP_PLATFORM="$platform" ||
        { echo "validate_hip: build failed"; exit 1; }
fi
hylo=build/hylo                      # the reference side and hylo diff
hip=build/hip-$platform              # hylo with --backend hip, hylo-hip-check, hylo-hip-bench
work=$(mktemp -d "${TMPDIR:-/tmp}/hylo-hip.XXXXXX")
trap 'rm -rf "$work"' EXIT
summary=()
failures=0

# The largest NMSE of a `hylo diff --json` report, and its verdict line.
worst_nmse() {
    python3 -c 'import json,sys; t=json.load(sys.stdin)["tensors"]; print("%.2e" % max([x["nmse"] for x in t if x["nmse"] is not None] or [0]))'
}

# diff_traces NAME EXPECTED GOT TOLERANCES
diff_traces() {
    local name=$1 expected=$2 got=$3 tol=$4 verdict worst
    if "$hylo" diff "$expected" "$got" --tolerances "$tol" > "$work/diff.txt" 2>&1; then
        verdict=ok
    else
        verdict=FAIL; failures=$((failures + 1))
        grep -E "first divergent|FAIL|failed" "$work/diff.txt" | head -5
    fi
    worst=$("$hylo" diff "$expected" "$got" --tolerances "$tol" --json 2>/dev/null | worst_nmse)
    summary+=("$(printf '%-44s %-10s %6s  %s' "$name" "${worst:-?}" "$verdict" "$(tail -n 1 "$work/diff.txt")")")
}

echo "== 1. ops against ref/ (hylo-hip-check --seed $seed)"
models=$(ls -d golden/cases/*/model)
if "$hip/hylo-hip-check" --seed "$seed" --models $models | tee "$work/check.txt"; then v=ok; else v=FAIL; failures=$((failures + 1)); fi
summary+=("$(printf '%-44s %-10s %6s  %s' "ops + golden models (hylo-hip-check)" "-" "$v" "$(tail -n 1 "$work/check.txt")")")

echo "== 2. golden cases through hylo run --backend hip"
for dir in golden/cases/*/; do
    case=$(basename "$dir")
    generate=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generate"])' "$dir/manifest.json")
    if "$hip/hylo" run --backend hip --model "$dir/model" --tokens-file "$dir/tokens.txt" \
            --generate "$generate" --trace "$work/$case.safetensors" > /dev/null; then
        diff_traces "golden $case" "$dir/trace.safetensors" "$work/$case.safetensors" "$dir/manifest.json"
    else
        failures=$((failures + 1)); summary+=("$(printf '%-44s %-10s %6s' "golden $case" "-" "FAIL (run)")")
    fi
done

echo "== 3. tiny models on a 300-token prompt, ref vs hip traces"
python3 -c 'import random; r=random.Random(5); print(" ".join(str(r.randrange(256)) for _ in range(300)))' > "$work/prompt.txt"
for preset in tiny-hybrid-gdn tiny-hybrid-m2 tiny-qwen3; do
    "$hylo" init --preset "$preset" --seed 11 --dtype f32 --out "$work/$preset" > /dev/null || exit 1
    "$hylo" run --backend ref --model "$work/$preset" --tokens-file "$work/prompt.txt" --generate 5 \
        --trace "$work/$preset.ref.safetensors" > /dev/null || exit 1
    if "$hip/hylo" run --backend hip --model "$work/$preset" --tokens-file "$work/prompt.txt" \
            --generate 5 --trace "$work/$preset.hip.safetensors" > /dev/null; then
        diff_traces "$preset, 300 tokens + 4 steps" "$work/$preset.ref.safetensors" \
            "$work/$preset.hip.safetensors" golden/cases/tiny-llama/manifest.json
    else
        failures=$((failures + 1)); summary+=("$(printf '%-44s %-10s %6s' "$preset" "-" "FAIL (run)")")
    fi
done

echo
echo "== validate_hip summary ($platform, seed $seed)"
printf '%-44s %-10s %6s  %s\n' "check" "max nmse" "result" "detail"
for line in "${summary[@]}"; do echo "$line"; done
echo "validate_hip: $failures failing group(s)"

if [ "$bench" = 1 ]; then
    echo "== 4. benchmarks: random Llama-3.2-1B shapes, bf16 weights"
    for layout in teacher 4MLA12GDN 4MLA12M2; do
        extra=(); [ "$layout" = teacher ] || extra=(--layout "$layout")
        "$hylo" init --preset llama-3.2-1b "${extra[@]}" --out "$work/llama-1b-$layout" > /dev/null || exit 1
    done
    if [ "$long_prefill" = 0 ]; then
        "$hip/hylo-hip-bench" --contexts "$contexts" --long "$long" "$work/llama-1b-teacher" \
            "$work/llama-1b-4MLA12GDN" "$work/llama-1b-4MLA12M2"
    else # the teacher's 16 attention layers would prefill 2M tokens in ~25 minutes: random cache
        "$hip/hylo-hip-bench" --contexts "$contexts" --long "$long" "$work/llama-1b-teacher"
        "$hip/hylo-hip-bench" --contexts "$contexts" --long "$long" --long-prefill "$long_prefill" \
            "$work/llama-1b-4MLA12GDN" "$work/llama-1b-4MLA12M2"
    fi
    "$hip/hylo-hip-bench" --kd 4096,8192
fi
[ "$failures" -eq 0 ]
