// How long a translation may get: task.max_len_a/max_len_b, capped by the model's positions.
#include "test_support.h"

#include "xformer/tasks/translation.h"

using xformer::tasks::max_output_tokens;

TEST_CASE("decoding length: max_len_a * (source + EOS) + max_len_b, at most max_positions", "[tasks][translation]") {
  CHECK(max_output_tokens(5, 1.2, 10, 256) == 17);  // 1.2 * 6 = 7.2 -> 7, + 10
  CHECK(max_output_tokens(0, 2.0, 0, 256) == 2);
  // A long source: every position the model has, EOS included (training targets reach it).
  CHECK(max_output_tokens(300, 1.2, 10, 256) == 256);
  CHECK(max_output_tokens(63, 1.0, 0, 64) == 64);
  // Values too large for int64 once multiplied or added: as long as the model allows.
  CHECK(max_output_tokens(5, 1e308, 0, 256) == 256);
  CHECK(max_output_tokens(5, 1e19, 0, 256) == 256);
  CHECK(max_output_tokens(5, 1.2, std::numeric_limits<int64_t>::max(), 256) == 256);
  CHECK(max_output_tokens(5, 1e18, 4, 256) == 256);
}
