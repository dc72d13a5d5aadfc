// Image tasks with the Image Transformer (Parmar et al. 2018):
//  * super_resolution: a low-resolution image in (area-downsampled by task.scale), its
//    high-resolution version generated intensity by intensity; eval reports bits/dim and, for a
//    few sampled crops, PSNR and SSIM next to bicubic upsampling;
//  * image_generation: unconditional; eval reports bits/dim.
// Data: every image file under the split's folder (unreadable ones are reported and skipped),
// kept in memory; training draws random task.size x task.size crops, evaluation fixed ones.
#pragma once
#include "xformer/core/registry.h"

namespace xformer::tasks {

void register_image_tasks(Registry& registry);

}  // namespace xformer::tasks
