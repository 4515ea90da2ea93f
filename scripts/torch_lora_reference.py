"""PyTorch reference for Morris's LoRA training step (used by check:torch and bench:train).

A plain Llama forward with Hugging Face semantics (RMSNorm, rotate-half RoPE, grouped-query
attention, SiLU MLP, optional tied LM head), LoRA side paths on the chosen projections, and the
same weighted cross-entropy as src/model/graph/training.ts; autograd gives the LoRA gradients.

  check DIR   reads DIR/model (config.json + model.safetensors), DIR/lora.safetensors and
              DIR/batch.json; writes DIR/torch.json with loss and gradients (float64).
  dpo DIR     the same files, batch.json holding 2P sequences (P chosen, then P rejected),
              `counted`, `ref_margin` [P] and `beta`; the DPO loss
              mean_p −log σ(β·((log π(c_p) − log π(r_p)) − ref_margin_p)) with each log π the sum
              of the counted tokens' log-probs; writes loss, gradients and per-sequence log-probs.
  bench ...   one SmolLM2-135M-sized training step in fp32 with random weights; prints JSON.
"""
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        if t["dtype"] == "BF16":
            u16 = np.frombuffer(data[a:b], dtype=np.uint16).astype(np.uint32) << 16
            arr = u16.view(np.float32)
        else:
            arr = np.frombuffer(data[a:b], dtype=DTYPES[t["dtype"]])
        out[name] = torch.from_numpy(arr.copy().reshape(t["shape"]))
    return out


def module_group(m):
    return "mlp" if m in ("gate_proj", "up_proj", "down_proj") else "self_attn"


def peft_key(layer, m, ab):
    return f"base_model.model.model.layers.{layer}.{module_group(m)}.{m}.lora_{ab}.weight"


def rms_norm(x, w, eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def forward_loss(cfg, W, lora, scale, ids, targets, weights, dropout=0.0):
    """Weighted cross-entropy of a right-padded batch; lora maps PEFT keys to tensors."""
    return -(token_logp(cfg, W, lora, scale, ids, targets, dropout) * weights).sum()


def token_logp(cfg, W, lora, scale, ids, targets, dropout=0.0):
    """log p(target) at every position of a right-padded batch, (B, S)."""
    B, S = ids.shape
    H = cfg["hidden_size"]
    nH = cfg["num_attention_heads"]
    nKV = cfg.get("num_key_value_heads", nH)
    hd = cfg.get("head_dim") or H // nH
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = cfg.get("rope_theta", 10000.0)
    dtype = W["model.embed_tokens.weight"].dtype

    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    pos = torch.arange(S, dtype=torch.float64)
    freqs = pos[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)  # (S, hd)
    causal = torch.full((S, S), float("-inf"), dtype=dtype).triu(1)

    def proj(x, layer, m):
        y = x @ W[f"model.layers.{layer}.{module_group(m)}.{m}.weight"].t()
        a = lora.get(peft_key(layer, m, "A"))
        if a is not None:
            xin = F.dropout(x, p=dropout, training=True) if dropout > 0 else x
            y = y + scale * ((xin @ a.t()) @ lora[peft_key(layer, m, "B")].t())
        return y

    x = W["model.embed_tokens.weight"][ids]  # (B, S, H)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = proj(h, i, "q_proj").view(B, S, nH, hd).transpose(1, 2)
        k = proj(h, i, "k_proj").view(B, S, nKV, hd).transpose(1, 2)
        v = proj(h, i, "v_proj").view(B, S, nKV, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nH // nKV, dim=1)
        v = v.repeat_interleave(nH // nKV, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + causal
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, S, nH * hd)
        x = x + proj(ctx, i, "o_proj")
        h2 = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        act = F.silu(proj(h2, i, "gate_proj")) * proj(h2, i, "up_proj")
        x = x + proj(act, i, "down_proj")
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else W["lm_head.weight"]
    logits = x @ head.t()
    logp = logits.log_softmax(-1)
    return logp.gather(-1, targets[..., None])[..., 0]


def check(run_dir):
    torch.set_default_dtype(torch.float64)
    with open(os.path.join(run_dir, "model", "config.json")) as f:
        cfg = json.load(f)
    W = {k: v.double() for k, v in read_safetensors(os.path.join(run_dir, "model", "model.safetensors")).items()}
    lora = {k: v.double().requires_grad_(True) for k, v in read_safetensors(os.path.join(run_dir, "lora.safetensors")).items()}
    with open(os.path.join(run_dir, "batch.json")) as f:
        b = json.load(f)
    shape = (b["batch"], b["seqLen"])
    ids = torch.tensor(b["ids"], dtype=torch.long).view(shape)
    targets = torch.tensor(b["targets"], dtype=torch.long).view(shape)
    weights = torch.tensor(b["weights"], dtype=torch.float64).view(shape)
    loss = forward_loss(cfg, W, lora, b["alpha"] / b["rank"], ids, targets, weights)
    loss.backward()
    out = {"loss": loss.item(), "grads": {k: v.grad.flatten().tolist() for k, v in lora.items()}}
    with open(os.path.join(run_dir, "torch.json"), "w") as f:
        json.dump(out, f)


def dpo(run_dir):
    torch.set_default_dtype(torch.float64)
    with open(os.path.join(run_dir, "model", "config.json")) as f:
        cfg = json.load(f)
    W = {k: v.double() for k, v in read_safetensors(os.path.join(run_dir, "model", "model.safetensors")).items()}
    lora = {k: v.double().requires_grad_(True) for k, v in read_safetensors(os.path.join(run_dir, "lora.safetensors")).items()}
    with open(os.path.join(run_dir, "batch.json")) as f:
        b = json.load(f)
    shape = (b["batch"], b["seqLen"])
    ids = torch.tensor(b["ids"], dtype=torch.long).view(shape)
    targets = torch.tensor(b["targets"], dtype=torch.long).view(shape)
    counted = torch.tensor(b["counted"], dtype=torch.float64).view(shape)
    seq = (token_logp(cfg, W, lora, b["alpha"] / b["rank"], ids, targets) * counted).sum(-1)  # (2P,)
    P = b["batch"] // 2
    z = b["beta"] * ((seq[:P] - seq[P:]) - torch.tensor(b["ref_margin"], dtype=torch.float64))
    loss = -F.logsigmoid(z).mean()
    loss.backward()
    out = {"loss": loss.item(), "seq_logp": seq.tolist(), "grads": {k: v.grad.flatten().tolist() for k, v in lora.items()}}
    with open(os.path.join(run_dir, "torch.json"), "w") as f:
        json.dump(out, f)


def bench(args):
    """SmolLM2-135M dimensions, fp32, random weights; LoRA r=16 on q/v; forward + backward + AdamW."""
    opts = dict(a.split("=", 1) for a in args)
    threads = int(opts.get("threads", "2"))
    seq = int(opts.get("seq", "512"))
    steps = int(opts.get("steps", "2"))
    dropout = float(opts.get("dropout", "0.1"))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
           "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152, "rms_norm_eps": 1e-5,
           "rope_theta": 100000.0, "tie_word_embeddings": True}
    H, I, V = 576, 1536, 49152
    kv = 3 * 64
    with torch.no_grad():
        W = {"model.embed_tokens.weight": torch.randn(V, H), "model.norm.weight": torch.ones(H)}  # std 1, as the engine's random checkpoint
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            W[p + "input_layernorm.weight"] = torch.ones(H)
            W[p + "post_attention_layernorm.weight"] = torch.ones(H)
            for m, (o, n) in {"q_proj": (H, H), "k_proj": (kv, H), "v_proj": (kv, H), "o_proj": (H, H),
                              "gate_proj": (I, H), "up_proj": (I, H), "down_proj": (H, I)}.items():
                W[f"{p}{module_group(m)}.{m}.weight"] = torch.randn(o, n) * 0.02
    r = 16
    lora = {}
    for i in range(cfg["num_hidden_layers"]):
        for m, o in (("q_proj", H), ("v_proj", kv)):
            lora[peft_key(i, m, "A")] = (torch.rand(r, H) * 2 - 1).div(math.sqrt(H)).requires_grad_(True)
            lora[peft_key(i, m, "B")] = torch.zeros(o, r).requires_grad_(True)
    opt = torch.optim.AdamW(list(lora.values()), lr=1e-4, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (1, seq), generator=g)
    targets = torch.randint(0, V, (1, seq), generator=g)
    weights = torch.full((1, seq), 1.0 / seq)
    times = []
    cpu = []
    for s in range(steps + 1):
        t0 = time.perf_counter()
        c0 = time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = forward_loss(cfg, W, lora, 32 / r, ids, targets, weights, dropout=dropout)
        loss.backward()
        opt.step()
        if s > 0:  # the first step warms up allocators and thread pools
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    step_s = sorted(times)[len(times) // 2]
    print(json.dumps({"tok_s": seq / step_s, "step_ms": step_s * 1000, "cpu_ms": sorted(cpu)[len(cpu) // 2] * 1000, "loss": loss.item(),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "torch": torch.__version__, "threads": threads}))


if __name__ == "__main__":
    if sys.argv[1] == "check":
        check(sys.argv[2])
    elif sys.argv[1] == "dpo":
        dpo(sys.argv[2])
    elif sys.argv[1] == "bench":
        bench(sys.argv[2:])
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
