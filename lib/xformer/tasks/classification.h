// Task `classification`: ResNets with convolution or stand-alone self-attention layers on
// labelled images (IDX, CIFAR-10 binary, class folders); eval reports top-1/top-5 accuracy and
// writes a confusion matrix; sample classifies images.
#pragma once
#include "xformer/core/registry.h"

namespace xformer::tasks {

void register_classification(Registry& registry);

}  // namespace xformer::tasks
