// A self-contained HTML page showing attention weights as heatmaps, one per head, with the
// sequence's tokens named on hover: which earlier events a position looks at (as the Music
// Transformer paper shows for motifs). No LibTorch in the interface: plain row-major floats.
#pragma once
#include <string>
#include <vector>

namespace xformer::report {

// weights: heads x T x T, row-major, row i = query position i's probabilities over keys.
// labels: T names of the positions. Throws xformer::Error if the file cannot be written.
void write_attention_page(const std::string& path, const std::string& title,
                          const std::vector<float>& weights, int heads, int length,
                          const std::vector<std::string>& labels);

}  // namespace xformer::report
