// COCO annotations: categories sorted by id become the classes, boxes convert from
// [x, y, w, h], crowd annotations are skipped, file names resolve against the JSON's folder,
// and broken files are named with the entry at fault.
#include "test_support.h"

#include <fstream>

#include "xformer/core/error.h"
#include "xformer/data/coco.h"

using xformer::testing::TempDir;

namespace {
std::string coco_error_of(const std::string& path) {
  try {
    xformer::data::read_coco(path);
  } catch (const xformer::Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("COCO annotations read, broken ones named", "[data][detection]") {
  TempDir tmp("coco");
  std::ofstream(tmp.str("a.json")) << R"({
    "images": [{"id": 5, "file_name": "pics/x.png"}, {"id": 9, "file_name": "y.png"}],
    "annotations": [
      {"id": 1, "image_id": 9, "category_id": 7, "bbox": [1, 2, 3, 4]},
      {"id": 2, "image_id": 5, "category_id": 3, "bbox": [0, 0, 10, 5]},
      {"id": 3, "image_id": 5, "category_id": 3, "bbox": [0, 0, 50, 50], "iscrowd": 1}],
    "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]})";
  auto set = xformer::data::read_coco(tmp.str("a.json"));
  CHECK(set.classes == std::vector<std::string>{"cat", "dog"});
  CHECK(set.category_ids == std::vector<int64_t>{3, 7});
  REQUIRE(set.images.size() == 2);
  CHECK(set.images[0].path == tmp.str("pics/x.png"));
  REQUIRE(set.images[0].objects.size() == 1);  // the crowd box is skipped
  CHECK(set.images[0].objects[0].label == 0);
  CHECK(set.images[0].objects[0].x2 == 10);
  REQUIRE(set.images[1].objects.size() == 1);
  const auto& o = set.images[1].objects[0];
  CHECK(o.label == 1);
  CHECK((o.x1 == 1 && o.y1 == 2 && o.x2 == 4 && o.y2 == 6));

  const std::string base = R"("categories": [{"id": 1, "name": "x"}], "images": [{"id": 1, "file_name": "a.png"}])";
  std::ofstream(tmp.str("flat.json")) << "{" << base << R"(, "annotations": [{"id": 4, "image_id": 1, "category_id": 1, "bbox": [0, 0, 0, 3]}]})";
  CHECK(coco_error_of(tmp.str("flat.json")).find("annotation 4: bbox without area") != std::string::npos);
  std::ofstream(tmp.str("cat.json")) << "{" << base << R"(, "annotations": [{"id": 5, "image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1]}]})";
  CHECK(coco_error_of(tmp.str("cat.json")).find("unknown category 2") != std::string::npos);
  std::ofstream(tmp.str("missing.json")) << "{" << base << R"(, "annotations": [{"id": 6, "image_id": 1, "bbox": [0, 0, 1, 1]}]})";
  CHECK(coco_error_of(tmp.str("missing.json")).find("missing or mistyped field") != std::string::npos);
  std::ofstream(tmp.str("nolist.json")) << R"({"images": []})";
  CHECK(coco_error_of(tmp.str("nolist.json")).find("no 'annotations' list") != std::string::npos);
  std::ofstream(tmp.str("bad.json")) << "{not json";
  CHECK(coco_error_of(tmp.str("bad.json")).find("is not valid JSON") != std::string::npos);
  CHECK(coco_error_of(tmp.str("none.json")).find("none.json") != std::string::npos);
}
