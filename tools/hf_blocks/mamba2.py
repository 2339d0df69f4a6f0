#!/usr/bin/env python3
"""Golden data for hylo's Mamba2 reference mixer from HF transformers' Mamba2Mixer.

Builds a Mamba2Mixer (stock mamba_ssm layout) with small dims and random weights (A_log, dt_bias,
D, norm.weight and the conv bias all non-trivial), runs it on the CPU in fp32 (where it takes its
pure-PyTorch fallbacks: no CUDA kernels) on random inputs of a length that is not a multiple of
the chunk, and writes one safetensors file per case with the inputs, every weight under the
spec's parameter names (sec. 4) and HF's output:

  input [T, hidden], in_proj.weight, conv1d.weight [conv_dim, 1, K], conv1d.bias, dt_bias,
  A_log, D, norm.weight, out_proj.weight, output [T, hidden]

plus `output_f64` [T, hidden], the same module run in float64 (stored as F32; HF's scan
fallback still casts to fp32 inside, so only the projections, conv and norm gain precision),

and, when HF's cache API accepts a standalone mixer, a continuation: `decode_input` [S, hidden]
fed one token at a time after the prefill, with HF's `decode_output` [S, hidden], and the SSM
state the prefill left in the cache, `prefill_ssm_state` [H, P, N].
Metadata (strings): the dims, the eps, the transformers and torch versions.

  python3 tools/hf_blocks/mamba2.py OUTDIR        # writes OUTDIR/mamba2-<case>.safetensors
"""
import copy
import sys
import traceback

import torch
import transformers
from safetensors.torch import save_file
from transformers import Mamba2Config
from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer

# name -> (n_groups, seed). hidden 64, 4 heads of 16, d_state 16, chunk 8, 21 tokens (not a
# multiple of the chunk), then 3 decode steps.
CASES = {"stock-g1": (1, 1234), "stock-g2": (2, 4321)}
HIDDEN, HEADS, HEAD_DIM, STATE, CONV, CHUNK, SEQ, DECODE, EPS = 64, 4, 16, 16, 4, 8, 21, 3, 1e-5


def make_mixer(n_groups, gen):
    cfg = Mamba2Config(hidden_size=HIDDEN, num_heads=HEADS, head_dim=HEAD_DIM, state_size=STATE,
                       n_groups=n_groups, conv_kernel=CONV, chunk_size=CHUNK,
                       expand=HEADS * HEAD_DIM // HIDDEN, num_hidden_layers=1,
                       layer_norm_epsilon=EPS, use_conv_bias=True, use_bias=False,
                       vocab_size=32)
    mixer = Mamba2Mixer(cfg, layer_idx=0).float().eval()

    def rand(*shape, std=1.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float32) * std

    def uniform(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=torch.float32)

    with torch.no_grad():
        mixer.in_proj.weight.copy_(rand(*mixer.in_proj.weight.shape, std=HIDDEN ** -0.5))
        mixer.conv1d.weight.copy_(uniform(-0.5, 0.5, *mixer.conv1d.weight.shape))
        mixer.conv1d.bias.copy_(rand(*mixer.conv1d.bias.shape, std=0.1))
        dt = uniform(0.05, 0.8, HEADS)  # softplus(dt_bias) spread over a useful range
        mixer.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        mixer.A_log.copy_(torch.log(uniform(0.3, 3.0, HEADS)))
        mixer.D.copy_(1.0 + rand(HEADS, std=0.5))
        mixer.norm.weight.copy_(1.0 + rand(HEADS * HEAD_DIM, std=0.2))
        mixer.out_proj.weight.copy_(rand(HIDDEN, HEADS * HEAD_DIM, std=(HEADS * HEAD_DIM) ** -0.5))
    return cfg, mixer


def decode_with_cache(cfg, mixer, prefill, steps):
    """HF's own cached continuation: prefill, then one token at a time. Returns the decode
    outputs and the SSM state [H, P, N] left by the prefill."""
    from transformers import DynamicCache
    cache = DynamicCache(config=cfg)
    mixer(prefill[None], cache_params=cache)
    state = cache.layers[0].recurrent_states[0][0].clone()
    outs = [mixer(steps[None, i:i + 1], cache_params=cache)[0] for i in range(len(steps))]
    return torch.cat(outs, 0), state


def export(outdir, name, n_groups, seed):
    gen = torch.Generator().manual_seed(seed)
    cfg, mixer = make_mixer(n_groups, gen)
    x = torch.randn(SEQ, HIDDEN, generator=gen, dtype=torch.float32)
    steps = torch.randn(DECODE, HIDDEN, generator=gen, dtype=torch.float32)
    with torch.no_grad():
        y = mixer(x[None])[0]
        tensors = {"input": x, "output": y}
        try:
            tensors["output_f64"] = copy.deepcopy(mixer).double()(x.double()[None])[0].float()
        except Exception:  # only costs the float64 comparison
            traceback.print_exc()
        try:
            out, state = decode_with_cache(cfg, mixer, x, steps)
            tensors.update(decode_input=steps, decode_output=out, prefill_ssm_state=state)
        except Exception:  # an API difference only costs the decode check
            traceback.print_exc()
    for key, p in mixer.state_dict().items():
        tensors[key] = p.detach().float()
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    meta = dict(hidden=HIDDEN, num_heads=HEADS, head_dim=HEAD_DIM, state_size=STATE,
                n_groups=n_groups, conv_kernel=CONV, chunk_size=CHUNK, seq_len=SEQ,
                decode_len=DECODE if "decode_output" in tensors else 0, eps=EPS,
                transformers=transformers.__version__, torch=torch.__version__)
    path = f"{outdir}/mamba2-{name}.safetensors"
    save_file(tensors, path, metadata={k: str(v) for k, v in meta.items()})
    print(path, {k: list(v.shape) for k, v in tensors.items()})
    print("output rms", float(y.pow(2).mean().sqrt()))
    if "output_f64" in tensors:
        d = tensors["output_f64"] - y
        print("NMSE(fp32 run, float64 run)", float(d.pow(2).sum() / y.pow(2).sum()))


def main(argv):
    if len(argv) != 2:
        print(__doc__)
        return 2
    torch.set_num_threads(4)
    for name, (n_groups, seed) in CASES.items():
        export(argv[1], name, n_groups, seed)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
