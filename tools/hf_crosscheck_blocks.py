#!/usr/bin/env python3
"""Cross-check hylo's hybrid blocks against HF transformers, block by block.

Runs the three exporters of tools/hf_blocks/ (each builds the HF module with small random
dimensions, runs it on the CPU and writes inputs, weights under the spec's names and HF's
outputs as safetensors):
  mla.py     DeepseekV3Attention: MLA with Hm = H, interleaved rope, YaRN (two mscale settings)
  mamba2.py  Mamba2Mixer: stock layout, n_groups 1 and 2, prefill and cached decode
  gdn.py     Qwen3-Next: torch_chunk_gated_delta_rule / torch_recurrent_gated_delta_rule and the
             whole Qwen3NextGatedDeltaNet mixer
then, when a hylo build is given, runs hylo's block tests against the fresh files and prints
the measured NMSE of each comparison (`make test` runs the same tests on golden/hf_blocks/).

  tools/hf_crosscheck_blocks.py --out DIR                  # needs torch + transformers
  tools/hf_crosscheck_blocks.py --out DIR --build build    # and compare with hylo (after make)
  tools/hf_crosscheck_blocks.py --compare DIR --build build   # compare files exported elsewhere

Exit status: 0 when every comparison passes, 1 otherwise.
"""
import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BLOCKS = {"mla": "test_mla", "mamba2": "test_mamba2", "gdn": "test_gdn"}


def export(out):
    os.makedirs(out, exist_ok=True)
    for block in BLOCKS:
        print(f"== exporting {block}", flush=True)
        subprocess.run([sys.executable, os.path.join(HERE, "hf_blocks", f"{block}.py"), out],
                       check=True)


def compare(golden, build):
    """Runs the block tests with HYLO_TEST_ROOT pointing at a tree whose golden/hf_blocks is
    `golden`; prints their transformers lines and Check summaries."""
    failed = 0
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "golden"))
        os.symlink(os.path.abspath(golden), os.path.join(root, "golden", "hf_blocks"))
        for block, test in BLOCKS.items():
            binary = os.path.join(os.path.abspath(build), "tests", test)
            run = subprocess.run([binary], cwd=root, capture_output=True, text=True,
                                 env=dict(os.environ, HYLO_TEST_ROOT=root))
            for line in run.stdout.splitlines():
                if "transformers" in line or "HF" in line or "Checks:" in line or ":F:" in line:
                    print(f"{block}: {line}")
            failed += run.returncode != 0
    print(f"hf-crosscheck-blocks: {len(BLOCKS) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="export HF golden files into this directory")
    ap.add_argument("--compare", help="compare hylo with golden files already in this directory")
    ap.add_argument("--build", help="hylo build directory (make BUILD=...) with the block tests")
    args = ap.parse_args()
    if not args.out and not args.compare:
        ap.error("give --out or --compare")
    if args.out:
        export(args.out)
    if args.build:
        return compare(args.out or args.compare, args.build)
    return 0


if __name__ == "__main__":
    sys.exit(main())
