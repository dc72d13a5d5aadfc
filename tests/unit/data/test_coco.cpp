// COCO annotations: categories sorted by id become the classes, boxes convert from
// [x, y, w, h], crowd annotations are kept and marked, file names resolve against the JSON's folder,
// and broken files are named with the entry at fault.
#include "test_support.h"

#include <fstream>

#include "xformer/core/error.h"
#include "xformer/data/coco.h"

using xformer::testing::TempDir;

namespace {
std::string coco_error_of(const std::string& path) {
  return xformer::testing::thrown_error([&] { xformer::data::read_coco(path); }).what();
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
  REQUIRE(set.images[0].objects.size() == 2);  // the crowd box is kept, marked
  CHECK(set.images[0].objects[0].label == 0);
  CHECK(set.images[0].objects[0].x2 == 10);
  CHECK_FALSE(set.images[0].objects[0].crowd);
  CHECK(set.images[0].objects[1].crowd);
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
  CHECK(coco_error_of(tmp.str("missing.json")).find("annotation 6: missing or mistyped field (key 'category_id' not found)") !=
        std::string::npos);
  std::ofstream(tmp.str("typed.json")) << "{" << base << R"(, "annotations": [{"id": 9, "image_id": 1, "category_id": 1, "bbox": ["0", 0, 1, 1]}]})";
  CHECK(coco_error_of(tmp.str("typed.json")).find("annotation 9: missing or mistyped field (type must be number, but is string)") !=
        std::string::npos);
  std::ofstream(tmp.str("noname.json")) << R"({"categories": [{"id": 1}], "images": [], "annotations": []})";
  CHECK(coco_error_of(tmp.str("noname.json")).find("category 1 of the list: missing or mistyped field") != std::string::npos);
  // Ids are whole numbers; a category id is given once.
  std::ofstream(tmp.str("frac.json")) << "{" << base << R"(, "annotations": [{"id": 7, "image_id": 1.5, "category_id": 1, "bbox": [0, 0, 1, 1]}]})";
  CHECK(coco_error_of(tmp.str("frac.json")).find("annotation 7: 'image_id' must be an integer, got 1.5") != std::string::npos);
  std::ofstream(tmp.str("huge.json")) << "{" << base << R"(, "annotations": [{"id": 8, "image_id": 1, "category_id": 1180591620717411303424, "bbox": [0, 0, 1, 1]}]})";
  CHECK(coco_error_of(tmp.str("huge.json")).find("annotation 8: 'category_id' must be an integer") != std::string::npos);
  std::ofstream(tmp.str("twice.json")) << R"({"categories": [{"id": 1, "name": "x"}, {"id": 1, "name": "y"}], "images": [], "annotations": []})";
  CHECK(coco_error_of(tmp.str("twice.json")).find("category id 1 appears twice") != std::string::npos);
  std::ofstream(tmp.str("nolist.json")) << R"({"images": []})";
  CHECK(coco_error_of(tmp.str("nolist.json")).find("no 'annotations' list") != std::string::npos);
  std::ofstream(tmp.str("bad.json")) << "{not json";
  CHECK(coco_error_of(tmp.str("bad.json")).find("is not valid JSON") != std::string::npos);
  CHECK(coco_error_of(tmp.str("none.json")).find("none.json") != std::string::npos);
}

TEST_CASE("COCO boxes are clipped to their image; boxes outside it are dropped", "[data][detection]") {
  using xformer::data::CocoObject;
  std::vector<CocoObject> objects = {
      {1, 2, 5, 6, 0},        // inside: kept as it is
      {-2, 3, 4, 12, 1},      // past the left and bottom borders (10 x 10 image): clipped
      {10, 0, 14, 4, 2},      // right of the image (touches its border only): dropped
      {-8, -8, -1, -1, 3}};   // above and left of it: dropped
  const auto counts = xformer::data::clip_to_image(objects, 10, 10);
  CHECK(counts.clipped == 1);
  CHECK(counts.dropped == 2);
  REQUIRE(objects.size() == 2);
  CHECK((objects[0].x1 == 1 && objects[0].y1 == 2 && objects[0].x2 == 5 && objects[0].y2 == 6 && objects[0].label == 0));
  CHECK((objects[1].x1 == 0 && objects[1].y1 == 3 && objects[1].x2 == 4 && objects[1].y2 == 10 && objects[1].label == 1));
}
