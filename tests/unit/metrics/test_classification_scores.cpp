// Top-1 / top-5 accuracy, NLL and the confusion matrix against values worked out by hand.
#include "test_support.h"

#include <cmath>

#include "xformer/metrics/classification.h"

using xformer::metrics::ClassificationScores;

TEST_CASE("ClassificationScores: top-1, top-5, NLL and confusion on a known batch", "[metrics]") {
  // 7 classes; each row ranks the classes by its logits (larger first).
  // Row 0: label 2 ranked 1st. Row 1: label 0 ranked 3rd. Row 2: label 5 ranked 7th (last).
  auto logits = torch::tensor({{0.f, 1.f, 9.f, 2.f, 3.f, 4.f, 5.f},
                               {7.f, 9.f, 1.f, 8.f, 2.f, 3.f, 4.f},
                               {9.f, 8.f, 7.f, 6.f, 5.f, 0.f, 4.f}});
  auto labels = torch::tensor({2, 0, 5}, torch::kLong);
  ClassificationScores scores(7);
  scores.add(logits.slice(0, 0, 2), labels.slice(0, 0, 2));  // two batches, summed
  scores.add(logits.slice(0, 2, 3), labels.slice(0, 2, 3));
  CHECK(scores.count() == 3);
  CHECK(scores.accuracy() == Approx(1.0 / 3));
  CHECK(scores.top5_accuracy() == Approx(2.0 / 3));  // row 2's label is ranked 7th

  double nll = 0;  // -log softmax(row)[label], by hand
  for (int64_t r = 0; r < 3; ++r) {
    double z = 0;
    for (int64_t c = 0; c < 7; ++c) z += std::exp(logits[r][c].item<double>());
    nll += std::log(z) - logits[r][labels[r].item<int64_t>()].item<double>();
  }
  CHECK(scores.nll() == Approx(nll / 3));

  auto expected = torch::zeros({7, 7}, torch::kLong);  // (true, predicted)
  expected[2][2] = 1, expected[0][1] = 1, expected[5][0] = 1;
  CHECK(torch::equal(scores.confusion(), expected));
}

TEST_CASE("ClassificationScores: with 5 classes or fewer every label is in the top 5", "[metrics]") {
  ClassificationScores scores(3);
  scores.add(torch::tensor({{3.f, 2.f, 1.f}, {3.f, 2.f, 1.f}}), torch::tensor({0, 2}, torch::kLong));
  CHECK(scores.accuracy() == Approx(0.5));
  CHECK(scores.top5_accuracy() == Approx(1.0));
  ClassificationScores none(3);
  CHECK_THROWS(none.accuracy());
}
