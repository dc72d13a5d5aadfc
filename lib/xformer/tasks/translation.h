// Translation with the encoder-decoder Transformer.
//
// Data: a parallel corpus (TSV or two files) per split; a joint SentencePiece model trained on
// the training split (cached by content) or given; token-bucketed batches (max_tokens).
// Loss: label-smoothed cross entropy over target tokens. Evaluation: loss, perplexity and
// corpus BLEU (sacreBLEU's default: 13a tokenization of detokenized output) of beam search.
#pragma once
#include "xformer/core/config.h"
#include "xformer/core/registry.h"
#include "xformer/models/transformer.h"
#include "xformer/tasks/task.h"

namespace xformer::tasks {

void register_translation(Registry& registry);

// The translation loss of a batch with tensors "source" (B, S), "prev_target" (B, T) and
// "target" (B, T): label-smoothed cross entropy summed over target tokens; sums["nll"] is the
// summed NLL. Shared by the task and the benchmarks.
LossOut transformer_loss(models::Transformer& model, const Batch& batch, double label_smoothing,
                         int64_t pad_id);

// The most tokens decoding may produce for a source of `source_tokens` tokens (EOS excluded),
// EOS included: max_len_a * (source_tokens + 1) + max_len_b, at most `max_positions`, as the
// decoder reads one position per output token.
int64_t max_output_tokens(int64_t source_tokens, double max_len_a, int64_t max_len_b,
                          int64_t max_positions);

}  // namespace xformer::tasks
