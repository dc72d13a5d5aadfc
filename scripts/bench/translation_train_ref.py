#!/usr/bin/env python3
"""PyTorch reference for the translation training benchmark.

Times full training steps (forward, loss, backward, Adam step, zero_grad) of a
standard post-norm encoder-decoder Transformer (Vaswani et al., 2017) on
synthetic batches, so that xformer's C++ Transformer can be compared against
the same computation running on the same LibTorch.

Model (must match the C++ side):
  * one shared embedding table [vocab, d_model] used for source tokens,
    target tokens and the output projection (joint vocabulary, no output bias);
    init N(0, d_model^-0.5), padding row zeroed
  * embeddings scaled by sqrt(d_model), plus fixed sinusoidal positions
    (even dims sin, odd dims cos, interleaved as in the paper), then dropout
  * N encoder layers: self-attn -> dropout -> add -> LayerNorm,
                      FFN (Linear, ReLU, Linear) -> dropout -> add -> LayerNorm
  * N decoder layers: causal self-attn, cross-attn, FFN, each as above
  * multi-head attention with separate q/k/v/out Linear layers (with bias);
    q is scaled by head_dim^-0.5, softmax over keys, optional attention
    dropout (0.0 by default, in which case it is skipped)
  * no final LayerNorm after the stacks (post-norm, as in the paper)
  * label-smoothed cross entropy:
        loss_tok = (1 - eps) * nll + eps / V * sum_v(-log p_v)
    summed over non-pad target tokens, divided by the number of target
    tokens before backward
  * Adam(lr, betas=(0.9, 0.98), eps=1e-9), constant learning rate

Output: exactly one JSON line on stdout; everything else goes to stderr.

Example:
  /usr/bin/python3 scripts/bench/translation_train_ref.py --threads 2
"""

import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD_ID = 0
USE_SDPA = False  # --sdpa
BOS_ID = 2
FIRST_REGULAR_ID = 4


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class SinusoidalPositions(nn.Module):
    """Fixed positional encodings: pe[p, 2i] = sin(p / 10000^(2i/d)),
    pe[p, 2i+1] = cos(p / 10000^(2i/d))."""

    def __init__(self, d_model, max_len):
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
        two_i = torch.arange(0, d_model, 2, dtype=torch.float32)
        inv_freq = torch.exp(-math.log(10000.0) * two_i / d_model)
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(pos * inv_freq)
        pe[:, 1::2] = torch.cos(pos * inv_freq[: d_model // 2])
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, length):
        return self.pe[:length]


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, heads, attn_dropout):
        super().__init__()
        assert d_model % heads == 0, "d_model must be divisible by heads"
        self.heads = heads
        self.head_dim = d_model // heads
        self.scale = self.head_dim ** -0.5
        self.attn_dropout = attn_dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _split(self, x):
        # [B, L, D] -> [B, H, L, Dh]
        b, l, _ = x.shape
        return x.view(b, l, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, query, key_value, mask=None):
        """query [B, Tq, D], key_value [B, Tk, D];
        mask: bool, broadcastable to [B, H, Tq, Tk], True = blocked."""
        b, tq, d = query.shape
        q = self._split(self.q_proj(query) * self.scale)
        k = self._split(self.k_proj(key_value))
        v = self._split(self.v_proj(key_value))
        if USE_SDPA:
            # PyTorch's fused kernels: masks as "may attend", the causal one by flag.
            causal = isinstance(mask, str)
            ctx = F.scaled_dot_product_attention(
                q, k, v, attn_mask=None if causal or mask is None else ~mask,
                dropout_p=self.attn_dropout if self.training else 0.0,
                is_causal=causal, scale=1.0)  # q is already scaled
            return self.out_proj(ctx.transpose(1, 2).reshape(b, tq, d))
        scores = torch.matmul(q, k.transpose(-2, -1))  # [B, H, Tq, Tk]
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        attn = F.softmax(scores, dim=-1)
        if self.attn_dropout > 0.0:
            attn = F.dropout(attn, p=self.attn_dropout, training=self.training)
        ctx = torch.matmul(attn, v)  # [B, H, Tq, Dh]
        ctx = ctx.transpose(1, 2).reshape(b, tq, d)
        return self.out_proj(ctx)


class FeedForward(nn.Module):
    def __init__(self, d_model, ffn):
        super().__init__()
        self.fc1 = nn.Linear(d_model, ffn)
        self.fc2 = nn.Linear(ffn, d_model)
        for lin in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class EncoderLayer(nn.Module):
    def __init__(self, d_model, heads, ffn, dropout, attn_dropout):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, heads, attn_dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, ffn)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = dropout

    def forward(self, x, src_mask):
        h = self.self_attn(x, x, src_mask)
        x = self.norm1(x + F.dropout(h, self.dropout, self.training))
        h = self.ffn(x)
        x = self.norm2(x + F.dropout(h, self.dropout, self.training))
        return x


class DecoderLayer(nn.Module):
    def __init__(self, d_model, heads, ffn, dropout, attn_dropout):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, heads, attn_dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MultiHeadAttention(d_model, heads, attn_dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, ffn)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = dropout

    def forward(self, y, memory, tgt_mask, mem_mask):
        h = self.self_attn(y, y, tgt_mask)
        y = self.norm1(y + F.dropout(h, self.dropout, self.training))
        h = self.cross_attn(y, memory, mem_mask)
        y = self.norm2(y + F.dropout(h, self.dropout, self.training))
        h = self.ffn(y)
        y = self.norm3(y + F.dropout(h, self.dropout, self.training))
        return y


class Transformer(nn.Module):
    def __init__(self, vocab, d_model, heads, ffn, layers, dropout,
                 attn_dropout, max_len):
        super().__init__()
        self.d_model = d_model
        self.embed = nn.Embedding(vocab, d_model, padding_idx=PAD_ID)
        nn.init.normal_(self.embed.weight, mean=0.0, std=d_model ** -0.5)
        with torch.no_grad():
            self.embed.weight[PAD_ID].zero_()
        self.positions = SinusoidalPositions(d_model, max_len)
        self.dropout = dropout
        self.encoder = nn.ModuleList(
            EncoderLayer(d_model, heads, ffn, dropout, attn_dropout)
            for _ in range(layers))
        self.decoder = nn.ModuleList(
            DecoderLayer(d_model, heads, ffn, dropout, attn_dropout)
            for _ in range(layers))

    def _embed(self, tokens):
        x = self.embed(tokens) * math.sqrt(self.d_model)
        x = x + self.positions(tokens.size(1))
        return F.dropout(x, self.dropout, self.training)

    def forward(self, src, tgt_in):
        """src [B, S], tgt_in [B, T] -> logits [B, T, V]."""
        t = tgt_in.size(1)
        src_pad = src.eq(PAD_ID)[:, None, None, :]          # [B,1,1,S]
        tgt_pad = tgt_in.eq(PAD_ID)[:, None, None, :]       # [B,1,1,T]
        causal = torch.ones(t, t, dtype=torch.bool,
                            device=tgt_in.device).triu(1)   # [T,T]
        tgt_mask = tgt_pad | causal                         # [B,1,T,T]
        if USE_SDPA:
            # Right-padded targets: causality alone keeps real positions off the padding,
            # as in xformer (which also uses the flash kernel's causal mode here).
            tgt_mask = "causal"

        x = self._embed(src)
        for layer in self.encoder:
            x = layer(x, src_pad)
        y = self._embed(tgt_in)
        for layer in self.decoder:
            y = layer(y, x, tgt_mask, src_pad)
        return F.linear(y, self.embed.weight)  # tied output projection


def label_smoothed_loss(logits, target, eps):
    """Returns (summed smoothed loss, summed nll, number of non-pad tokens)."""
    vocab = logits.size(-1)
    lprobs = F.log_softmax(logits, dim=-1).view(-1, vocab)
    target = target.reshape(-1)
    non_pad = target.ne(PAD_ID)
    nll = -lprobs.gather(1, target.unsqueeze(1)).squeeze(1)
    smooth = -lprobs.sum(dim=-1)
    loss = (1.0 - eps) * nll + (eps / vocab) * smooth
    loss = loss.masked_fill(~non_pad, 0.0).sum()
    nll = nll.masked_fill(~non_pad, 0.0).sum()
    return loss, nll, non_pad.sum()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=1024)
    p.add_argument("--layers", type=int, default=3,
                   help="encoder layers = decoder layers")
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--src-len", type=int, default=32)
    p.add_argument("--tgt-len", type=int, default=32)
    p.add_argument("--steps", type=int, default=30, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads (0 = torch default)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--attn-dropout", type=float, default=0.0)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"],
                   help="autocast dtype for the forward pass (CUDA)")
    p.add_argument("--sdpa", action="store_true",
                   help="attention through F.scaled_dot_product_attention")
    return p.parse_args()


def main():
    args = parse_args()
    global USE_SDPA
    USE_SDPA = args.sdpa
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True  # as xformer's train.tf32 default
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.vocab <= FIRST_REGULAR_ID:
        sys.exit("--vocab must be larger than %d" % FIRST_REGULAR_ID)

    model = Transformer(args.vocab, args.d_model, args.heads, args.ffn,
                        args.layers, args.dropout, args.attn_dropout,
                        max_len=max(args.src_len, args.tgt_len)).to(device)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    # fused=True: PyTorch's fastest Adam on CUDA (one kernel for all parameters).
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr,
                                 betas=(0.9, 0.98), eps=1e-9,
                                 **({"fused": True} if cuda else {}))
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    scaler = torch.cuda.amp.GradScaler(enabled=args.amp == "fp16")

    # Synthetic batch, generated once: ids in [4, vocab), no padding.
    gen = torch.Generator().manual_seed(args.seed)
    src = torch.randint(FIRST_REGULAR_ID, args.vocab,
                        (args.batch, args.src_len), generator=gen)
    tgt_out = torch.randint(FIRST_REGULAR_ID, args.vocab,
                            (args.batch, args.tgt_len), generator=gen)
    tgt_in = torch.cat(
        [torch.full((args.batch, 1), BOS_ID, dtype=tgt_out.dtype),
         tgt_out[:, :-1]], dim=1)
    src, tgt_in, tgt_out = src.to(device), tgt_in.to(device), tgt_out.to(device)

    log("torch %s, intra-op threads %d, interop threads %d"
        % (torch.__version__, torch.get_num_threads(),
           torch.get_num_interop_threads()))
    log("model: d_model=%d heads=%d ffn=%d layers=%d+%d vocab=%d "
        "dropout=%g attn_dropout=%g params=%d"
        % (args.d_model, args.heads, args.ffn, args.layers, args.layers,
           args.vocab, args.dropout, args.attn_dropout, params))
    log("batch=%d src_len=%d tgt_len=%d warmup=%d steps=%d"
        % (args.batch, args.src_len, args.tgt_len, args.warmup, args.steps))

    def train_step():
        with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16,
                            enabled=amp_dtype is not None):
            logits = model(src, tgt_in)
            loss, nll, ntok = label_smoothed_loss(logits, tgt_out,
                                                  args.label_smoothing)
        scaler.scale(loss / ntok).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        return loss, nll, ntok

    def sync():
        if cuda:
            torch.cuda.synchronize()

    first = None
    for _ in range(args.warmup):
        out = train_step()
        if first is None:
            first = out
    sync()
    t0 = time.perf_counter()
    c0 = time.process_time()
    for _ in range(args.steps):
        out = train_step()
        if first is None:
            first = out
    sync()
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0

    tokens = args.steps * args.batch * args.tgt_len
    if first is not None:
        loss, nll, ntok = first
        log("first step: loss/tok %.4f nll/tok %.4f"
            % (loss.item() / ntok.item(), nll.item() / ntok.item()))
        loss, nll, ntok = out
        log("last step:  loss/tok %.4f nll/tok %.4f"
            % (loss.item() / ntok.item(), nll.item() / ntok.item()))
    result = {
        "impl": "pytorch",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "amp": args.amp,
        "sdpa": args.sdpa,
        "steps": args.steps,
        "seconds": round(seconds, 4),
        "tgt_tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else 0.0,
        "step_ms": round(1000.0 * seconds / args.steps, 2) if args.steps else 0.0,
        "params": params,
    }
    log("%.1f tgt tokens/s, %.1f ms/step; process cpu time %.2f s "
        "(%.2f cores busy on average)"
        % (result["tgt_tokens_per_s"], result["step_ms"], cpu_seconds,
           cpu_seconds / seconds if seconds > 0 else 0.0))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
