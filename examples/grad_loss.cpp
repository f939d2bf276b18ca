// grad_loss: targets + DeeperLab losses for `deeperlab grad` (see grad_loss.h for why it is apart).
#include "examples/grad_loss.h"

#include "parser/losses.h"
#include "parser/targets.h"

namespace dl::cli {

GradLoss grad_loss(const HeadOutputs& out, const PanopticMap& gt, const std::vector<Category>& categories,
                   const GradLossParams& p, int64_t step, const std::string& source) {
  ClassMap classes(categories);
  DL_CHECK(out.semantic.defined() && out.semantic.size(1) == classes.num_classes(),
           "grad: the model predicts " << (out.semantic.defined() ? out.semantic.size(1) : 0)
                                       << " semantic classes but the dataset has " << classes.num_classes()
                                       << " categories (set model.num_classes in the config)");
  TargetConfig tc;
  tc.radius = p.radius;
  tc.small_area = p.small_area;
  tc.small_weight = p.small_weight;
  Targets t = build_targets_on(gt, classes, tc, out.semantic.device(), source);
  LossConfig lc;
  lc.semantic_weight = p.semantic_weight;
  lc.heatmap_weight = p.heatmap_weight;
  lc.short_weight = p.short_weight;
  lc.mid_weight = p.mid_weight;
  lc.long_weight = p.long_weight;
  lc.keep_fraction = p.keep_fraction;
  lc.warmup_steps = p.warmup_steps;
  lc.radius = p.radius;
  LossTerms l = deeperlab_loss(out, t, lc, step);
  GradLoss g;
  g.total = l.total;
  g.terms = {{"loss.semantic", l.semantic.detach()},           {"loss.heatmap", l.heatmap.detach()},
             {"loss.short_offsets", l.short_offsets.detach()}, {"loss.mid_offsets", l.mid_offsets.detach()},
             {"loss.long_offsets", l.long_offsets.detach()},   {"loss.total", l.total.detach()}};
  g.num_instances = int64_t(t.instances[0].size());
  g.finite = all_finite(l);
  return g;
}

}  // namespace dl::cli
