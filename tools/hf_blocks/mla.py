#!/usr/bin/env python3
"""Golden cases for hylo's MLA reference mixer (ref/layers/mla.c) from HF transformers.

Builds transformers' DeepseekV3Attention (MLA with Hm = H, q_lora_rank, q_a_layernorm and
kv_a_layernorm, rope_interleave=True, YaRN rope scaling) with small random dimensions, runs it
on the CPU with eager attention over T = 19 tokens at positions 0..18 under a causal mask, and
writes one safetensors file per case into OUTDIR:

  mla-<case>.safetensors   F32 tensors
    x [T, D]                                the input hidden states
    q_a_proj.weight, q_a_layernorm.weight, q_b_proj.weight, kv_a_proj_with_mqa.weight,
    kv_a_layernorm.weight, kv_b_proj.weight, o_proj.weight       (nn.Linear layout)
    inv_freq [rope/2]                       DeepseekV3RotaryEmbedding.inv_freq
    attention_scaling [1]                   the factor HF multiplies cos and sin by
    softmax_scale [1]                       DeepseekV3Attention.scaling
    y [T, D]                                HF's output, module in float32
    y_f64 [T, D]                            the same module and inputs in float64
  metadata: the dimensions and rope parameters as strings.

Cases:
  yarn-dsv3    mscale = mscale_all_dim = 1 (DeepSeek-V3's setting): cos/sin factor 1, softmax
               scale multiplied by yarn_get_mscale(factor, mscale_all_dim)^2
  yarn-mscale  mscale 1, mscale_all_dim 0.707: a cos/sin factor != 1 and the softmax term

  python3 tools/hf_blocks/mla.py OUTDIR [--sources FILE]
--sources also writes the transformers source of the pieces whose semantics the C test pins
down (attention, interleaved rotary, YaRN init, yarn_get_mscale / yarn_apply_mscale).
"""
import argparse
import inspect
import math
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers.models.deepseek_v3 import modeling_deepseek_v3 as ds

T = 19
DIMS = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=4, q_lora_rank=32,
            kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=12)
ROPE = dict(rope_type="yarn", rope_theta=10000.0, factor=4.0, original_max_position_embeddings=64,
            beta_fast=32.0, beta_slow=1.0)
CASES = {
    "yarn-dsv3": dict(mscale=1.0, mscale_all_dim=1.0),
    "yarn-mscale": dict(mscale=1.0, mscale_all_dim=0.707),
}
EPS = 1e-6
WEIGHTS = ["q_a_proj.weight", "q_a_layernorm.weight", "q_b_proj.weight",
           "kv_a_proj_with_mqa.weight", "kv_a_layernorm.weight", "kv_b_proj.weight",
           "o_proj.weight"]


def make_config(extra):
    rope = dict(ROPE, **extra)
    # max_position_embeddings = factor * original, so that versions deriving the YaRN factor
    # from their ratio agree with `factor`.
    cfg = ds.DeepseekV3Config(
        **DIMS, vocab_size=32, intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=1,
        n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1,
        max_position_embeddings=int(rope["factor"] * rope["original_max_position_embeddings"]),
        rms_norm_eps=EPS, attention_bias=False, rope_interleave=True, rope_parameters=rope)
    cfg._attn_implementation = "eager"
    return cfg


def randomize(attn, gen):
    """Linear weights N(0, 1/in) so that scores are O(1); norm weights 1 + N(0, 0.2^2)."""
    with torch.no_grad():
        for name, p in attn.named_parameters():
            if "layernorm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))


def run_attention(attn, rotary, x):
    """HF's attention output for x [1, T, D] at positions 0..T-1 under a causal mask."""
    pos = torch.arange(T)[None]
    cos, sin = rotary(x, pos)
    mask = torch.full((T, T), torch.finfo(x.dtype).min, dtype=x.dtype).triu(1)[None, None]
    out, _ = attn(hidden_states=x, position_embeddings=(cos, sin), attention_mask=mask)
    return out[0]


def export_case(name, extra, outdir, seed):
    cfg = make_config(extra)
    gen = torch.Generator().manual_seed(seed)
    attn = ds.DeepseekV3Attention(cfg, layer_idx=0).eval()
    randomize(attn, gen)
    rotary = ds.DeepseekV3RotaryEmbedding(config=cfg)
    x = torch.randn(1, T, DIMS["hidden_size"], generator=gen)
    with torch.no_grad():
        y = run_attention(attn, rotary, x)
        y64 = run_attention(attn.double(), rotary, x.double())
    attn.float()
    params = dict(attn.named_parameters())
    tensors = {"x": x[0]}
    for w in WEIGHTS:
        tensors[w] = params[w].detach()
    tensors["inv_freq"] = rotary.inv_freq.detach().float()
    tensors["attention_scaling"] = torch.tensor([float(rotary.attention_scaling)])
    tensors["softmax_scale"] = torch.tensor([float(attn.scaling)])
    tensors["y"] = y
    tensors["y_f64"] = y64.float()
    tensors = {k: v.contiguous().to(torch.float32) for k, v in tensors.items()}
    meta = {"T": str(T), "rms_norm_eps": repr(EPS), "transformers": transformers.__version__,
            "torch": torch.__version__}
    meta.update({k: str(v) for k, v in DIMS.items()})
    meta.update({k: str(v) for k, v in dict(ROPE, **extra).items()})
    path = os.path.join(outdir, "mla-%s.safetensors" % name)
    save_file(tensors, path, metadata=meta)
    print("%s: attention_scaling %.9g softmax_scale %.9g inv_freq %s |y| %.4g |y-y64|/|y64| %.3g"
          % (path, rotary.attention_scaling, attn.scaling, rotary.inv_freq.tolist(),
             y.norm().item(), ((y.double() - y64).norm() / y64.norm()).item()))
    print("config.rope_parameters:", cfg.rope_parameters)


def write_sources(path):
    from transformers import modeling_rope_utils as ru
    pieces = [ds.DeepseekV3Attention, ds.apply_rotary_pos_emb_interleave, ds.yarn_get_mscale,
              ds.yarn_apply_mscale, ds.DeepseekV3RotaryEmbedding, ru._compute_yarn_parameters,
              ds.eager_attention_forward, ds.DeepseekV3RMSNorm]
    with open(path, "w") as f:
        for p in pieces:
            f.write("#### %s.%s\n%s\n" % (p.__module__, p.__qualname__, inspect.getsource(p)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--sources", help="also write the relevant transformers source here")
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    if args.sources:
        write_sources(args.sources)
    for seed, (name, extra) in enumerate(CASES.items()):
        export_case(name, extra, args.outdir, 1000 + seed)


if __name__ == "__main__":
    main()
