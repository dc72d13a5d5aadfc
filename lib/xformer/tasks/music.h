// Music performance modeling (Huang et al. 2018): MIDI files become performance-event sequences
// (data/performance.h), a decoder-only Transformer with relative (or absolute) attention learns
// them, evaluation reports the NLL per event, and sampling writes new MIDI files.
//
// Data: every .mid/.midi file under the split's folder (corrupt ones are reported and skipped).
// Training: per epoch, each piece is augmented (transposition, time stretch), encoded, and cut
// into random crops of task.length events; batches of task.batch_size crops. Evaluation:
// consecutive windows of task.length events over each piece, without augmentation.
#pragma once
#include "xformer/core/registry.h"

namespace xformer::tasks {

void register_music(Registry& registry);

}  // namespace xformer::tasks
