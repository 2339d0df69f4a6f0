#!/usr/bin/env python3
"""Golden data for hylo's Gated DeltaNet reference (spec sec. 5) from HF transformers' Qwen3-Next.

Two files, both computed on the CPU in fp32. HF 5.17 takes its reference PyTorch functions when
flash-linear-attention / causal-conv1d are not installed (it logs "falling back to its reference
PyTorch implementation"); run it where they are not.

gdn-rule.safetensors: the gated delta rule alone, through
  transformers.models.qwen3_next.modeling_qwen3_next.torch_chunk_gated_delta_rule (chunk 64) and
  torch_recurrent_gated_delta_rule, with use_qk_l2norm_in_kernel=True, H_v = 2 H_k (q, k
  repeat_interleave'd to H_v heads before the call, as Qwen3NextGatedDeltaNet does), T = 77 (not a
  multiple of 64) and a nonzero initial state. Tensors:
    q, k [T, H_k, dk] (raw: HF normalizes them and scales q by dk^-0.5), v [T, H_v, dv],
    g, beta [T, H_v], initial_state [H_v, dk, dv],
    chunk.o, recurrent.o [T, H_v, dv], chunk.final_state, recurrent.final_state [H_v, dk, dv]

gdn-mixer.safetensors: a whole Qwen3NextGatedDeltaNet (random weights, A_log, dt_bias and the
  norm weight non-trivial) on x [T, hidden] from a zero state, its weights re-sliced from the
  fused in_proj_qkvz / in_proj_ba / conv1d into the spec's parameter names:
    q_proj.weight, k_proj.weight, v_proj.weight, g_proj.weight, a_proj.weight, b_proj.weight,
    A_log, dt_bias, q_conv1d.weight, k_conv1d.weight, v_conv1d.weight [C, 1, K],
    o_norm.weight, o_proj.weight, input [T, hidden], output [T, hidden]
Metadata (strings): the dims, the transformers and torch versions.

  python3 tools/hf_blocks/gdn.py OUTDIR [--print-source]
"""
import inspect
import sys

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file
from transformers import Qwen3NextConfig
from transformers.models.qwen3_next import modeling_qwen3_next as qn

HIDDEN, K_HEADS, V_HEADS, HEAD_K, HEAD_V, CONV, CHUNK, SEQ, EPS = 32, 2, 4, 16, 8, 4, 64, 77, 1e-6
VERSIONS = dict(transformers=transformers.__version__, torch=torch.__version__)


def nmse(a, r):
    return float((a.double() - r.double()).pow(2).sum() / r.double().pow(2).sum())


def save(outdir, name, tensors, meta):
    tensors = {k: v.detach().float().contiguous() for k, v in tensors.items()}
    path = f"{outdir}/gdn-{name}.safetensors"
    save_file(tensors, path, metadata={k: str(v) for k, v in {**meta, **VERSIONS}.items()})
    print(path, {k: list(v.shape) for k, v in tensors.items()})


def export_rule(outdir, gen):
    """The two rule functions on the same inputs."""
    rep = V_HEADS // K_HEADS
    q = torch.randn(SEQ, K_HEADS, HEAD_K, generator=gen)
    k = torch.randn(SEQ, K_HEADS, HEAD_K, generator=gen)
    v = torch.randn(SEQ, V_HEADS, HEAD_V, generator=gen)
    # decays in [-0.1, 0): the initial state still weighs exp(-3.9) on average at the end
    g = -0.1 * torch.rand(SEQ, V_HEADS, generator=gen)
    beta = torch.sigmoid(torch.randn(SEQ, V_HEADS, generator=gen))
    s0 = torch.randn(V_HEADS, HEAD_K, HEAD_V, generator=gen)
    args = (q.repeat_interleave(rep, dim=1)[None], k.repeat_interleave(rep, dim=1)[None], v[None],
            g[None], beta[None])
    o_c, s_c = qn.torch_chunk_gated_delta_rule(*args, chunk_size=CHUNK,
                                               initial_state=s0[None].clone(),
                                               output_final_state=True,
                                               use_qk_l2norm_in_kernel=True)
    o_r, s_r = qn.torch_recurrent_gated_delta_rule(*args, initial_state=s0[None].clone(),
                                                   output_final_state=True,
                                                   use_qk_l2norm_in_kernel=True)
    print("rule: NMSE(HF chunk, HF recurrent) o", nmse(o_c, o_r), "state", nmse(s_c, s_r))
    save(outdir, "rule", {"q": q, "k": k, "v": v, "g": g, "beta": beta, "initial_state": s0,
                          "chunk.o": o_c[0], "chunk.final_state": s_c[0],
                          "recurrent.o": o_r[0], "recurrent.final_state": s_r[0]},
         dict(seq_len=SEQ, k_heads=K_HEADS, v_heads=V_HEADS, head_k=HEAD_K, head_v=HEAD_V,
              chunk=CHUNK))


def make_mixer(gen):
    cfg = Qwen3NextConfig(hidden_size=HIDDEN, linear_num_key_heads=K_HEADS,
                          linear_num_value_heads=V_HEADS, linear_key_head_dim=HEAD_K,
                          linear_value_head_dim=HEAD_V, linear_conv_kernel_dim=CONV,
                          rms_norm_eps=EPS, hidden_act="silu", num_hidden_layers=1,
                          layer_types=["linear_attention"], vocab_size=32)
    mixer = qn.Qwen3NextGatedDeltaNet(cfg, layer_idx=0).float().eval()

    def rand(*shape, std=1.0):
        return torch.randn(*shape, generator=gen) * std

    with torch.no_grad():
        for lin in (mixer.in_proj_qkvz, mixer.in_proj_ba):
            lin.weight.copy_(rand(*lin.weight.shape, std=HIDDEN ** -0.5))
        mixer.conv1d.weight.copy_(rand(*mixer.conv1d.weight.shape, std=0.4))
        mixer.A_log.copy_(torch.log(0.02 + 0.5 * torch.rand(V_HEADS, generator=gen)))
        mixer.dt_bias.copy_(rand(V_HEADS, std=0.5))
        mixer.norm.weight.copy_(1.0 + rand(HEAD_V, std=0.2))
        mixer.out_proj.weight.copy_(rand(*mixer.out_proj.weight.shape,
                                         std=(V_HEADS * HEAD_V) ** -0.5))
    return mixer


def spec_weights(mixer):
    """The fused HF weights re-sliced under the spec's names. in_proj_qkvz rows are grouped per
    key head as [q (dk) | k (dk) | v (r dv) | z (r dv)], in_proj_ba rows as [b (r) | a (r)] with
    r = H_v / H_k; the conv channels are [q | k | v]."""
    r, dk, dv = V_HEADS // K_HEADS, HEAD_K, HEAD_V
    qkvz = mixer.in_proj_qkvz.weight.view(K_HEADS, 2 * dk + 2 * r * dv, HIDDEN)
    ba = mixer.in_proj_ba.weight.view(K_HEADS, 2 * r, HIDDEN)
    conv = mixer.conv1d.weight
    nk = K_HEADS * dk
    return {
        "q_proj.weight": qkvz[:, :dk].reshape(-1, HIDDEN),
        "k_proj.weight": qkvz[:, dk:2 * dk].reshape(-1, HIDDEN),
        "v_proj.weight": qkvz[:, 2 * dk:2 * dk + r * dv].reshape(-1, HIDDEN),
        "g_proj.weight": qkvz[:, 2 * dk + r * dv:].reshape(-1, HIDDEN),
        "b_proj.weight": ba[:, :r].reshape(-1, HIDDEN),
        "a_proj.weight": ba[:, r:].reshape(-1, HIDDEN),
        "A_log": mixer.A_log, "dt_bias": mixer.dt_bias,
        "q_conv1d.weight": conv[:nk], "k_conv1d.weight": conv[nk:2 * nk],
        "v_conv1d.weight": conv[2 * nk:],
        "o_norm.weight": mixer.norm.weight, "o_proj.weight": mixer.out_proj.weight,
    }


def spec_forward(w, x):
    """Spec sec. 5 written out in float64 from the re-sliced weights, token by token: a check
    of the re-slicing above (printed only), independent of HF's module and of hylo."""
    w = {k: v.double() for k, v in w.items()}
    x = x.double()
    T, r = x.shape[0], V_HEADS // K_HEADS

    def conv_silu(h, weight):  # h [T, C], weight [C, 1, K]: causal depthwise conv
        hp = F.pad(h.T[None], (CONV - 1, 0))
        return F.silu(F.conv1d(hp, weight, groups=h.shape[1])[0].T)

    q = conv_silu(x @ w["q_proj.weight"].T, w["q_conv1d.weight"]).view(T, K_HEADS, HEAD_K)
    k = conv_silu(x @ w["k_proj.weight"].T, w["k_conv1d.weight"]).view(T, K_HEADS, HEAD_K)
    v = conv_silu(x @ w["v_proj.weight"].T, w["v_conv1d.weight"]).view(T, V_HEADS, HEAD_V)
    q = q / torch.sqrt(q.pow(2).sum(-1, keepdim=True) + 1e-6) * HEAD_K ** -0.5
    k = k / torch.sqrt(k.pow(2).sum(-1, keepdim=True) + 1e-6)
    g = -w["A_log"].exp() * F.softplus(x @ w["a_proj.weight"].T + w["dt_bias"])
    beta = torch.sigmoid(x @ w["b_proj.weight"].T)
    S = torch.zeros(V_HEADS, HEAD_K, HEAD_V, dtype=torch.float64)
    o = torch.zeros(T, V_HEADS, HEAD_V, dtype=torch.float64)
    for t in range(T):
        for h in range(V_HEADS):
            kt, qt = k[t, h // r], q[t, h // r]
            S[h] = S[h] * g[t, h].exp()
            u = beta[t, h] * (v[t, h] - kt @ S[h])
            S[h] = S[h] + torch.outer(kt, u)
            o[t, h] = qt @ S[h]
    o = o / torch.sqrt(o.pow(2).mean(-1, keepdim=True) + EPS) * w["o_norm.weight"]
    o = o * F.silu((x @ w["g_proj.weight"].T).view(T, V_HEADS, HEAD_V))
    return o.reshape(T, -1) @ w["o_proj.weight"].T


def export_mixer(outdir, gen):
    mixer = make_mixer(gen)
    x = torch.randn(SEQ, HIDDEN, generator=gen)
    with torch.no_grad():
        y = mixer(x[None])[0]
        w = spec_weights(mixer)
        print("mixer: output rms", float(y.pow(2).mean().sqrt()),
              "NMSE(HF fp32, spec float64 from re-sliced weights)", nmse(y, spec_forward(w, x)))
    save(outdir, "mixer", {**w, "input": x, "output": y},
         dict(hidden=HIDDEN, k_heads=K_HEADS, v_heads=V_HEADS, head_k=HEAD_K, head_v=HEAD_V,
              d_conv=CONV, eps=EPS, seq_len=SEQ))


def main(argv):
    if len(argv) not in (2, 3) or (len(argv) == 3 and argv[2] != "--print-source"):
        print(__doc__)
        return 2
    torch.set_num_threads(4)
    torch.set_default_dtype(torch.float32)
    print(VERSIONS)
    if len(argv) == 3:
        for fn in (qn.l2norm, qn.torch_chunk_gated_delta_rule, qn.torch_recurrent_gated_delta_rule,
                   qn.Qwen3NextRMSNormGated, qn.Qwen3NextGatedDeltaNet):
            print(inspect.getsource(fn))
    gen = torch.Generator().manual_seed(20251)
    with torch.no_grad():
        export_rule(argv[1], gen)
    export_mixer(argv[1], gen)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
