// Task `detection`: RetinaNet on a ResNet with convolution or SASA layers, trained on COCO-format
// annotations; eval reports COCO-style mAP@[.5:.95], AP50, AP75 and per-size AP and writes the
// detections (COCO results JSON); sample draws the boxes on pictures.
#pragma once
#include "xformer/core/registry.h"

namespace xformer::tasks {

void register_detection(Registry& registry);

}  // namespace xformer::tasks
