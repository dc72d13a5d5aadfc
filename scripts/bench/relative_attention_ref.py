#!/usr/bin/env python3
"""PyTorch reference for the relative attention benchmark.

The layer `xformer_bench attention` times, written in PyTorch: at batch 1 over
L positions of width D, the packed input projection, causal attention of H
heads, the output projection, forward + backward of the output's sum.

  * plain: causal scaled dot-product attention (F.scaled_dot_product_attention
    with is_causal where PyTorch has it, else matmul + mask + softmax);
  * skew: plus relative position logits q . table[h, min(i - j, R)] with a
    per-head table of R + 1 = L/2 + 1 distances, computed with the "skewing" of
    Huang et al. 2018 (q times the L distance embeddings, one pad + reshape to
    shift each row), added to the scores as a float mask.

Prints one JSON line: median ms of --reps runs after a warm-up, and the peak
memory the layer added (CUDA: max_memory_allocated; CPU: peak resident size).
"""

import argparse
import json
import resource
import sys
import time

import torch
import torch.nn.functional as F


def relative_logits(q, table, L):
    """q (1, H, L, Dh), table (H, R + 1, Dh) -> (1, H, L, L) with
    out[i, j] = q[i] . table[min(i - j, R)] for j <= i (the rest is masked)."""
    R = table.size(1) - 1
    distance = torch.arange(L - 1, -1, -1, device=q.device).clamp(max=R)  # L - 1 .. 0
    emb = table[:, distance]                                              # (H, L, Dh)
    qe = torch.matmul(q, emb.transpose(-2, -1))                           # (1, H, L, L)
    # Row i holds distances L-1-m at column m; shift it left by L-1-i: pad one column on the
    # left, view as (L + 1, L), drop the first row.
    b, h = qe.shape[:2]
    padded = F.pad(qe, (1, 0))
    return padded.view(b, h, L + 1, L)[:, :, 1:, :]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", choices=["plain", "skew"], default="skew")
    p.add_argument("--length", type=int, default=2048)
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True  # as xformer's default
    torch.manual_seed(1)
    L, D, H = args.length, args.d_model, args.heads
    Dh = D // H
    scale = Dh ** -0.5
    x = torch.randn(1, L, D, device=device, requires_grad=True)
    w_in = (torch.randn(3 * D, D, device=device) * D ** -0.5).requires_grad_()
    w_out = (torch.randn(D, D, device=device) * D ** -0.5).requires_grad_()
    table = (torch.randn(H, L // 2 + 1, Dh, device=device) * Dh ** -0.5).requires_grad_()
    sdpa = hasattr(F, "scaled_dot_product_attention")
    causal = torch.ones(L, L, dtype=torch.bool, device=device).triu(1)

    def layer():
        q, k, v = (t.view(1, L, H, Dh).transpose(1, 2) for t in F.linear(x, w_in).chunk(3, -1))
        if args.method == "plain" and sdpa:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            bias = None
            if args.method == "skew":
                bias = relative_logits(q * scale, table, L)
            if sdpa:
                mask = bias.masked_fill(causal, float("-inf"))
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            else:
                scores = torch.matmul(q * scale, k.transpose(-2, -1))
                if bias is not None:
                    scores = scores + bias
                out = torch.matmul(F.softmax(scores.masked_fill(causal, float("-inf")), -1), v)
        F.linear(out.transpose(1, 2).reshape(1, L, D), w_out).sum().backward()

    def sync():
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    times = []
    for i in range(args.reps + 1):
        sync()
        start = time.perf_counter()
        layer()
        sync()
        if i > 0:
            times.append(1000 * (time.perf_counter() - start))
    times.sort()
    if cuda:
        peak = (torch.cuda.max_memory_allocated() - before) / 2 ** 20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 - before
    print(json.dumps({"impl": "pytorch", "method": args.method, "length": L, "d_model": D, "heads": H,
                      "device": args.device, "sdpa": sdpa, "ms": round(times[len(times) // 2], 3),
                      "peak_extra_mb": round(peak, 1)}), flush=True)


if __name__ == "__main__":
    main()
