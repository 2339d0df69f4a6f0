#!/bin/sh
# make demo: creates the tiny default teachers and tiny hybrids (MLA + Mamba2, MLA + Gated
# DeltaNet), runs a prompt through each with the reference implementation (prefill, greedy
# decode over the caches and states, top logits) and shows what the hybrids save.
set -eu
build=${1:-build}
hylo="$build/hylo"
work=$(mktemp -d "${TMPDIR:-/tmp}/hylo-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
prompt="1 15 27 3 99 42 7 128"
for preset in tiny-llama tiny-qwen3 tiny-hybrid-m2 tiny-hybrid-gdn; do
    echo "== $preset"
    "$hylo" init --preset "$preset" --seed 0 --out "$work/$preset"
    "$hylo" run --model "$work/$preset" --tokens "$prompt" --generate 8 --top-k 5
    echo
done
echo "== KV cache of the paper's layouts (Llama-3.2-1B shape, no weights needed)"
for layout in 4MLA12GDN 8MLA8M2; do
    "$hylo" info --preset llama-3.2-1b --layout "$layout" --context 65536 | grep -E "model:|this model|teacher"
done
echo
echo "== upcycling the tiny-llama teacher (spec sec. 7): MLA by SVD, GDN / Mamba2 from its attention"
teacher="$work/tiny-llama"
echo "-- teacher on the prompt"
"$hylo" run --model "$teacher" --tokens "$prompt" --generate 8 | grep generated
for layout in 2MLA2GDN 2MLA2M2; do
    hybrid="$work/tiny-llama-$layout"
    echo "-- $layout"
    "$hylo" upcycle --teacher "$teacher" --out "$hybrid" --layout "$layout" --probe-tokens 64
    "$hylo" run --model "$hybrid" --tokens "$prompt" --generate 8 | grep generated
    "$hylo" info --model "$hybrid" | grep -E "teacher \(attention\)|this model|recurrent"
    echo
done
