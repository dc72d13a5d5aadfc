#include "xformer/tasks/backbone.h"

#include <stdexcept>

#include "xformer/core/error.h"

namespace xformer::tasks {

void declare_backbone_keys(Schema& s, bool with_attention) {
  s.add("model.depth", KeyType::Int, 26, "Bottleneck ResNet depth: 26, 38 or 50.");
  s.add("model.width", KeyType::Int, 64, "Bottleneck width of the first stage (doubling per stage; outputs 4x).")
      .at_least(1);
  s.add("model.stem_width", KeyType::Int, 64, "Channels out of the stem.").at_least(1);
  s.add("model.small_images", KeyType::Bool, false,
        "Keep the resolution in the stem (3x3 layer, no pooling): for 28-32 pixel images.");
  if (!with_attention) return;
  s.add("model.heads", KeyType::Int, 8, "SASA: attention heads of every attention layer.").at_least(1);
  s.add("model.kernel", KeyType::Int, 7, "SASA: neighbourhood side k of the spatial attention layers.")
      .at_least(1);
  s.add("model.stem", KeyType::String, "attention", "SASA: the stem, spatially aware attention or a convolution.",
        {"attention", "conv"});
  s.add("model.stem_kernel", KeyType::Int, 4, "SASA: neighbourhood side of the attention stem.").at_least(1);
  s.add("model.stem_mixtures", KeyType::Int, 4, "SASA: value mixtures (spatially aware values) of the attention stem.")
      .at_least(1);
}

models::ResNetOptions backbone_options(const json& m, bool attention, int64_t in_channels) {
  models::ResNetOptions o;
  try {
    o.blocks = models::resnet_blocks(m.at("depth"));
  } catch (const std::invalid_argument& e) {
    throw ConfigError(std::string("config error: model.depth: ") + e.what());
  }
  o.width = m.at("width"), o.stem_width = m.at("stem_width"), o.small_images = m.at("small_images");
  o.in_channels = in_channels;
  if (o.width < 1 || o.stem_width < 1) throw ConfigError("config error: model.width and model.stem_width must be >= 1");
  if (!attention) return o;
  o.spatial = "attention", o.stem = m.at("stem");
  o.heads = m.at("heads"), o.kernel = m.at("kernel");
  o.stem_kernel = m.at("stem_kernel"), o.stem_mixtures = m.at("stem_mixtures");
  if (o.kernel < 1 || o.stem_kernel < 1 || o.stem_mixtures < 1)
    throw ConfigError("config error: model.kernel, model.stem_kernel and model.stem_mixtures must be >= 1");
  for (int64_t w : {o.width, o.stem_width})
    if (o.heads < 1 || w % o.heads != 0 || w / o.heads < 2)
      throw ConfigError("config error: model.width and model.stem_width (" + std::to_string(w) +
                        ") must be multiples of model.heads (" + std::to_string(o.heads) +
                        ") with at least 2 channels per head");
  return o;
}

}  // namespace xformer::tasks
