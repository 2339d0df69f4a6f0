#!/usr/bin/env python3
"""Cross-check hylo's reference teacher forward against HF transformers.

Builds tiny random LlamaForCausalLM / Qwen2ForCausalLM / Qwen3ForCausalLM models covering the
teacher features hylo implements (GQA, llama3 / yarn / linear rope scaling, tied and untied
heads, Qwen2 q/k/v biases, Llama attention and MLP biases, Qwen3 q/k norms with an explicit
head_dim), saves them with save_pretrained, runs them in fp32 on the CPU with eager attention,
and compares their logits with `hylo run --logits` on the same tokens (NMSE, max abs error).

It also checks the other direction: checkpoints written by `hylo init` (bf16, f32, sharded)
are loaded by transformers' from_pretrained and must give the same logits.

  tools/hf_crosscheck.py all --hylo build/hylo --work DIR      # needs torch + transformers + hylo
  tools/hf_crosscheck.py prepare --hylo build/hylo --work DIR  # hylo-written checkpoints
  tools/hf_crosscheck.py export --work DIR                      # needs torch + transformers
  tools/hf_crosscheck.py compare --hylo build/hylo --work DIR   # needs only hylo (stdlib Python)

`prepare`, `export` and `compare` split the job between a machine with hylo and one with PyTorch.
Exit status: 0 when every case is within tolerance, 1 otherwise, 2 on bad usage.
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
from array import array

# NMSE threshold on logits. HF computes in fp32 (RoPE angles and cos/sin included) while hylo
# accumulates in double; on these 2-3 layer models with O(1) logits that leaves NMSE around
# 3e-13..5e-13 (measured with transformers 5.17, torch 2.11). 1e-10 keeps a wide margin over
# rounding while any formula difference (rope pairing, norm placement, a missing bias, a wrong
# scaling regime) gives NMSE > 1e-4.
NMSE_TOLERANCE = 1e-10

TOKENS = [1, 17, 250, 3, 99, 42, 7, 128, 5, 64, 200, 11, 0, 31, 77, 150, 9, 23, 180, 2,
          44, 88, 132, 16, 240, 6, 55, 101, 13, 70, 222, 4]

# name -> (architecture, config keyword arguments, rope parameters or None)
CASES = {
    "llama-gqa-llama3-untied": ("llama", dict(
        vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
        num_attention_heads=8, num_key_value_heads=2, rms_norm_eps=1e-5,
        max_position_embeddings=2048, tie_word_embeddings=False),
        dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
             high_freq_factor=4.0, original_max_position_embeddings=64)),
    "llama-mha-biases-tied": ("llama", dict(
        vocab_size=256, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, rms_norm_eps=1e-6, attention_bias=True,
        mlp_bias=True, tie_word_embeddings=True), dict(rope_type="default", rope_theta=10000.0)),
    "llama-linear-rope": ("llama", dict(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, tie_word_embeddings=False),
        dict(rope_type="linear", rope_theta=10000.0, factor=4.0)),
    "qwen2-qkv-bias": ("qwen2", dict(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
        tie_word_embeddings=False), dict(rope_type="default", rope_theta=1000000.0)),
    "qwen3-qknorm-tied": ("qwen3", dict(
        vocab_size=256, hidden_size=64, intermediate_size=192, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-6,
        tie_word_embeddings=True), dict(rope_type="default", rope_theta=1000000.0)),
    "qwen3-yarn": ("qwen3", dict(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=4096, tie_word_embeddings=False),
        dict(rope_type="yarn", rope_theta=1000000.0, factor=4.0,
             original_max_position_embeddings=1024)),
}


# name -> `hylo init` arguments: checkpoints written by hylo for transformers to load.
HYLO_CASES = {
    "hylo-tiny-llama-bf16": ["--preset", "tiny-llama", "--seed", "1", "--dtype", "bf16"],
    "hylo-tiny-qwen3-sharded": ["--preset", "tiny-qwen3", "--seed", "2", "--dtype", "f32",
                                "--shard-mb", "1"],
}


def write_tokens(case):
    with open(os.path.join(case, "tokens.txt"), "w") as f:
        f.write(" ".join(map(str, TOKENS)) + "\n")


def prepare(work, hylo):
    for name, args in HYLO_CASES.items():
        case = os.path.join(work, name)
        subprocess.run([hylo, "init", *args, "--out", case, "--force"], check=True)
        write_tokens(case)
        print(f"prepared {name}")


def build_config(arch, kwargs, rope):
    import transformers
    cls = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config,
           "qwen3": transformers.Qwen3Config}[arch]
    major = int(transformers.__version__.split(".")[0])
    if major >= 5:  # rope settings live in rope_parameters, theta included
        return cls(rope_parameters=dict(rope), **kwargs)
    rope = dict(rope)
    theta = rope.pop("rope_theta")
    scaling = None if rope["rope_type"] == "default" else rope
    return cls(rope_theta=theta, rope_scaling=scaling, **kwargs)


def export(work):
    import torch
    import transformers
    from safetensors.torch import save_file
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    torch.manual_seed(0)
    for name, (arch, kwargs, rope) in CASES.items():
        config = build_config(arch, kwargs, rope)
        config._attn_implementation = "eager"
        cls = {"llama": transformers.LlamaForCausalLM, "qwen2": transformers.Qwen2ForCausalLM,
               "qwen3": transformers.Qwen3ForCausalLM}[arch]
        model = cls(config).float().eval()
        with torch.no_grad():  # O(1) logits: random init at a scale where every weight matters
            for pname, p in model.named_parameters():
                if "norm" in pname:
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
                elif p.dim() == 1:
                    p.copy_(0.05 * torch.randn_like(p))
                else:
                    p.copy_(torch.randn_like(p) / math.sqrt(p.shape[1]))
            logits = model(torch.tensor([TOKENS])).logits[0].float().contiguous()
        out = os.path.join(work, name)
        model.save_pretrained(out, safe_serialization=True)
        save_file({"logits": logits}, os.path.join(out, "hf_logits.safetensors"))
        write_tokens(out)
        print(f"exported {name}: logits {tuple(logits.shape)}")
    for name in HYLO_CASES:  # hylo-written checkpoints, if `prepare` made them
        case = os.path.join(work, name)
        if not os.path.isdir(case):
            continue
        model = transformers.AutoModelForCausalLM.from_pretrained(
            case, dtype=torch.float32, attn_implementation="eager").eval()
        with torch.no_grad():
            logits = model(torch.tensor([TOKENS])).logits[0].float().contiguous()
        save_file({"logits": logits}, os.path.join(case, "hf_logits.safetensors"))
        print(f"ran {name} with transformers: logits {tuple(logits.shape)}")


def read_f32_tensor(path, name):
    """Reads one F32 tensor from a safetensors file with the standard library alone."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        info = header[name]
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} is {info['dtype']}, expected F32")
        begin, end = info["data_offsets"]
        f.seek(8 + n + begin)
        values = array("f")
        values.frombytes(f.read(end - begin))
    if sys.byteorder != "little":
        values.byteswap()
    return values, info["shape"]


def compare(work, hylo):
    rows, failed = [], 0
    names = list(CASES) + [n for n in HYLO_CASES if os.path.isdir(os.path.join(work, n))]
    for name in names:
        case = os.path.join(work, name)
        ours = os.path.join(case, "hylo_logits.safetensors")
        run = subprocess.run([hylo, "run", "--model", case, "--tokens-file",
                              os.path.join(case, "tokens.txt"), "--logits", ours],
                             capture_output=True, text=True)
        if run.returncode != 0:
            rows.append((name, float("inf"), float("inf"), "hylo failed: " + run.stderr.strip()))
            failed += 1
            continue
        ref, ref_shape = read_f32_tensor(os.path.join(case, "hf_logits.safetensors"), "logits")
        got, got_shape = read_f32_tensor(ours, "logits")
        if ref_shape != got_shape:
            rows.append((name, float("inf"), float("inf"), f"shape {got_shape} vs {ref_shape}"))
            failed += 1
            continue
        num = sum((a - b) ** 2 for a, b in zip(got, ref))
        den = sum(b * b for b in ref)
        nmse = num / den if den else float("inf")
        if any(math.isnan(a) for a in got):
            nmse = float("inf")
        max_abs = max(abs(a - b) for a, b in zip(got, ref))
        ok = nmse <= NMSE_TOLERANCE
        failed += not ok
        rows.append((name, nmse, max_abs, "ok" if ok else f"NMSE > {NMSE_TOLERANCE:g}"))
    print(f"{'case':28s} {'NMSE':>10s} {'max abs':>10s}  verdict")
    for name, nmse, max_abs, verdict in rows:
        print(f"{name:28s} {nmse:10.3e} {max_abs:10.3e}  {verdict}")
    print(f"hf-crosscheck: {len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["all", "prepare", "export", "compare"])
    parser.add_argument("--work", required=True, help="directory for the cases")
    parser.add_argument("--hylo", default="build/hylo", help="path of the hylo binary")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    if args.mode in ("all", "prepare"):
        prepare(args.work, args.hylo)
    if args.mode in ("all", "export"):
        export(args.work)
    if args.mode in ("all", "compare"):
        return compare(args.work, args.hylo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
