// compute_loss: parser/losses.h behind plain parameters (see trainer_glue.h for why).
#include "parser/losses.h"
#include "parser/trainer_glue.h"

namespace dl {

LossValues compute_loss(const HeadOutputs& out, const Targets& t, const LossParams& p, int64_t step) {
  LossConfig c;
  c.semantic_weight = p.semantic_weight;
  c.heatmap_weight = p.heatmap_weight;
  c.short_weight = p.short_weight;
  c.mid_weight = p.mid_weight;
  c.long_weight = p.long_weight;
  c.keep_fraction = p.keep_fraction;
  c.warmup_steps = p.warmup_steps;
  c.radius = p.radius;
  LossTerms l = deeperlab_loss(out, t, c, step);
  LossValues v;
  v.total = l.total;
  v.terms["loss"] = l.total.item();
  v.terms["semantic"] = l.semantic.item();
  v.terms["heatmap"] = l.heatmap.item();
  v.terms["short_offsets"] = l.short_offsets.item();
  v.terms["mid_offsets"] = l.mid_offsets.item();
  v.terms["long_offsets"] = l.long_offsets.item();
  return v;
}

}  // namespace dl
