#!/usr/bin/env python3
"""PyTorch reference for the decoding benchmark.

Greedy decoding and beam search with the key/value cache, written as one
would in PyTorch (vectorised over the batch, as fairseq does), on the
Transformer of translation_train_ref.py (same shapes; an untrained model, in
eval mode), so that `xformer_bench decode` can be compared with the same work
on the same LibTorch:

  * the encoder runs once; each decoder step embeds the last token at its
    position, appends its keys/values to every self-attention cache, and
    attends to the cache and to the encoder output (whose keys/values are
    projected once);
  * greedy: argmax per row; beam search of width K: log-softmax, add the beam
    scores, top 2K of the K*V candidates per sentence, the first K that do not
    end in EOS continue (caches reordered by index_select), finished ones are
    kept with the GNMT length penalty; every row stops at --tgt-len tokens.

With a random model EOS is practically never chosen, so every sentence decodes
--tgt-len tokens on both sides.

Output: one JSON line on stdout (sentences/s, tokens/s); logs on stderr.
"""

import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

import translation_train_ref as ref

EOS_ID = 3


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def split_heads(mha, x):
    b, t, _ = x.shape
    return x.view(b, t, mha.heads, mha.head_dim).transpose(1, 2)  # (B, H, T, Dh)


def attend(mha, q, k, v):
    """q (B, H, 1, Dh) already scaled; k, v (B, H, T, Dh) -> (B, 1, D)."""
    if ref.USE_SDPA:
        ctx = F.scaled_dot_product_attention(q, k, v, scale=1.0)
    else:
        ctx = torch.matmul(F.softmax(torch.matmul(q, k.transpose(-2, -1)), dim=-1), v)
    b = q.size(0)
    return mha.out_proj(ctx.transpose(1, 2).reshape(b, 1, -1))


class Stepper:
    """The decoder of `model`, one token per row per call, over a key/value cache."""

    def __init__(self, model, src):
        self.model = model
        x = model._embed(src)
        src_pad = src.eq(ref.PAD_ID)[:, None, None, :]
        for layer in model.encoder:
            x = layer(x, src_pad)
        memory = x
        # Cross-attention keys/values: projected once.
        self.cross = [(split_heads(l.cross_attn, l.cross_attn.k_proj(memory)),
                       split_heads(l.cross_attn, l.cross_attn.v_proj(memory))) for l in model.decoder]
        self.self_kv = [None] * len(model.decoder)
        self.t = 0

    def step(self, tokens):
        """tokens (N) -> logits (N, V)."""
        m = self.model
        y = m.embed(tokens).unsqueeze(1) * math.sqrt(m.d_model) + m.positions.pe[self.t]  # (N, 1, D)
        for i, layer in enumerate(m.decoder):
            sa = layer.self_attn
            q = split_heads(sa, sa.q_proj(y) * sa.scale)
            k, v = split_heads(sa, sa.k_proj(y)), split_heads(sa, sa.v_proj(y))
            if self.self_kv[i] is not None:
                k = torch.cat([self.self_kv[i][0], k], 2)
                v = torch.cat([self.self_kv[i][1], v], 2)
            self.self_kv[i] = (k, v)
            y = layer.norm1(y + attend(sa, q, k, v))
            ca = layer.cross_attn
            q = split_heads(ca, ca.q_proj(y) * ca.scale)
            y = layer.norm2(y + attend(ca, q, *self.cross[i]))
            y = layer.norm3(y + layer.ffn(y))
        self.t += 1
        return F.linear(y.squeeze(1), m.embed.weight)

    def reorder(self, index):
        self.self_kv = [kv and (kv[0].index_select(0, index), kv[1].index_select(0, index)) for kv in self.self_kv]
        self.cross = [(k.index_select(0, index), v.index_select(0, index)) for k, v in self.cross]


def greedy(stepper, batch, max_len, device):
    tokens = torch.full((batch,), ref.BOS_ID, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    out = []
    for t in range(max_len):
        logp = F.log_softmax(stepper.step(tokens).float(), -1)
        tokens = logp.argmax(-1) if t + 1 < max_len else torch.full_like(tokens, EOS_ID)
        out.append(tokens)
        done |= tokens.eq(EOS_ID)
        if bool(done.all()):
            break
    return torch.stack(out, 1)


def beam_search(stepper, batch, beam, max_len, lenpen, device):
    K = beam
    stepper.reorder(torch.arange(batch, device=device).repeat_interleave(K))
    scores = torch.full((batch, K), -math.inf, device=device)
    scores[:, 0] = 0  # one live beam at the start
    tokens = torch.full((batch * K,), ref.BOS_ID, dtype=torch.long, device=device)
    history = torch.empty(batch * K, 0, dtype=torch.long, device=device)
    finished = [[] for _ in range(batch)]  # (normalised score, tokens)
    offsets = (torch.arange(batch, device=device) * K).unsqueeze(1)
    for t in range(max_len):
        logp = F.log_softmax(stepper.step(tokens).float(), -1)  # (B K, V)
        V = logp.size(1)
        if t + 1 == max_len:  # out of room: every live beam ends with EOS
            final = (scores + logp[:, EOS_ID].view(batch, K)).cpu()
            for b in range(batch):
                for k in range(K):
                    if final[b, k] > -math.inf:
                        finished[b].append((final[b, k].item() / ((5 + t + 1) / 6) ** lenpen, history[b * K + k]))
            break
        total = (logp.view(batch, K, V) + scores.unsqueeze(2)).view(batch, K * V)
        cand_scores, cand = total.topk(2 * K, dim=1)  # (B, 2K)
        cand_beam, cand_tok = cand // V, cand % V
        is_eos = cand_tok.eq(EOS_ID) & cand_scores.gt(-math.inf)
        if bool(is_eos.any()):  # rare with a random model: keep them, on the host
            for b, c in is_eos.nonzero().tolist():
                if c < K:
                    row = b * K + cand_beam[b, c].item()
                    finished[b].append((cand_scores[b, c].item() / ((5 + t + 1) / 6) ** lenpen, history[row]))
        # The first K candidates of each row that do not end in EOS go on.
        rank = is_eos.long() * (2 * K) + torch.arange(2 * K, device=device)
        keep = rank.topk(K, dim=1, largest=False).indices  # (B, K)
        scores = cand_scores.gather(1, keep)
        source = (cand_beam.gather(1, keep) + offsets).view(-1)
        tokens = cand_tok.gather(1, keep).view(-1)
        history = torch.cat([history.index_select(0, source), tokens.unsqueeze(1)], 1)
        stepper.reorder(source)
    return [max(f, key=lambda x: x[0])[1] if f else None for f in finished]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default in [("d-model", 256), ("heads", 4), ("ffn", 1024), ("layers", 3), ("vocab", 8000),
                          ("batch", 64), ("src-len", 32), ("tgt-len", 32), ("beam", 4), ("threads", 0),
                          ("seed", 1)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--mode", choices=["greedy", "beam"], default="greedy")
    p.add_argument("--lenpen", type=float, default=1.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", default="none", choices=["none", "bf16"], help="autocast (CUDA)")
    p.add_argument("--sdpa", action="store_true", help="attention by F.scaled_dot_product_attention")
    args = p.parse_args()
    ref.USE_SDPA = args.sdpa
    device = torch.device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = ref.Transformer(args.vocab, args.d_model, args.heads, args.ffn, args.layers, 0.0, 0.0,
                            max_len=max(256, args.src_len, args.tgt_len + 2)).to(device).eval()
    src = torch.randint(ref.FIRST_REGULAR_ID, args.vocab, (args.batch, args.src_len), device=device)

    def run_once():
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                     enabled=args.amp == "bf16"):
            stepper = Stepper(model, src)
            if args.mode == "beam":
                return beam_search(stepper, args.batch, args.beam, args.tgt_len, args.lenpen, device)
            return greedy(stepper, args.batch, args.tgt_len, device)

    run_once()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run_once()
    if device.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - start
    tokens = args.batch * args.tgt_len
    log("torch %s, %d threads, %s, %.3f s" % (torch.__version__, torch.get_num_threads(), args.mode, secs))
    print(json.dumps({"impl": "pytorch", "mode": args.mode, "beam": args.beam if args.mode == "beam" else 1,
                      "sentences": args.batch, "seconds": round(secs, 4),
                      "sentences_per_s": round(args.batch / secs, 2),
                      "tokens_per_s": round(tokens / secs, 1)}), flush=True)


if __name__ == "__main__":
    main()
