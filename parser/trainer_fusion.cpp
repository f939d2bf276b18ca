// fuse_panoptic_outputs: parser/instance.h behind plain parameters (see trainer_glue.h for why).
#include "parser/instance.h"
#include "parser/trainer_glue.h"

namespace dl {

PanopticMap fuse_panoptic_outputs(const HeadOutputs& out, const ClassMap& classes, const FusionParams& p) {
  InferenceConfig c;
  c.radius = p.radius;
  c.refine_steps = static_cast<int>(p.refine_iterations);
  c.short_weight = p.short_weight;
  c.long_weight = p.long_weight;
  c.keypoint_threshold = p.keypoint_threshold;
  c.nms_radius = p.nms_radius;
  c.box_nms_iou = p.box_nms_iou;
  c.min_area = p.min_area;
  return predict_panoptic(out, classes, c);
}

}  // namespace dl
