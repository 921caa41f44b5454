#!/usr/bin/env python3
"""Generate the tiny reference fixtures in tests/fixtures/ (run by hand, not in CI).

Pinned versions this was generated with (a different transformers version may
write different tensor layouts / config keys, so regenerate with exactly these):
    python        3.11.7
    torch         2.15.0 (CPU)
    transformers  5.23.0
    safetensors   0.8.0
    numpy         2.4.6
    tokenizers    0.23.3   (not used: fixtures have no tokenizer)

Usage:
    python3 tools/make_fixtures.py [--out tests/fixtures]   (in a venv with the versions pinned above)

Every model is a tiny randomly initialised float32 model (fixed seeds). For each
model directory tests/fixtures/<name>/ we write:
    config.json, generation_config.json, model.safetensors (or shards + index)
    reference.safetensors with
        tokens  int32  [16]        fixed pseudo-random prompt
        logits  float32 [16, 512]  model(tokens).logits[0]
        greedy  int32  [32]        tokens appended by
                                   generate(do_sample=False, max_new_tokens=32, use_cache=True)

The script asserts, for every fixture:
  * every greedy step (cached generate) and every position of a no-cache forward
    over prompt+greedy has top1 - top2 logit margin > MIN_LOGIT_MARGIN,
  * the no-cache forward reproduces the greedy tokens (argmax),
  * every MoE router decision has a gap between the k-th and (k+1)-th router
    logit > MIN_ROUTER_GAP (so tiny numeric differences cannot flip experts),
  * no EOS token appears in the greedy continuation,
  * each saved directory loads back with transformers and reproduces the logits,
  * alternative expert layouts (-fused) are exactly consistent with the native one.
If a seed fails a check, the next seed is tried (deterministically).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import transformers
from transformers import (
    DeepseekV2Config, DeepseekV2ForCausalLM,
    DeepseekV3Config, DeepseekV3ForCausalLM,
    LlamaConfig, LlamaForCausalLM,
    MixtralConfig, MixtralForCausalLM,
    OlmoeConfig, OlmoeForCausalLM,
    Qwen2MoeConfig, Qwen2MoeForCausalLM,
    Qwen3MoeConfig, Qwen3MoeForCausalLM,
    SwitchTransformersConfig, SwitchTransformersForConditionalGeneration,
    GptOssConfig, GptOssForCausalLM,
)

T_PROMPT = 16
N_GEN = 32
VOCAB = 512
TOKEN_SEED = 1234
MIN_LOGIT_MARGIN = 5e-2   # much stricter than the required 1e-3
MIN_ROUTER_GAP = 1e-2
MAX_SEED_TRIES = 300

COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    initializer_range=0.3,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=None,
    hidden_act="silu",
)

# name -> (model class, config class, config kwargs, base seed)
MODELS = {
    "llama": (LlamaForCausalLM, LlamaConfig, dict(
        intermediate_size=64, num_hidden_layers=2, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=False), 100),
    "mixtral": (MixtralForCausalLM, MixtralConfig, dict(
        intermediate_size=32, num_hidden_layers=2, rms_norm_eps=1e-5,
        num_local_experts=4, num_experts_per_tok=2,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        tie_word_embeddings=False), 200),
    "qwen2moe": (Qwen2MoeForCausalLM, Qwen2MoeConfig, dict(
        intermediate_size=96,                # dense MLP (layer 1 via mlp_only_layers)
        moe_intermediate_size=32, shared_expert_intermediate_size=48,
        num_hidden_layers=3, mlp_only_layers=[1], decoder_sparse_step=1,
        num_experts=4, num_experts_per_tok=2, norm_topk_prob=False,
        qkv_bias=True, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        tie_word_embeddings=True), 300),
    "qwen3moe": (Qwen3MoeForCausalLM, Qwen3MoeConfig, dict(
        head_dim=32,                         # != hidden/heads (16)
        intermediate_size=96, moe_intermediate_size=16,
        num_hidden_layers=2, num_experts=8, num_experts_per_tok=2,
        norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
        attention_bias=False, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        tie_word_embeddings=False), 400),
    "olmoe": (OlmoeForCausalLM, OlmoeConfig, dict(
        intermediate_size=32, num_hidden_layers=2, num_experts=6,
        num_experts_per_tok=2, norm_topk_prob=False, clip_qkv=None,
        attention_bias=False, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=False), 500),
    # DeepSeek (MLA): 4 heads, all of them KV heads (the latent is shared),
    # q/k head 16 nope + 8 rope, v head 16, latent 32.
    "deepseek2": (DeepseekV2ForCausalLM, DeepseekV2Config, dict(
        num_key_value_heads=4, intermediate_size=64, moe_intermediate_size=16,
        num_hidden_layers=3, first_k_dense_replace=1,
        n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
        topk_method="greedy", routed_scaling_factor=2.0, norm_topk_prob=False,
        q_lora_rank=None, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=False), 600),
    "deepseek2-lora": (DeepseekV2ForCausalLM, DeepseekV2Config, dict(
        num_key_value_heads=4, intermediate_size=64, moe_intermediate_size=16,
        num_hidden_layers=2, first_k_dense_replace=0,
        n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=2,
        topk_method="group_limited_greedy", n_group=4, topk_group=2,
        routed_scaling_factor=1.5, norm_topk_prob=False,
        q_lora_rank=24, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=24,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=False), 700),
    "deepseek3": (DeepseekV3ForCausalLM, DeepseekV3Config, dict(
        num_key_value_heads=4, intermediate_size=64, moe_intermediate_size=16,
        num_hidden_layers=3, first_k_dense_replace=1,
        n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
        n_group=4, topk_group=2, routed_scaling_factor=2.5, norm_topk_prob=True,
        q_lora_rank=24, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
        rms_norm_eps=1e-6, rope_interleave=True,
        rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                         "original_max_position_embeddings": 64, "beta_fast": 32.0, "beta_slow": 1.0,
                         "mscale": 1.0, "mscale_all_dim": 1.0},
        tie_word_embeddings=False), 800),
    # YaRN with mscale != mscale_all_dim: cos/sin carry an attention factor
    # of mscale(8, 1) / mscale(8, 0.707) besides the softmax scale correction
    "deepseek2-yarn": (DeepseekV2ForCausalLM, DeepseekV2Config, dict(
        num_key_value_heads=4, intermediate_size=64, moe_intermediate_size=16,
        num_hidden_layers=2, first_k_dense_replace=1,
        n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
        topk_method="greedy", routed_scaling_factor=1.0, norm_topk_prob=False,
        q_lora_rank=None, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0,
                         "original_max_position_embeddings": 32, "beta_fast": 32.0, "beta_slow": 1.0,
                         "mscale": 1.0, "mscale_all_dim": 0.707},
        tie_word_embeddings=False), 900),
    # gpt-oss: attention sinks, sliding (layers 0, 2; window 4) / full (layer 1)
    # attention, q/k/v/o biases, router bias, clamped SwiGLU experts with
    # biases (limit lowered to 3 so the clamps are exercised), YaRN RoPE.
    "gptoss": (GptOssForCausalLM, GptOssConfig, dict(
        head_dim=24,                         # != hidden/heads (16)
        intermediate_size=32, num_hidden_layers=3, num_local_experts=4,
        num_experts_per_tok=2, sliding_window=4, max_position_embeddings=32768,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        attention_bias=True, rms_norm_eps=1e-5, swiglu_limit=3.0,
        rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 8.0,
                         "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
                         "original_max_position_embeddings": 4096},
        tie_word_embeddings=False), 600),
}

# Routing decisions of these are checked by their own rule (deepseek_route_gaps),
# at a smaller gap: sigmoid/softmax scores are squeezed compared with logits.
DEEPSEEK = {"deepseek2", "deepseek2-lora", "deepseek3", "deepseek2-yarn"}
MIN_SCORE_GAP = 2e-3
MIN_LOGIT_MARGIN_DEEPSEEK = 1e-2   # still 100x the 1e-4 tolerance; 5e-2 found no seed in 300

FUSED_VARIANTS = ["mixtral", "qwen3moe"]     # -> <name>-fused
MXFP4_VARIANTS = ["gptoss"]                  # -> <name>-mxfp4: experts as openai ships them
# Seeds whose float32 transformers logits stray this far from the float64
# numpy re-implementation are rejected: gpt-oss (sinks, YaRN's sharper
# attention) amplifies rounding more than the others, and a float32 engine
# must stay within 1e-4 of transformers on every ISA.
NUMPY_GAP = {"gptoss": 3e-5}
SHARDED_VARIANTS = {"qwen3moe": "200KB"}     # -> <name>-sharded


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def prompt_tokens():
    g = torch.Generator().manual_seed(TOKEN_SEED)
    return torch.randint(3, VOCAB, (T_PROMPT,), generator=g, dtype=torch.int64)


def build(name, seed):
    mcls, ccls, kw, _ = MODELS[name]
    cfg = ccls(**{**COMMON, **kw})
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = mcls(cfg).float().eval()
    # Randomise norm weights and biases (default init: ones / zeros) so that a
    # loader which ignores them, or applies them wrongly, is caught.
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("bias") or "norm" in pname:
                base = 0.0 if pname.endswith("bias") else 1.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
        for bname, b in model.named_buffers():
            if bname.endswith("e_score_correction_bias"):   # DeepSeek-V3: non-zero so the bias matters
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
    for pname, p in model.named_parameters():
        assert p.dtype == torch.float32, pname
        assert p.abs().max() > 0, f"{pname} is all zeros"
    return model


def margins(logits):
    top2 = torch.topk(logits, 2, dim=-1).values
    return top2[..., 0] - top2[..., 1]


def evaluate(model, tokens):
    """Returns (logits, greedy, stats) or raises AssertionError on failed checks."""
    cfg = model.config
    min_margin = MIN_LOGIT_MARGIN_DEEPSEEK if getattr(cfg, "kv_lora_rank", None) else MIN_LOGIT_MARGIN
    with torch.no_grad():
        logits = model(tokens[None]).logits[0].float()
        out = model.generate(tokens[None], do_sample=False, max_new_tokens=N_GEN,
                             use_cache=True, output_logits=True,
                             return_dict_in_generate=True)
    greedy = out.sequences[0, T_PROMPT:]
    assert greedy.numel() == N_GEN, f"generate stopped early ({greedy.numel()} tokens)"
    eos = cfg.eos_token_id
    assert eos is None or eos not in greedy.tolist(), "EOS in greedy continuation"
    step_logits = torch.stack([l[0] for l in out.logits]).float()
    assert torch.equal(step_logits.argmax(-1), greedy)
    gen_margin = margins(step_logits).min().item()
    assert gen_margin > min_margin, f"greedy margin {gen_margin}"

    # No-cache forward over prompt + continuation: must reproduce the greedy
    # tokens, and gives router logits for every routed token.
    full = torch.cat([tokens, greedy])
    moe = hasattr(cfg, "num_experts_per_tok")
    with torch.no_grad():
        o = model(full[None], output_router_logits=moe) if moe else model(full[None])
    fl = o.logits[0].float()
    pred = fl[T_PROMPT - 1:-1].argmax(-1)
    assert torch.equal(pred, greedy), "no-cache forward disagrees with cached greedy"
    nocache_margin = margins(fl).min().item()
    assert nocache_margin > min_margin, f"no-cache margin {nocache_margin}"
    # prompt logits vs the full forward on the prefix (sanity)
    assert torch.allclose(fl[:T_PROMPT], logits, atol=1e-4)

    router_gap = None
    if moe and getattr(cfg, "kv_lora_rank", None):
        router_gap = deepseek_route_gaps(model, o.router_logits)
        assert router_gap > MIN_SCORE_GAP, f"routing score gap {router_gap}"
    elif moe:
        k = cfg.num_experts_per_tok
        gaps = []
        for rl in o.router_logits:
            s = torch.sort(rl.float(), dim=-1, descending=True).values
            gaps.append((s[:, k - 1] - s[:, k]).min().item())
        router_gap = min(gaps)
        assert router_gap > MIN_ROUTER_GAP, f"router gap {router_gap}"
    stats = dict(gen_margin=gen_margin, nocache_margin=nocache_margin,
                 router_gap=router_gap,
                 logit_absmax=logits.abs().max().item())
    return logits, greedy, stats


def deepseek_route_gaps(model, router_logits):
    """Smallest margin of any DeepSeek routing decision, in score space:
    the group boundary (topk_group-th vs next group score) and the expert
    boundary (k-th vs next selection score among the kept groups)."""
    cfg = model.config
    k = cfg.num_experts_per_tok
    v3 = cfg.model_type == "deepseek_v3"
    grouped = v3 or cfg.topk_method == "group_limited_greedy"
    moe_layers = [l for l in model.model.layers if hasattr(l.mlp, "gate")]
    gaps = []
    for layer, rl in zip(moe_layers, router_logits):
        rl = rl.float()
        if v3:
            choice = rl.sigmoid() + layer.mlp.gate.e_score_correction_bias.float()
        else:
            choice = rl.softmax(-1)
        E = choice.shape[-1]
        if grouped and cfg.n_group > 1:
            G, tg = cfg.n_group, cfg.topk_group
            gs = choice.view(-1, G, E // G)
            gscore = gs.topk(2, -1).values.sum(-1) if v3 else gs.max(-1).values
            s = gscore.sort(-1, descending=True).values
            gaps.append((s[:, tg - 1] - s[:, tg]).min().item())
            keep = torch.zeros_like(gscore).scatter_(1, gscore.topk(tg, -1).indices, 1)
            mask = keep.unsqueeze(-1).expand(-1, G, E // G).reshape(-1, E).bool()
            choice = choice.masked_fill(~mask, float("-inf"))
        s = choice.sort(-1, descending=True).values
        gaps.append((s[:, k - 1] - s[:, k]).min().item())
    return min(gaps)


def write_reference(d, tokens, logits, greedy):
    save_file({"tokens": tokens.to(torch.int32).contiguous(),
               "logits": logits.to(torch.float32).contiguous(),
               "greedy": greedy.to(torch.int32).contiguous()},
              os.path.join(d, "reference.safetensors"), metadata={"format": "pt"})


def check_reload(name, d, tokens, ref_logits):
    mcls = MODELS[name][0]
    m = mcls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        l = m(tokens[None]).logits[0].float()
    diff = (l - ref_logits).abs().max().item()
    assert diff <= 1e-5, f"{d}: reloaded logits differ by {diff}"
    return diff


def read_all(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors") and f != "reference.safetensors":
            out.update(load_file(os.path.join(d, f)))
    return out


# --- independent re-implementation (numpy, float64) -------------------------
# Reads only config.json + *.safetensors, like the C engine must, and documents
# the math the fixtures encode. Used as a cross-check of every directory.

def np_reference_logits(d, tokens):
    import numpy as np
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    mt = c["model_type"]
    if mt in ("deepseek_v2", "deepseek_v3"):
        return np_deepseek_logits(d, c, tokens)
    W = {k: v.double().numpy() for k, v in mxfp4_unpack(read_all(d)).items()}
    D, H, KV = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    hd = c.get("head_dim") or D // H
    eps = c["rms_norm_eps"]
    theta = c["rope_parameters"]["rope_theta"] if "rope_parameters" in c else c["rope_theta"]
    n_exp = c.get("num_experts", c.get("num_local_experts"))
    topk = c.get("num_experts_per_tok")
    norm_topk = c.get("norm_topk_prob", True if mt == "mixtral" else False)
    mlp_only = c.get("mlp_only_layers") or []
    step = c.get("decoder_sparse_step", 1)
    T = len(tokens)

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def silu(x):
        return x / (1 + np.exp(-x))

    def lin(x, name):
        y = x @ W[name + ".weight"].T
        return y + W[name + ".bias"] if name + ".bias" in W else y

    inv = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
    mscale = 1.0
    rp = c.get("rope_parameters") or {}
    if rp.get("rope_type") == "yarn":       # YaRN: blend interpolated and original frequencies
        f, orig = rp["factor"], rp["original_max_position_embeddings"]
        def corr(rot):
            return hd * np.log(orig / (rot * 2 * np.pi)) / (2 * np.log(theta))
        lo, hi = corr(rp.get("beta_fast", 32)), corr(rp.get("beta_slow", 1))
        if rp.get("truncate", True):
            lo, hi = np.floor(lo), np.ceil(hi)
        lo, hi = max(lo, 0), min(hi, hd - 1)
        ramp = np.clip((np.arange(hd // 2) - lo) / ((hi - lo) if hi != lo else 0.001), 0, 1)
        inv = inv / f * ramp + inv * (1 - ramp)
        mscale = 0.1 * np.log(f) + 1.0
    ang = np.arange(T)[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
    cos, sin = cos * mscale, sin * mscale

    def rope(x):  # x [T, nh, hd], rotate_half (NeoX) style
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        rot = np.concatenate([-x2, x1], -1)
        return x * cos[:, None] + rot * sin[:, None]

    def expert(x, pre, e):
        fused = pre + "experts.gate_up_proj"
        if fused in W:                       # [E, 2F, D]: gate = first F rows, up = last F
            gu = W[fused][e]
            F = gu.shape[0] // 2
            g, u, dn = gu[:F], gu[F:], W[pre + "experts.down_proj"][e]
        elif mt == "mixtral":
            p = f"{pre}experts.{e}."
            g, u, dn = W[p + "w1.weight"], W[p + "w3.weight"], W[p + "w2.weight"]
        else:
            p = f"{pre}experts.{e}."
            g, u, dn = W[p + "gate_proj.weight"], W[p + "up_proj.weight"], W[p + "down_proj.weight"]
        return (silu(x @ g.T) * (x @ u.T)) @ dn.T

    x = W["model.embed_tokens.weight"][tokens]
    for li in range(c["num_hidden_layers"]):
        L = f"model.layers.{li}."
        h = rms(x, W[L + "input_layernorm.weight"])
        q, k, v = lin(h, L + "self_attn.q_proj"), lin(h, L + "self_attn.k_proj"), lin(h, L + "self_attn.v_proj")
        if mt == "olmoe":                    # q/k norm over the whole projection
            q, k = rms(q, W[L + "self_attn.q_norm.weight"]), rms(k, W[L + "self_attn.k_norm.weight"])
            if c.get("clip_qkv") is not None:
                q, k, v = (np.clip(t, -c["clip_qkv"], c["clip_qkv"]) for t in (q, k, v))
        q, k, v = q.reshape(T, H, hd), k.reshape(T, KV, hd), v.reshape(T, KV, hd)
        if mt == "qwen3_moe":                # per-head q/k norm (over head_dim)
            q, k = rms(q, W[L + "self_attn.q_norm.weight"]), rms(k, W[L + "self_attn.k_norm.weight"])
        q, k = rope(q), rope(k)
        k, v = np.repeat(k, H // KV, axis=1), np.repeat(v, H // KV, axis=1)  # head h uses kv head h // (H/KV)
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd)
        s = s + np.triu(np.full((T, T), -np.inf), 1)
        if mt == "gpt_oss" and c["layer_types"][li] == "sliding_attention":
            s = s + np.tril(np.full((T, T), -np.inf), -c["sliding_window"])  # sees itself + window-1 before
        if mt == "gpt_oss":                  # a per-head sink joins the softmax denominator
            sink = W[L + "self_attn.sinks"][:, None, None] * np.ones((1, T, 1))
            s = np.concatenate([s, sink], -1)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        if mt == "gpt_oss":
            p = p[..., :-1]
        o = np.einsum("hts,shd->thd", p, v).reshape(T, H * hd)
        x = x + lin(o, L + "self_attn.o_proj")

        h = rms(x, W[L + "post_attention_layernorm.weight"])
        moe_pre = L + ("block_sparse_moe." if L + "block_sparse_moe.gate.weight" in W else "mlp.")
        is_moe = mt != "llama" and li not in mlp_only and n_exp > 0 and (li + 1) % step == 0
        assert is_moe == (moe_pre + "gate.weight" in W) or mt == "gpt_oss"
        if mt == "gpt_oss":                  # top-k of (logits + bias), softmax over the k
            logits = lin(h, moe_pre + "router")
            idx = np.argsort(-logits, -1, kind="stable")[:, :topk]
            wts = np.take_along_axis(logits, idx, -1)
            wts = np.exp(wts - wts.max(-1, keepdims=True))
            wts /= wts.sum(-1, keepdims=True)
            lim, alpha = c["swiglu_limit"], c["swiglu_alpha"]
            y = np.zeros_like(h)
            for t in range(T):
                for j in range(topk):
                    e = idx[t, j]
                    # [D, 2F] with gate and up interleaved along the last dim
                    gu = h[t] @ W[moe_pre + "experts.gate_up_proj"][e] + W[moe_pre + "experts.gate_up_proj_bias"][e]
                    g, u = np.minimum(gu[::2], lim), np.clip(gu[1::2], -lim, lim)
                    a = (u + 1) * g / (1 + np.exp(-alpha * g))
                    y[t] += wts[t, j] * (a @ W[moe_pre + "experts.down_proj"][e] + W[moe_pre + "experts.down_proj_bias"][e])
        elif not is_moe:
            y = lin(silu(lin(h, L + "mlp.gate_proj")) * lin(h, L + "mlp.up_proj"), L + "mlp.down_proj")
        else:
            logits = h @ W[moe_pre + "gate.weight"].T              # [T, E]
            pr = np.exp(logits - logits.max(-1, keepdims=True))
            pr /= pr.sum(-1, keepdims=True)                        # softmax over ALL experts
            idx = np.argsort(-pr, -1, kind="stable")[:, :topk]
            wts = np.take_along_axis(pr, idx, -1)
            if norm_topk:
                wts = wts / wts.sum(-1, keepdims=True)
            y = np.zeros_like(h)
            for t in range(T):
                for j in range(topk):
                    y[t] += wts[t, j] * expert(h[t], moe_pre, idx[t, j])
            if moe_pre + "shared_expert.gate_proj.weight" in W:    # qwen2_moe
                se = lin(silu(lin(h, moe_pre + "shared_expert.gate_proj")) * lin(h, moe_pre + "shared_expert.up_proj"),
                         moe_pre + "shared_expert.down_proj")
                gate = 1 / (1 + np.exp(-(h @ W[moe_pre + "shared_expert_gate.weight"].T)))  # [T, 1]
                y = y + gate * se
        x = x + y
    x = rms(x, W["model.norm.weight"])
    head = W["lm_head.weight"] if "lm_head.weight" in W else W["model.embed_tokens.weight"]
    assert ("lm_head.weight" not in W) == bool(c.get("tie_word_embeddings", False))
    return x @ head.T


def np_deepseek_logits(d, c, tokens):
    """DeepSeek-V2/V3 in float64, attention in the expanded (non-absorbed)
    form: MLA with a latent KV, decoupled RoPE on the rope part (adjacent
    pairs), YaRN, leading dense blocks, shared experts, V2 softmax greedy /
    group-limited greedy (group score = max) and V3 sigmoid + correction
    bias with groups scored by their top-2 sum, routed_scaling_factor."""
    import math
    import numpy as np
    W = {k: v.double().numpy() for k, v in read_all(d).items()}
    v3 = c["model_type"] == "deepseek_v3"
    D, H, eps = c["hidden_size"], c["num_attention_heads"], c["rms_norm_eps"]
    nope, rope_d, vd, kvl = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"]
    E, topk, G, TG = c["n_routed_experts"], c["num_experts_per_tok"], c.get("n_group") or 1, c.get("topk_group") or 1
    rp = c["rope_parameters"]
    theta, T = rp["rope_theta"], len(tokens)
    scale = (nope + rope_d) ** -0.5
    inv = 1.0 / theta ** (np.arange(0, rope_d, 2) / rope_d)
    att_factor = 1.0
    if rp.get("rope_type", "default") == "yarn":
        f, orig = rp["factor"], rp["original_max_position_embeddings"]
        ms = lambda s_, m_=1.0: 1.0 if s_ <= 1 else 0.1 * m_ * math.log(s_) + 1.0
        m, mad = rp.get("mscale"), rp.get("mscale_all_dim")
        att_factor = ms(f, m) / ms(f, mad) if (m and mad) else ms(f)
        cd = lambda r: rope_d * math.log(orig / (r * 2 * math.pi)) / (2 * math.log(theta))
        lo, hi = max(math.floor(cd(rp.get("beta_fast") or 32)), 0), min(math.ceil(cd(rp.get("beta_slow") or 1)), rope_d - 1)
        ramp = np.clip((np.arange(rope_d // 2) - lo) / ((hi - lo) if hi != lo else 0.001), 0, 1)
        inv = (inv / f) * ramp + inv * (1 - ramp)
        if mad:
            scale *= ms(f, mad) ** 2
    ang = np.arange(T)[:, None] * inv[None, :]
    cos, sin = np.cos(ang) * att_factor, np.sin(ang) * att_factor

    def rope(x):  # [..., T, rope_d] adjacent pairs (2i, 2i+1) rotated by angle i
        y = np.empty_like(x)
        a, b = x[..., 0::2], x[..., 1::2]
        y[..., 0::2], y[..., 1::2] = a * cos - b * sin, b * cos + a * sin
        return y

    rms = lambda x, w: x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w
    silu = lambda x: x / (1 + np.exp(-x))
    mlp = lambda x, p: (silu(x @ W[p + "gate_proj.weight"].T) * (x @ W[p + "up_proj.weight"].T)) @ W[p + "down_proj.weight"].T
    x = W["model.embed_tokens.weight"][tokens]
    for li in range(c["num_hidden_layers"]):
        L = f"model.layers.{li}."
        A = L + "self_attn."
        h = rms(x, W[L + "input_layernorm.weight"])
        if A + "q_a_proj.weight" in W:
            q = rms(h @ W[A + "q_a_proj.weight"].T, W[A + "q_a_layernorm.weight"]) @ W[A + "q_b_proj.weight"].T
        else:
            q = h @ W[A + "q_proj.weight"].T
        q = q.reshape(T, H, nope + rope_d).transpose(1, 0, 2)            # [H, T, qk]
        ckv = h @ W[A + "kv_a_proj_with_mqa.weight"].T
        lat, k_pe = rms(ckv[:, :kvl], W[A + "kv_a_layernorm.weight"]), rope(ckv[:, kvl:])
        kv = (lat @ W[A + "kv_b_proj.weight"].T).reshape(T, H, nope + vd).transpose(1, 0, 2)
        k = np.concatenate([kv[..., :nope], np.broadcast_to(k_pe, (H, T, rope_d))], -1)
        q = np.concatenate([q[..., :nope], rope(q[..., nope:])], -1)
        sc = q @ k.transpose(0, 2, 1) * scale + np.triu(np.full((T, T), -np.inf), 1)
        pr = np.exp(sc - sc.max(-1, keepdims=True))
        pr /= pr.sum(-1, keepdims=True)
        o = (pr @ kv[..., nope:]).transpose(1, 0, 2).reshape(T, H * vd)
        x = x + o @ W[A + "o_proj.weight"].T
        h = rms(x, W[L + "post_attention_layernorm.weight"])
        M = L + "mlp."
        if M + "gate.weight" not in W:
            assert li < c["first_k_dense_replace"]
            x = x + mlp(h, M)
            continue
        z = h @ W[M + "gate.weight"].T
        if v3:
            sc_ = 1 / (1 + np.exp(-z))
            choice = sc_ + W[M + "gate.e_score_correction_bias"]
        else:
            sc_ = np.exp(z - z.max(-1, keepdims=True))
            sc_ /= sc_.sum(-1, keepdims=True)
            choice = sc_.copy()
        if G > 1 and (v3 or c.get("topk_method") == "group_limited_greedy"):
            gs = choice.reshape(T, G, E // G)
            gscore = np.sort(gs, -1)[..., -2:].sum(-1) if v3 else gs.max(-1)
            keep = np.argsort(-gscore, -1, kind="stable")[:, :TG]
            mask = np.zeros((T, G), bool)
            np.put_along_axis(mask, keep, True, -1)
            choice = np.where(np.repeat(mask, E // G, -1), choice, -np.inf)
        idx = np.argsort(-choice, -1, kind="stable")[:, :topk]
        wts = np.take_along_axis(sc_, idx, -1)
        if c.get("norm_topk_prob") and v3:   # transformers 5's V2 router never renormalises
            wts = wts / (wts.sum(-1, keepdims=True) + 1e-20)
        wts = wts * c["routed_scaling_factor"]
        y = mlp(h, M + "shared_experts.")
        for t in range(T):
            for j in range(topk):
                y[t] += wts[t, j] * mlp(h[t], f"{M}experts.{idx[t, j]}.")
        x = x + y
    x = rms(x, W["model.norm.weight"])
    return x @ W["lm_head.weight"].T


# --- expert layout conversion (split -> fused), written by hand -------------

def fuse_state(name, sd):
    """Convert the legacy per-expert layout that save_pretrained writes into the
    fused transformers-5 runtime layout:
        ...mlp.experts.gate_up_proj [E, 2F, D] = cat([gate(w1)], [up(w3)]) on dim 1
        ...mlp.experts.down_proj    [E, D, F]  = stack(down(w2))
    Mixtral additionally renames block_sparse_moe -> mlp."""
    if name == "mixtral":
        moe, g, u, dn = "block_sparse_moe", "w1", "w3", "w2"
    else:
        moe, g, u, dn = "mlp", "gate_proj", "up_proj", "down_proj"
    out, used = {}, set()
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("model.layers.")})
    for li in layers:
        pre = f"model.layers.{li}.{moe}.experts."
        if not any(k.startswith(pre) for k in sd):
            continue
        E = 0
        while f"{pre}{E}.{g}.weight" in sd:
            E += 1
        gate = torch.stack([sd[f"{pre}{e}.{g}.weight"] for e in range(E)])
        up = torch.stack([sd[f"{pre}{e}.{u}.weight"] for e in range(E)])
        down = torch.stack([sd[f"{pre}{e}.{dn}.weight"] for e in range(E)])
        for e in range(E):
            used |= {f"{pre}{e}.{g}.weight", f"{pre}{e}.{u}.weight", f"{pre}{e}.{dn}.weight"}
        out[f"model.layers.{li}.mlp.experts.gate_up_proj"] = torch.cat([gate, up], dim=1).contiguous()
        out[f"model.layers.{li}.mlp.experts.down_proj"] = down.contiguous()
    for k, v in sd.items():
        if k in used:
            continue
        out[k.replace(".block_sparse_moe.", ".mlp.")] = v
    return out


def split_back(name, fused):
    """Inverse of fuse_state, used to verify the conversion is exact."""
    out = {}
    for k, v in fused.items():
        if k.endswith("mlp.experts.gate_up_proj"):
            F = v.shape[1] // 2
            pre = k[: -len("gate_up_proj")]
            for e in range(v.shape[0]):
                if name == "mixtral":
                    p = pre.replace(".mlp.", ".block_sparse_moe.")
                    out[f"{p}{e}.w1.weight"] = v[e, :F]
                    out[f"{p}{e}.w3.weight"] = v[e, F:]
                else:
                    out[f"{pre}{e}.gate_proj.weight"] = v[e, :F]
                    out[f"{pre}{e}.up_proj.weight"] = v[e, F:]
        elif k.endswith("mlp.experts.down_proj"):
            pre = k[: -len("down_proj")]
            for e in range(v.shape[0]):
                if name == "mixtral":
                    out[f"{pre.replace('.mlp.', '.block_sparse_moe.')}{e}.w2.weight"] = v[e]
                else:
                    out[f"{pre}{e}.down_proj.weight"] = v[e]
        elif name == "mixtral" and ".mlp.gate." in k:
            out[k.replace(".mlp.", ".block_sparse_moe.")] = v
        else:
            out[k] = v
    return out


# --- MXFP4 experts as openai's gpt-oss checkpoints store them, by hand -----

FP4_VALUES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def mxfp4_pack(w):
    """w [..., rows, cols] (rows = output features, cols % 32 == 0) ->
    blocks uint8 [..., rows, cols/32, 16] (element 2j in the low nibble of byte
    j, 2j+1 in the high one) and scales uint8 [..., rows, cols/32] (E8M0,
    bias 127): per 32 values the largest power of two with amax / 2^e <= 6...8,
    each value rounded to the nearest FP4 value."""
    *pre, R, C = w.shape
    b = w.reshape(*pre, R, C // 32, 32)
    amax = b.abs().amax(-1)
    e = torch.where(amax > 0, torch.floor(torch.log2(amax.clamp_min(1e-30))) - 2, torch.zeros_like(amax))
    e = e.clamp(-127, 127)
    idx = ((b / torch.pow(2.0, e)[..., None])[..., None] - torch.tensor(FP4_VALUES)).abs().argmin(-1)
    blocks = (idx[..., 0::2] | (idx[..., 1::2] << 4)).to(torch.uint8)
    return blocks.contiguous(), (e + 127).to(torch.uint8).contiguous()


def mxfp4_state(sd):
    """The fused gpt-oss state with its expert weights as *_blocks/*_scales
    (gate_up_proj [E, D, 2F] -> rows 2F; down_proj [E, F, D] -> rows D)."""
    out = {}
    for k, v in sd.items():
        if k.endswith("mlp.experts.gate_up_proj") or k.endswith("mlp.experts.down_proj"):
            out[k + "_blocks"], out[k + "_scales"] = mxfp4_pack(v.transpose(1, 2))
        else:
            out[k] = v
    return out


def mxfp4_unpack(sd):
    """Inverse for the numpy reference: *_blocks/*_scales back to the
    unquantized layout ([E, cols, rows])."""
    out = {}
    lut = torch.tensor(FP4_VALUES, dtype=torch.float64)
    for k, v in sd.items():
        if k.endswith("_scales"):
            continue
        if k.endswith("_blocks"):
            base = k[: -len("_blocks")]
            sc = sd[base + "_scales"].to(torch.float64) - 127
            vals = torch.stack([lut[(v & 15).long()], lut[(v >> 4).long()]], -1).flatten(-2)  # [..., G, 32]
            vals = vals * torch.pow(2.0, sc)[..., None]
            out[base] = vals.flatten(-2).transpose(-1, -2).contiguous()
        else:
            out[k] = v
    return out


def check_numpy_gap(name, d, tokens, logits, greedy):
    """AssertionError if the float64 re-implementation differs from the
    float32 logits of directory d by more than NUMPY_GAP[name]."""
    if name not in NUMPY_GAP:
        return
    full = torch.cat([tokens, greedy]).numpy()
    gap = (torch.from_numpy(np_reference_logits(d, full))[:T_PROMPT].float() - logits).abs().max().item()
    assert gap < NUMPY_GAP[name], f"float32 vs float64 gap {gap}"


def write_mxfp4(name, model, md, tokens):
    """Writes the MXFP4 variant of a gpt-oss model to md, with the logits and
    greedy tokens of transformers' own MXFP4 loader (which dequantizes on the
    CPU, exactly: FP4 times a power of two); AssertionError if they fail the
    margin checks."""
    os.makedirs(md)
    with tempfile.TemporaryDirectory() as td:
        model.save_pretrained(td)
        native = read_all(td)
        shutil.copy(os.path.join(td, "generation_config.json"), md)
        with open(os.path.join(td, "config.json")) as f:
            c = json.load(f)
    save_file(mxfp4_state(native), os.path.join(md, "model.safetensors"), metadata={"format": "pt"})
    c["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    with open(os.path.join(md, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
        f.write("\n")
    mq = MODELS[name][0].from_pretrained(md, quantization_config=transformers.Mxfp4Config(dequantize=True),
                                         dtype=torch.float32, attn_implementation="eager").eval()
    logits, greedy, stats = evaluate(mq, tokens)
    write_reference(md, tokens, logits, greedy)
    check_numpy_gap(name, md, tokens, logits, greedy)
    return logits, greedy, stats


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def describe(d):
    lines = []
    files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors") and f != "reference.safetensors")
    for f in files:
        with safe_open(os.path.join(d, f), "pt") as sf:
            for k in sorted(sf.keys()):
                sl = sf.get_slice(k)
                lines.append(f"  {f}: {k} {sl.get_dtype()} {list(sl.get_shape())}")
    return lines


def dir_size(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


# --- Switch Transformers (encoder-decoder) ----------------------------------
# A separate path: the model is not a causal LM. reference.safetensors holds
#     tokens      int32 [16]       encoder input ids (the common prompt)
#     dec_tokens  int32 [16]       teacher-forced decoder input: decoder_start + 15 ids
#     logits      float32 [16, V]  decoder logits for dec_tokens given tokens
#     greedy      int32 [32]       generate(tokens) continuation after decoder_start
# expert_capacity (64) is above every sequence length used, so transformers
# drops no token (pregate never drops any).

SWITCH = dict(
    vocab_size=VOCAB, d_model=64, d_kv=8, d_ff=32, num_heads=4,
    num_layers=2, num_decoder_layers=2, num_sparse_encoder_layers=1, num_sparse_decoder_layers=1,
    num_experts=4, expert_capacity=64, relative_attention_num_buckets=8,
    relative_attention_max_distance=16, layer_norm_epsilon=1e-6, dense_act_fn="relu",
    tie_word_embeddings=True, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    router_jitter_noise=0.0)
SWITCH_SEED = 900
# name -> (config overrides, fewest distinct greedy tokens). A tied random
# model's greedy decode settles on one token (the residual stream keeps the
# input token's embedding, which the tied head then scores highest), so the
# tied fixture checks the D^-1/2 output scaling through its logits and the
# untied one checks a varied greedy decode.
SWITCH_VARIANTS = {
    "switch": (dict(), 1),
    "switch-untied": (dict(tie_word_embeddings=False), 8),
}


def build_switch(seed, overrides=None):
    cfg = SwitchTransformersConfig(**{**SWITCH, **(overrides or {})})
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = SwitchTransformersForConditionalGeneration(cfg).float().eval()
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
        # untied, transformers 5 initialises the stacks' embeddings apart from
        # `shared`; real checkpoints share one embedding, and so does pregate
        if model.encoder.embed_tokens.weight is not model.shared.weight:
            model.encoder.embed_tokens.weight.copy_(model.shared.weight)
            model.decoder.embed_tokens.weight.copy_(model.shared.weight)
    return model


def decoder_tokens():
    g = torch.Generator().manual_seed(TOKEN_SEED + 1)
    rest = torch.randint(3, VOCAB, (T_PROMPT - 1,), generator=g, dtype=torch.int64)
    return torch.cat([torch.tensor([SWITCH["decoder_start_token_id"]]), rest])


def evaluate_switch(model, tokens, dec):
    with torch.no_grad():
        o = model(input_ids=tokens[None], decoder_input_ids=dec[None], output_router_logits=True)
        logits = o.logits[0].float()
        out = model.generate(tokens[None], do_sample=False, max_new_tokens=N_GEN, use_cache=True,
                             output_logits=True, return_dict_in_generate=True)
    seq = out.sequences[0]
    assert seq[0].item() == SWITCH["decoder_start_token_id"]
    greedy = seq[1:]
    assert greedy.numel() == N_GEN, f"generate stopped early ({greedy.numel()} tokens)"
    assert SWITCH["eos_token_id"] not in greedy.tolist(), "EOS in greedy continuation"
    step_logits = torch.stack([l[0] for l in out.logits]).float()
    assert torch.equal(step_logits.argmax(-1), greedy)
    gen_margin = margins(step_logits).min().item()
    assert gen_margin > MIN_LOGIT_MARGIN, f"greedy margin {gen_margin}"
    # no-cache forward over start + greedy: reproduces greedy, and routes every decoder token
    full = torch.cat([seq[:1], greedy])
    with torch.no_grad():
        o2 = model(input_ids=tokens[None], decoder_input_ids=full[None], output_router_logits=True)
    fl = o2.logits[0].float()
    assert torch.equal(fl[:-1].argmax(-1), greedy), "no-cache forward disagrees with cached greedy"
    nocache_margin = margins(fl[:-1]).min().item()
    assert nocache_margin > MIN_LOGIT_MARGIN, f"no-cache margin {nocache_margin}"
    gaps = []
    for oo in (o, o2):
        for rl in list(oo.encoder_router_logits) + list(oo.decoder_router_logits):
            if rl is None or rl.numel() == 0:
                continue
            s = torch.sort(rl.float().reshape(-1, rl.shape[-1]), dim=-1, descending=True).values
            gaps.append((s[:, 0] - s[:, 1]).min().item())
    assert gaps, "no router logits recorded"
    router_gap = min(gaps)
    assert router_gap > MIN_ROUTER_GAP, f"router gap {router_gap}"
    return logits, greedy, dict(gen_margin=gen_margin, nocache_margin=nocache_margin, router_gap=router_gap,
                                n_router_tensors=len(gaps), logit_absmax=logits.abs().max().item())


def make_switch(out_root, tokens, name):
    overrides, min_distinct = SWITCH_VARIANTS[name]
    dec = decoder_tokens()
    for seed in range(SWITCH_SEED, SWITCH_SEED + MAX_SEED_TRIES):
        model = build_switch(seed, overrides)
        try:
            logits, greedy, stats = evaluate_switch(model, tokens, dec)
            distinct = len(set(greedy.tolist()))
            assert distinct >= min_distinct, f"only {distinct} distinct greedy tokens"
            break
        except AssertionError as e:
            log(f"{name}: seed {seed} rejected: {e}")
    else:
        raise SystemExit(f"{name}: no acceptable seed")
    log(f"{name}: seed {seed} {stats}")
    d = os.path.join(out_root, name)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d)
    save_file({"tokens": tokens.to(torch.int32).contiguous(),
               "dec_tokens": dec.to(torch.int32).contiguous(),
               "logits": logits.contiguous(),
               "greedy": greedy.to(torch.int32).contiguous()},
              os.path.join(d, "reference.safetensors"), metadata={"format": "pt"})
    m = SwitchTransformersForConditionalGeneration.from_pretrained(d, dtype=torch.float32,
                                                                   attn_implementation="eager").eval()
    with torch.no_grad():
        l = m(input_ids=tokens[None], decoder_input_ids=dec[None]).logits[0].float()
    diff = (l - logits).abs().max().item()
    assert diff <= 1e-6 * max(1.0, logits.abs().max().item()), f"{d}: reloaded logits differ by {diff}"
    sz = dir_size(d)
    assert sz < 1_000_000, f"{name} too big: {sz}"
    log(f"{name}: {sz} bytes, reload diff {diff:.2e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--describe", action="store_true", help="print tensor names/shapes")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    log(f"torch {torch.__version__} transformers {transformers.__version__}")
    out_root = os.path.abspath(args.out)
    os.makedirs(out_root, exist_ok=True)
    tokens = prompt_tokens()

    for name, (mcls, ccls, kw, base_seed) in MODELS.items():
        if args.only and name not in args.only:
            continue
        for seed in range(base_seed, base_seed + MAX_SEED_TRIES):
            model = build(name, seed)
            try:
                logits, greedy, stats = evaluate(model, tokens)
                if name in NUMPY_GAP:
                    with tempfile.TemporaryDirectory() as td:
                        model.save_pretrained(td)
                        check_numpy_gap(name, td, tokens, logits, greedy)
                break
            except AssertionError as e:
                log(f"{name}: seed {seed} rejected: {e}")
        else:
            raise SystemExit(f"{name}: no acceptable seed")
        log(f"{name}: seed {seed} experts_impl={getattr(model.config, '_experts_implementation_internal', None)} {stats}")

        d = os.path.join(out_root, name)
        shutil.rmtree(d, ignore_errors=True)
        # Native save (save_original_format=True is the default): legacy per-expert layout.
        model.save_pretrained(d)
        write_reference(d, tokens, logits, greedy)
        check_reload(name, d, tokens, logits)
        native = read_all(d)

        if name in FUSED_VARIANTS:
            fd = os.path.join(out_root, name + "-fused")
            shutil.rmtree(fd, ignore_errors=True)
            os.makedirs(fd)
            fused = fuse_state(name, native)
            # exact consistency: fused -> split round trip, and equality with
            # transformers' own fused (save_original_format=False) output
            assert same_state(split_back(name, fused), native), f"{name}: split/fuse mismatch"
            with tempfile.TemporaryDirectory() as td:
                model.save_pretrained(td, save_original_format=False)
                assert same_state(read_all(td), fused), f"{name}: hand-fused != transformers fused"
            save_file(fused, os.path.join(fd, "model.safetensors"), metadata={"format": "pt"})
            for f in ("config.json", "generation_config.json"):
                shutil.copy(os.path.join(d, f), os.path.join(fd, f))
            write_reference(fd, tokens, logits, greedy)
            check_reload(name, fd, tokens, logits)
            log(f"{name}-fused: ok")

        if name in MXFP4_VARIANTS:           # its own seed: the quantized model must pass the checks
            md = os.path.join(out_root, name + "-mxfp4")
            for seed in range(base_seed, base_seed + MAX_SEED_TRIES):
                shutil.rmtree(md, ignore_errors=True)
                try:
                    mq_stats = write_mxfp4(name, build(name, seed), md, tokens)[2]
                    break
                except AssertionError as e:
                    log(f"{name}-mxfp4: seed {seed} rejected: {e}")
            else:
                raise SystemExit(f"{name}-mxfp4: no acceptable seed")
            log(f"{name}-mxfp4: seed {seed} {mq_stats}")

        if name in SHARDED_VARIANTS:
            sd_dir = os.path.join(out_root, name + "-sharded")
            shutil.rmtree(sd_dir, ignore_errors=True)
            model.save_pretrained(sd_dir, max_shard_size=SHARDED_VARIANTS[name])
            shards = [f for f in os.listdir(sd_dir) if f.startswith("model-") and f.endswith(".safetensors")]
            assert len(shards) >= 3, f"only {len(shards)} shards"
            assert os.path.exists(os.path.join(sd_dir, "model.safetensors.index.json"))
            assert same_state(read_all(sd_dir), native)
            # Rewrite config.json in the legacy style used by real Qwen3-MoE hub
            # checkpoints (written by transformers 4.x): "num_experts" instead of
            # "num_local_experts", top-level "rope_theta" instead of
            # "rope_parameters". transformers 5 still loads it (checked below).
            cpath = os.path.join(sd_dir, "config.json")
            with open(cpath) as f:
                c = json.load(f)
            c["num_experts"] = c.pop("num_local_experts")
            rp = c.pop("rope_parameters")
            assert rp["rope_type"] == "default"
            c["rope_theta"] = rp["rope_theta"]
            with open(cpath, "w") as f:
                json.dump(dict(sorted(c.items())), f, indent=2)
                f.write("\n")
            lc = MODELS[name][1].from_pretrained(sd_dir)
            assert lc.rope_parameters["rope_theta"] == rp["rope_theta"], lc.rope_parameters
            assert lc.num_experts == c["num_experts"]
            write_reference(sd_dir, tokens, logits, greedy)
            check_reload(name, sd_dir, tokens, logits)
            log(f"{name}-sharded: ok ({len(shards)} shards)")

    for name in SWITCH_VARIANTS:
        if not args.only or name in args.only:
            make_switch(out_root, tokens, name)

    for sub in sorted(os.listdir(out_root)):
        p = os.path.join(out_root, sub)
        # only model fixtures (chat/, tokenizer/, quant/ are other scripts'); with --only, only those
        if not os.path.exists(os.path.join(p, "config.json")) or \
                (args.only and not any(sub == n or sub.startswith(n + "-") and sub[len(n) + 1:] in ("fused", "sharded", "mxfp4")
                                       for n in args.only)):
            continue
        if sub in SWITCH_VARIANTS:  # encoder-decoder: checked against transformers in make_switch
            continue
        if os.path.isdir(p) and os.path.exists(os.path.join(p, "reference.safetensors")):
            ref = load_file(os.path.join(p, "reference.safetensors"))
            toks = ref["tokens"].long()
            full = torch.cat([toks, ref["greedy"].long()]).numpy()
            npl = torch.from_numpy(np_reference_logits(p, full))
            diff = (npl[:T_PROMPT].float() - ref["logits"]).abs().max().item()
            assert diff < 1e-4, f"{sub}: numpy reference differs by {diff}"
            assert torch.equal(npl[T_PROMPT - 1:-1].argmax(-1), ref["greedy"].long()), f"{sub}: numpy greedy differs"
            log(f"{sub}: numpy float64 re-implementation matches (max |diff| {diff:.2e})")
            sz = dir_size(p)
            assert sz < 1_000_000, f"{sub} too big: {sz}"
            log(f"{sub}: {sz} bytes")
            if args.describe:
                log("\n".join(describe(p)))


if __name__ == "__main__":
    main()
