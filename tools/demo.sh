#!/bin/sh
# make demo: creates the tiny default teachers and runs a prompt through each with the
# reference implementation: prefill, greedy decode over the KV cache, top logits.
set -eu
build=${1:-build}
hylo="$build/hylo"
work=$(mktemp -d "${TMPDIR:-/tmp}/hylo-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
prompt="1 15 27 3 99 42 7 128"
for preset in tiny-llama tiny-qwen3; do
    echo "== $preset"
    "$hylo" init --preset "$preset" --seed 0 --out "$work/$preset"
    "$hylo" run --model "$work/$preset" --tokens "$prompt" --generate 8 --top-k 5
    echo
done
