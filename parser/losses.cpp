// Loss front-ends: check shapes, dtypes and devices (errors name the op and the shapes), run the
// CPU kernels (core/cpu/loss.h, float or double) or the CUDA kernels (cuda/loss.h, float), and
// record the backward Node. Each op keeps its normalisers (kept count, active count) as tensors
// on the op's device, so neither the forward nor the backward synchronises with the GPU.
#include "parser/losses.h"

#include <cmath>

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/cpu/loss.h"
#include "core/ops.h"
#ifdef DEEPERLAB_WITH_CUDA
#include "cuda/loss.h"
#endif

namespace dl {


namespace {

void check_like(const char* op, const Tensor& ref, const Tensor& t, const char* what) {
  DL_CHECK(t.defined(), op << ": " << what << " is undefined");
  DL_CHECK(t.device() == ref.device(),
           op << ": " << what << " " << t.desc() << " is not on the device of " << ref.desc());
  DL_CHECK(t.dtype() == ref.dtype(),
           op << ": " << what << " " << t.desc() << " must have the dtype of " << ref.desc());
}

// (sum, count) -> sum / count (0 when count == 0), a scalar on the input's device.
Tensor mean_of(const Tensor& sum_count) {
  Tensor out = Tensor::empty({}, sum_count.dtype(), sum_count.device());
  if (sum_count.is_cuda()) {
    DL_CUDA("loss", cuda::mean_of_sum_count(out.data<float>(), sum_count.data<float>(), DL_STREAM));
  } else {
    DL_CPU_FLOAT(out.dtype(), {
      const T* sc = sum_count.data<T>();
      *out.data<T>() = sc[1] > T(0) ? sc[0] / sc[1] : T(0);
    });
  }
  return out;
}

}  // namespace

// =============================================================================================
Tensor bootstrapped_cross_entropy(const Tensor& logits, const Tensor& labels, const Tensor& weights,
                                  double keep_fraction) {
  const char* op = "bootstrapped_cross_entropy";
  check_float(op, logits, "logits");
  DL_CHECK(logits.dim() == 4 && logits.size(1) >= 1 && logits.numel() > 0,
           op << ": logits must be (N, K, H, W) with K >= 1, got " << logits.desc());
  const int64_t n = logits.size(0), k = logits.size(1), h = logits.size(2), w = logits.size(3), hw = h * w;
  DL_CHECK(labels.defined() && labels.dtype() == DType::I32 && labels.shape() == Shape({n, h, w}) &&
               labels.device() == logits.device(),
           op << ": labels must be I32 (N, H, W) = [" << n << ", " << h << ", " << w
              << "] on the logits' device, got " << labels.desc());
  check_like(op, logits, weights, "weights");
  DL_CHECK(weights.shape() == Shape({n, h, w}),
           op << ": weights " << weights.desc() << " for logits " << logits.desc());
  DL_CHECK(std::isfinite(keep_fraction) && keep_fraction > 0 && keep_fraction <= 1,
           op << ": keep_fraction must be in (0, 1], got " << keep_fraction);
  DL_CHECK(k < (int64_t(1) << 31), op << ": too many classes " << k);
  const int64_t keep = std::min(hw, std::max<int64_t>(1, std::llround(keep_fraction * double(hw))));
  const double factor = 1.0 / (double(keep) * double(n));

  Tensor loss = Tensor::empty({n, h, w}, logits.dtype(), logits.device());
  Tensor mask = Tensor::empty({n, h, w}, DType::U8, logits.device());
  Tensor kept = Tensor::empty({n}, logits.dtype(), logits.device());
  Tensor out = Tensor::empty({}, logits.dtype(), logits.device());
  if (logits.is_cuda()) {
#ifdef DEEPERLAB_WITH_CUDA
    const int64_t bad = cuda::count_bad_labels(labels.data<int32_t>(), n * hw, int32_t(k), DL_STREAM);
    DL_CHECK(bad == 0, op << ": " << bad << " labels outside [0, " << k << ") and not -1 (ignore) in "
                          << labels.desc());
#endif
    DL_CUDA(op, cuda::softmax_ce_fwd(loss.data<float>(), logits.data<float>(), labels.data<int32_t>(),
                                     weights.data<float>(), n, k, hw, DL_STREAM));
    DL_CUDA(op, cuda::topk_mask(mask.data<uint8_t>(), kept.data<float>(), loss.data<float>(), n, hw, keep,
                                DL_STREAM));
    DL_CUDA(op, cuda::scaled_sum(out.data<float>(), kept.data<float>(), n, float(factor), DL_STREAM));
  } else {
    int64_t bi = 0;
    int32_t bv = 0;
    if (cpu::first_bad_label(labels.data<int32_t>(), n * hw, int32_t(k), bi, bv))
      DL_FAIL(op << ": label " << bv << " at (image " << bi / hw << ", y " << (bi % hw) / w << ", x "
                 << bi % w << ") is outside [0, " << k << ") and not -1 (ignore)");
    DL_CPU_FLOAT(logits.dtype(), {
      cpu::softmax_ce_fwd(loss.data<T>(), logits.data<T>(), labels.data<int32_t>(), weights.data<T>(), n, k,
                          hw);
      cpu::topk_mask(mask.data<uint8_t>(), kept.data<T>(), loss.data<T>(), n, hw, keep);
      double s = 0;
      for (int64_t i = 0; i < n; ++i) s += double(kept.data<T>()[i]);
      *out.data<T>() = T(s * factor);
    });
  }
  if (!any_requires_grad({logits})) return out;
  return record_fn(
      out, "BootstrappedCrossEntropyBackward", {logits},
      [x = logits.detach(), labels, weights = weights.detach(), mask, factor, n, k, hw](const Tensor& gy,
                                                                                        const LambdaNode&) {
        Tensor gx = Tensor::empty(x.shape(), x.dtype(), x.device());
        if (x.is_cuda())
          DL_CUDA("bootstrapped_cross_entropy_bwd",
                  cuda::softmax_ce_bwd(gx.data<float>(), gy.data<float>(), x.data<float>(),
                                       labels.data<int32_t>(), weights.data<float>(), mask.data<uint8_t>(),
                                       float(factor), n, k, hw, DL_STREAM));
        else
          DL_CPU_FLOAT(x.dtype(),
                       cpu::softmax_ce_bwd(gx.data<T>(), gy.data<T>(), x.data<T>(), labels.data<int32_t>(),
                                           weights.data<T>(), mask.data<uint8_t>(), T(factor), n, k, hw));
        return std::vector<Tensor>{gx};
      });
}

// =============================================================================================
Tensor sigmoid_cross_entropy(const Tensor& logits, const Tensor& targets, const Tensor& weight) {
  const char* op = "sigmoid_cross_entropy";
  check_float(op, logits, "logits");
  DL_CHECK(logits.dim() == 4, op << ": logits must be (N, P, H, W), got " << logits.desc());
  check_like(op, logits, targets, "targets");
  check_like(op, logits, weight, "weight");
  const int64_t n = logits.size(0), c = logits.size(1), hw = logits.size(2) * logits.size(3);
  DL_CHECK(targets.shape() == logits.shape(),
           op << ": targets " << targets.desc() << " for logits " << logits.desc());
  DL_CHECK(weight.dim() == 4 && weight.size(0) == n && (weight.size(1) == 1 || weight.size(1) == c) &&
               weight.size(2) == logits.size(2) && weight.size(3) == logits.size(3),
           op << ": weight must be (N, 1, H, W) or (N, P, H, W) for logits " << logits.desc() << ", got "
              << weight.desc());
  const int64_t wc = weight.size(1);
  Tensor sc = Tensor::empty({2}, logits.dtype(), logits.device());
  if (logits.is_cuda())
    DL_CUDA(op, cuda::sigmoid_ce_fwd(sc.data<float>(), logits.data<float>(), targets.data<float>(),
                                     weight.data<float>(), n, c, wc, hw, DL_STREAM));
  else
    DL_CPU_FLOAT(logits.dtype(), cpu::sigmoid_ce_fwd(sc.data<T>(), logits.data<T>(), targets.data<T>(),
                                                     weight.data<T>(), n, c, wc, hw));
  Tensor out = mean_of(sc);
  if (!any_requires_grad({logits})) return out;
  return record_fn(
      out, "SigmoidCrossEntropyBackward", {logits},
      [x = logits.detach(), t = targets.detach(), wt = weight.detach(), sc, n, c, wc, hw](const Tensor& gy,
                                                                                          const LambdaNode&) {
        Tensor gx = Tensor::empty(x.shape(), x.dtype(), x.device());
        if (x.is_cuda())
          DL_CUDA("sigmoid_cross_entropy_bwd",
                  cuda::sigmoid_ce_bwd(gx.data<float>(), gy.data<float>(), sc.data<float>(), x.data<float>(),
                                       t.data<float>(), wt.data<float>(), n, c, wc, hw, DL_STREAM));
        else
          DL_CPU_FLOAT(x.dtype(), cpu::sigmoid_ce_bwd(gx.data<T>(), gy.data<T>(), sc.data<T>(), x.data<T>(),
                                                      t.data<T>(), wt.data<T>(), n, c, wc, hw));
        return std::vector<Tensor>{gx};
      });
}

// =============================================================================================
Tensor offset_l1(const Tensor& pred, const Tensor& target, const Tensor& mask, double scale) {
  const char* op = "offset_l1";
  check_float(op, pred, "pred");
  DL_CHECK(pred.dim() == 4 && pred.size(1) % 2 == 0 && pred.size(1) > 0,
           op << ": pred must be (N, 2C, H, W) with (dy, dx) pairs, got " << pred.desc());
  check_like(op, pred, target, "target");
  check_like(op, pred, mask, "mask");
  DL_CHECK(target.shape() == pred.shape(), op << ": target " << target.desc() << " for pred " << pred.desc());
  const int64_t n = pred.size(0), c = pred.size(1) / 2, hw = pred.size(2) * pred.size(3);
  DL_CHECK(mask.dim() == 4 && mask.size(0) == n && (mask.size(1) == 1 || mask.size(1) == c) &&
               mask.size(2) == pred.size(2) && mask.size(3) == pred.size(3),
           op << ": mask must be (N, C, H, W) or (N, 1, H, W) for pred " << pred.desc() << " (C = " << c
              << " pairs), got " << mask.desc());
  DL_CHECK(std::isfinite(scale) && scale > 0, op << ": scale must be positive, got " << scale);
  const int64_t mc = mask.size(1);
  const double inv_scale = 1.0 / scale;
  Tensor sc = Tensor::empty({2}, pred.dtype(), pred.device());
  if (pred.is_cuda())
    DL_CUDA(op, cuda::offset_l1_fwd(sc.data<float>(), pred.data<float>(), target.data<float>(),
                                    mask.data<float>(), float(inv_scale), n, c, mc, hw, DL_STREAM));
  else
    DL_CPU_FLOAT(pred.dtype(), cpu::offset_l1_fwd(sc.data<T>(), pred.data<T>(), target.data<T>(),
                                                  mask.data<T>(), T(inv_scale), n, c, mc, hw));
  Tensor out = mean_of(sc);
  if (!any_requires_grad({pred})) return out;
  return record_fn(
      out, "OffsetL1Backward", {pred},
      [x = pred.detach(), t = target.detach(), m = mask.detach(), sc, inv_scale, n, c, mc, hw](
          const Tensor& gy, const LambdaNode&) {
        Tensor gx = Tensor::empty(x.shape(), x.dtype(), x.device());
        if (x.is_cuda())
          DL_CUDA("offset_l1_bwd", cuda::offset_l1_bwd(gx.data<float>(), gy.data<float>(), sc.data<float>(),
                                                       x.data<float>(), t.data<float>(), m.data<float>(),
                                                       float(inv_scale), n, c, mc, hw, DL_STREAM));
        else
          DL_CPU_FLOAT(x.dtype(), cpu::offset_l1_bwd(gx.data<T>(), gy.data<T>(), sc.data<T>(), x.data<T>(),
                                                     t.data<T>(), m.data<T>(), T(inv_scale), n, c, mc, hw));
        return std::vector<Tensor>{gx};
      });
}

// =============================================================================================
double LossConfig::keep_fraction_at(int64_t step) const {
  if (warmup_steps <= 0 || step >= warmup_steps) return keep_fraction;
  const double a = double(std::max<int64_t>(0, step)) / double(warmup_steps);
  return 1.0 + (keep_fraction - 1.0) * a;
}

namespace {
// A target tensor in the outputs' dtype (F32 targets become F64 for CPU gradient checks).
Tensor as_dtype_of(const Tensor& t, const Tensor& ref, const char* what) {
  DL_CHECK(t.defined(), "deeperlab_loss: target " << what << " is undefined");
  DL_CHECK(t.device() == ref.device(), "deeperlab_loss: target "
                                           << what << " " << t.desc() << " is not on the outputs' device ("
                                           << ref.desc() << "); move the targets with Targets::to(device)");
  return t.dtype() == ref.dtype() ? t : t.to(ref.dtype());
}

Tensor zero_scalar(const Tensor& ref) {
  return Tensor::zeros({}, ref.dtype(), ref.device());
}
}  // namespace

LossTerms deeperlab_loss(const HeadOutputs& out, const Targets& t, const LossConfig& cfg, int64_t step) {
  for (const Tensor* p :
       {&out.semantic, &out.heatmap, &out.short_offsets, &out.mid_offsets, &out.long_offsets})
    DL_CHECK(p->defined(), "deeperlab_loss: a head output is undefined");
  for (double wgt :
       {cfg.semantic_weight, cfg.heatmap_weight, cfg.short_weight, cfg.mid_weight, cfg.long_weight})
    DL_CHECK(std::isfinite(wgt) && wgt >= 0,
             "deeperlab_loss: loss weights must be finite and >= 0, got " << wgt);
  const Tensor& ref = out.semantic;
  LossTerms terms;
  auto term = [&](double wgt, auto fn) { return wgt > 0 ? fn() : zero_scalar(ref); };
  terms.semantic = term(cfg.semantic_weight, [&] {
    DL_CHECK(t.semantic.defined() && t.semantic.device() == ref.device(),
             "deeperlab_loss: semantic target " << t.semantic.desc() << " is not on the outputs' device ("
                                                << ref.desc()
                                                << "); move the targets with Targets::to(device)");
    return bootstrapped_cross_entropy(out.semantic, t.semantic,
                                      as_dtype_of(t.semantic_weight, ref, "semantic_weight"),
                                      cfg.keep_fraction_at(step));
  });
  terms.heatmap = term(cfg.heatmap_weight, [&] {
    return sigmoid_cross_entropy(out.heatmap, as_dtype_of(t.heatmap, ref, "heatmap"),
                                 as_dtype_of(t.heatmap_weight, ref, "heatmap_weight"));
  });
  terms.short_offsets = term(cfg.short_weight, [&] {
    return offset_l1(out.short_offsets, as_dtype_of(t.short_offsets, ref, "short_offsets"),
                     as_dtype_of(t.short_mask, ref, "short_mask"), cfg.radius);
  });
  terms.mid_offsets = term(cfg.mid_weight, [&] {
    return offset_l1(out.mid_offsets, as_dtype_of(t.mid_offsets, ref, "mid_offsets"),
                     as_dtype_of(t.mid_mask, ref, "mid_mask"), cfg.radius);
  });
  terms.long_offsets = term(cfg.long_weight, [&] {
    return offset_l1(out.long_offsets, as_dtype_of(t.long_offsets, ref, "long_offsets"),
                     as_dtype_of(t.long_weight, ref, "long_weight"), 1.0);
  });
  Tensor total = scale(terms.semantic, cfg.semantic_weight);
  total = add(total, scale(terms.heatmap, cfg.heatmap_weight));
  total = add(total, scale(terms.short_offsets, cfg.short_weight));
  total = add(total, scale(terms.mid_offsets, cfg.mid_weight));
  total = add(total, scale(terms.long_offsets, cfg.long_weight));
  terms.total = total;
  return terms;
}

bool all_finite(const LossTerms& terms) {
  for (const Tensor* p : {&terms.semantic, &terms.heatmap, &terms.short_offsets, &terms.mid_offsets,
                          &terms.long_offsets, &terms.total})
    if (p->defined() && !std::isfinite(p->item())) return false;
  return true;
}

}  // namespace dl
