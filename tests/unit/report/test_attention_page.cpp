// The attention page: its data (sqrt-scaled weights, labels) and its refusal of wrong sizes.
#include "test_support.h"

#include <fstream>

#include "xformer/core/error.h"
#include "xformer/report/attention_page.h"

TEST_CASE("the attention page embeds sqrt-scaled weights and the labels", "[report]") {
  xformer::testing::TempDir dir("attention_page");
  // 1 head, 2 positions: row 0 attends only to itself, row 1 splits 0.25 / 0.75.
  const std::vector<float> w = {1.0f, 0.0f, 0.25f, 0.75f};
  xformer::report::write_attention_page(dir.str("a.html"), "test page", w, 1, 2, {"BOS", "NOTE_ON(60)"});
  std::ifstream in(dir.str("a.html"));
  const std::string page((std::istreambuf_iterator<char>(in)), {});
  CHECK(page.find("<title>test page</title>") != std::string::npos);
  // sqrt(0.25) * 255 = 127.5 -> 128; sqrt(0.75) * 255 = 220.8 -> 221.
  CHECK(page.find("\"weights\":[[255,0,128,221]]") != std::string::npos);
  CHECK(page.find("\"labels\":[\"BOS\",\"NOTE_ON(60)\"]") != std::string::npos);
  CHECK_THROWS_WITH(xformer::report::write_attention_page(dir.str("b.html"), "x", w, 2, 2, {"a", "b"}),
                    Catch::Contains("4 weights") && Catch::Contains("2 heads"));
}
