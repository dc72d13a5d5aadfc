// The ResNet backbone's model.* keys, shared by the vision tasks (classification, detection).
#pragma once
#include "xformer/core/config.h"
#include "xformer/models/resnet.h"

namespace xformer::tasks {

// depth, width, stem_width, small_images; with_attention adds heads, kernel, stem,
// stem_kernel and stem_mixtures (the SASA layers).
void declare_backbone_keys(Schema& schema, bool with_attention);

// Those keys -> the backbone (SASA spatial layers when `attention`). ConfigError on a depth other
// than 26/38/50 or widths the heads do not divide.
models::ResNetOptions backbone_options(const json& model, bool attention, int64_t in_channels);

}  // namespace xformer::tasks
