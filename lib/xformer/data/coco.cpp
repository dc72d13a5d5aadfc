#include "xformer/data/coco.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>

#include "xformer/core/error.h"
#include "xformer/core/json_file.h"

namespace fs = std::filesystem;

namespace xformer::data {

CocoSet read_coco(const std::string& json_path, const std::string& image_root) {
  const auto j = read_json_file(json_path, "COCO annotations " + json_path, kExitFailure);
  const std::string root = image_root.empty() ? fs::path(json_path).parent_path().string() : image_root;
  auto fail = [&](const std::string& what) -> void { throw DataError("COCO annotations " + json_path + ": " + what); };
  for (const char* key : {"images", "annotations", "categories"})
    if (!j.contains(key) || !j[key].is_array()) fail(std::string("no '") + key + "' list");
  // Ids are whole numbers (1.5 or 2^70 would otherwise be cut or wrapped silently).
  auto id_of = [&](const nlohmann::json& record, const char* key, const std::string& where) {
    const auto& v = record.at(key);
    if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX))
      fail(where + ": '" + key + "' must be an integer, got " + v.dump());
    return v.get<int64_t>();
  };
  CocoSet set;
  std::map<int64_t, size_t> image_index, category_index;
  std::string record = "a record";  // the one being read, for a missing or mistyped field
  try {
    std::vector<std::pair<int64_t, std::string>> categories;
    for (size_t i = 0; i < j["categories"].size(); ++i) {
      const auto& c = j["categories"][i];
      record = "category " + std::to_string(i + 1) + " of the list";
      categories.emplace_back(id_of(c, "id", record), c.at("name").get<std::string>());
    }
    std::sort(categories.begin(), categories.end());
    for (const auto& [id, name] : categories) {
      if (category_index.count(id)) fail("category id " + std::to_string(id) + " appears twice");
      category_index[id] = set.classes.size();
      set.classes.push_back(name), set.category_ids.push_back(id);
    }
    for (size_t i = 0; i < j["images"].size(); ++i) {
      const auto& im = j["images"][i];
      record = "image " + std::to_string(i + 1) + " of the list";
      CocoImage image;
      image.id = id_of(im, "id", record);
      image.path = (fs::path(root) / im.at("file_name").get<std::string>()).string();
      if (image_index.count(image.id)) fail("image id " + std::to_string(image.id) + " appears twice");
      image_index[image.id] = set.images.size();
      set.images.push_back(std::move(image));
    }
    for (const auto& a : j["annotations"]) {
      record = "annotation " + (a.contains("id") ? a["id"].dump() : std::string("without id"));
      const std::string& where = record;
      const auto image = id_of(a, "image_id", where), category = id_of(a, "category_id", where);
      const auto& box = a.at("bbox");
      if (!image_index.count(image)) fail(where + " refers to unknown image " + std::to_string(image));
      if (!category_index.count(category)) fail(where + " refers to unknown category " + std::to_string(category));
      if (!box.is_array() || box.size() != 4) fail(where + ": bbox must be [x, y, width, height]");
      const double x = box[0], y = box[1], w = box[2], h = box[3];
      if (!(w > 0 && h > 0)) fail(where + ": bbox without area");
      set.images[image_index[image]].objects.push_back(
          {x, y, x + w, y + h, static_cast<int64_t>(category_index[category]), a.value("iscrowd", 0) != 0});
    }
  } catch (const nlohmann::json::exception& e) {
    // "[json.exception.type_error.302] type must be number, but is string": the part after the tag.
    const std::string what = e.what();
    const auto tag_end = what.find("] ");
    fail(record + ": missing or mistyped field (" + (tag_end == std::string::npos ? what : what.substr(tag_end + 2)) + ")");
  }
  if (set.classes.empty()) fail("no categories");
  return set;
}

ClipCounts clip_to_image(std::vector<CocoObject>& objects, double width, double height) {
  ClipCounts counts;
  std::vector<CocoObject> kept;
  for (auto o : objects) {
    const CocoObject c{std::clamp(o.x1, 0.0, width), std::clamp(o.y1, 0.0, height), std::clamp(o.x2, 0.0, width),
                       std::clamp(o.y2, 0.0, height), o.label, o.crowd};
    if (!(c.x2 > c.x1 && c.y2 > c.y1)) {
      ++counts.dropped;
      continue;
    }
    if (c.x1 != o.x1 || c.y1 != o.y1 || c.x2 != o.x2 || c.y2 != o.y2) ++counts.clipped;
    kept.push_back(c);
  }
  objects = std::move(kept);
  return counts;
}

}  // namespace xformer::data
