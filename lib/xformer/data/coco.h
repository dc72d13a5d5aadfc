// COCO-format detection annotations (the JSON users have): images, annotations with
// [x, y, width, height] boxes, categories. No LibTorch here.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace xformer::data {

struct CocoObject {
  double x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  int64_t label = 0;  // index into CocoSet::classes
  bool crowd = false;  // "iscrowd": a region of many objects (not trained on; ignored when scoring)
};

struct CocoImage {
  int64_t id = 0;
  std::string path;  // file_name resolved against the image root
  std::vector<CocoObject> objects;
};

struct CocoSet {
  std::vector<CocoImage> images;
  std::vector<std::string> classes;       // category names by increasing category id
  std::vector<int64_t> category_ids;      // the COCO ids of those classes
};

// Reads an annotation file; image file names are taken relative to `image_root` (default: the
// JSON file's folder). Crowd annotations are kept, marked `crowd`. DataError naming the file and the entry
// for invalid JSON, missing fields, boxes without area, or references to unknown images or
// categories.
CocoSet read_coco(const std::string& json_path, const std::string& image_root = "");

// What clip_to_image changed: boxes cut at the image's border, and boxes dropped because no part
// of them lies inside the image (an annotation for another image, or in the wrong units).
struct ClipCounts {
  int64_t clipped = 0, dropped = 0;
};

// Clips `objects` to a width x height image (pixels) in place; the counts are for a warning.
ClipCounts clip_to_image(std::vector<CocoObject>& objects, double width, double height);

}  // namespace xformer::data
