// The losses: values against a full-sort reference (hard mining, ties included) and against
// PyTorch (run through /usr/bin/python3 on a small random case), finite-difference gradients in
// float64, the weighted total on real targets, annealing of the kept fraction, and bad inputs.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <sstream>

#include "parser/losses.h"
#include "tests/testing.h"

using namespace dl;
using dl::testing::gradcheck;

namespace {

Tensor random_labels(int64_t n, int64_t h, int64_t w, int32_t k, Rng& rng, double ignore_p) {
  std::vector<int32_t> v(n * h * w);
  for (auto& x : v) x = rng.bernoulli(ignore_p) ? -1 : int32_t(rng.randint(0, k));
  return Tensor::from_vector(v, {n, h, w});
}

Tensor random_weights(const Shape& s, Rng& rng, double zero_p, DType dt = DType::F64) {
  std::vector<double> v(shape_numel(s));
  for (auto& x : v) x = rng.bernoulli(zero_p) ? 0.0 : (rng.bernoulli(0.3) ? 3.0 : 1.0);
  return Tensor::from_vector(v, s).to(dt);
}

Tensor random_mask01(const Shape& s, Rng& rng, double p_on) {
  std::vector<double> v(shape_numel(s));
  for (auto& x : v) x = rng.bernoulli(p_on) ? 1.0 : 0.0;
  return Tensor::from_vector(v, s);
}

// Per-pixel weighted CE in double, straight from the definition.
std::vector<double> pixel_losses(const Tensor& logits, const Tensor& labels, const Tensor& weights) {
  const int64_t n = logits.size(0), k = logits.size(1), hw = logits.size(2) * logits.size(3);
  auto x = logits.to(DType::F64).to_vector<double>();
  auto l = labels.to_vector<int32_t>();
  auto w = weights.to(DType::F64).to_vector<double>();
  std::vector<double> out(n * hw, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t p = 0; p < hw; ++p) {
      const int32_t lab = l[i * hw + p];
      if (lab < 0 || w[i * hw + p] == 0) continue;
      double mx = -1e300, se = 0;
      for (int64_t c = 0; c < k; ++c) mx = std::max(mx, x[(i * k + c) * hw + p]);
      for (int64_t c = 0; c < k; ++c) se += std::exp(x[(i * k + c) * hw + p] - mx);
      out[i * hw + p] = w[i * hw + p] * (mx + std::log(se) - x[(i * k + lab) * hw + p]);
    }
  return out;
}

// Full-sort reference of the hard-mined loss.
double full_sort_reference(const std::vector<double>& losses, int64_t n, int64_t hw, double keep_fraction) {
  const int64_t keep = std::min(hw, std::max<int64_t>(1, std::llround(keep_fraction * double(hw))));
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> v(losses.begin() + i * hw, losses.begin() + (i + 1) * hw);
    std::sort(v.begin(), v.end(), std::greater<double>());
    total += std::accumulate(v.begin(), v.begin() + keep, 0.0) / double(keep);
  }
  return total / double(n);
}

void write_f64(const std::string& path, const Tensor& t) {
  auto v = t.to(DType::F64).to_vector<double>();
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(double)));
}

std::vector<double> read_f64(const std::string& path, size_t n) {
  std::vector<double> v(n);
  std::ifstream f(path, std::ios::binary);
  f.read(reinterpret_cast<char*>(v.data()), std::streamsize(n * sizeof(double)));
  REQUIRE(f.gcount() == std::streamsize(n * sizeof(double)));
  return v;
}

bool have_torch() {
  return std::system("/usr/bin/python3 -c 'import torch, numpy' > /dev/null 2>&1") == 0;
}

}  // namespace

TEST_CASE("bootstrapped CE equals a full-sort reference, keep 0.15/0.5/1.0, N=2 K=5 9x11", "[losses]") {
  Rng rng(3);
  Tensor x = Tensor::randn({2, 5, 9, 11}, rng, 2.0, DType::F64);
  Tensor lab = random_labels(2, 9, 11, 5, rng, 0.1);
  Tensor w = random_weights({2, 9, 11}, rng, 0.1);
  auto pl = pixel_losses(x, lab, w);
  for (double kf : {0.15, 0.5, 1.0, 1e-6}) {
    INFO("keep_fraction " << kf);
    const double want = full_sort_reference(pl, 2, 99, kf);
    REQUIRE(bootstrapped_cross_entropy(x, lab, w, kf).item() == Approx(want).epsilon(1e-12));
    REQUIRE(bootstrapped_cross_entropy(x.to(DType::F32), lab, w.to(DType::F32), kf).item() ==
            Approx(want).epsilon(1e-5));
  }
}

TEST_CASE("bootstrapped CE with ties at the K-th value keeps exactly K pixels, 1x3x6x7", "[losses]") {
  // Every pixel has logits 0 and label 0: all losses equal log(3) (weight 1) or 3 log(3) (weight 3).
  const int64_t h = 6, w = 7, hw = h * w;
  Tensor x = Tensor::zeros({1, 3, h, w}, DType::F64);
  x.set_requires_grad(true);
  Tensor lab = Tensor::from_vector(std::vector<int32_t>(hw, 0), {1, h, w});
  std::vector<double> wv(hw, 1.0);
  for (int i = 0; i < 5; ++i) wv[i * 7 + 3] = 3.0;  // 5 heavier pixels
  Tensor wt = Tensor::from_vector(wv, {1, h, w});
  for (double kf : {0.1, 0.25, 0.5}) {
    const int64_t keep = std::llround(kf * hw);
    INFO("keep_fraction " << kf << " keep " << keep);
    x.zero_grad();
    Tensor loss = bootstrapped_cross_entropy(x, lab, wt, kf);
    const double want = full_sort_reference(pixel_losses(x, lab, wt), 1, hw, kf);
    REQUIRE(loss.item() == Approx(want).epsilon(1e-12));
    loss.backward();
    auto g = x.grad().to_vector<double>();
    int64_t nonzero = 0;
    for (int64_t p = 0; p < hw; ++p) nonzero += g[p] != 0.0;  // channel 0 = the label's channel
    REQUIRE(nonzero == keep);
    // The heavy pixels come first; ties among them go to the lower pixel index.
    for (int i = 0; i < 5; ++i) REQUIRE((g[i * 7 + 3] != 0.0) == (i < keep));
  }
}

TEST_CASE("loss gradients vs finite differences (float64)", "[losses][grad]") {
  Rng rng(5);
  SECTION("bootstrapped CE keep 0.3 and 1.0, N=2 K=4 5x6, ignored pixels") {
    Tensor lab = random_labels(2, 5, 6, 4, rng, 0.15);
    Tensor w = random_weights({2, 5, 6}, rng, 0.1);
    for (double kf : {0.3, 1.0}) {
      Tensor x = dl::testing::param({2, 4, 5, 6}, rng, 1.5);
      gradcheck([&](const std::vector<Tensor>& v) { return bootstrapped_cross_entropy(v[0], lab, w, kf); },
                {x});
    }
  }
  SECTION("sigmoid CE, weight N,1,H,W and N,P,H,W, 2x5x4x7") {
    Tensor t = Tensor::uniform({2, 5, 4, 7}, rng, 0.0, 1.0, DType::F64);
    for (int64_t wc : {1, 5}) {
      Tensor wt = random_weights({2, wc, 4, 7}, rng, 0.3);
      Tensor x = dl::testing::param({2, 5, 4, 7}, rng, 3.0);
      gradcheck([&](const std::vector<Tensor>& v) { return sigmoid_cross_entropy(v[0], t, wt); }, {x});
    }
  }
  SECTION("offset L1, mask N,C,H,W (0/1, scale 25) and N,1,H,W (1/sqrt(area), scale 1), 2x(2x3)x5x4") {
    Tensor tg = Tensor::randn({2, 6, 5, 4}, rng, 5.0, DType::F64);
    Tensor m1 = random_mask01({2, 3, 5, 4}, rng, 0.6);
    Tensor m2 = Tensor::uniform({2, 1, 5, 4}, rng, 0.0, 0.3, DType::F64);
    Tensor x = dl::testing::param({2, 6, 5, 4}, rng, 5.0);
    gradcheck([&](const std::vector<Tensor>& v) { return offset_l1(v[0], tg, m1, 25.0); }, {x});
    gradcheck([&](const std::vector<Tensor>& v) { return offset_l1(v[0], tg, m2, 1.0); }, {x});
  }
}

TEST_CASE("losses vs PyTorch on a random case N=2 K=6 P=5 7x9", "[losses][torch]") {
  if (!have_torch()) {
    WARN("skipped: /usr/bin/python3 with torch not available");
    return;
  }
  Rng rng(11);
  const int64_t n = 2, k = 6, p = 5, c = 3, h = 7, w = 9, hw = h * w;
  Tensor x = Tensor::randn({n, k, h, w}, rng, 2.0, DType::F64);
  Tensor lab = random_labels(n, h, w, int32_t(k), rng, 0.1);
  Tensor sw = random_weights({n, h, w}, rng, 0.1);
  Tensor hx = Tensor::randn({n, p, h, w}, rng, 2.0, DType::F64);
  Tensor ht = random_mask01({n, p, h, w}, rng, 0.3);
  Tensor hwt = random_mask01({n, 1, h, w}, rng, 0.8);
  Tensor ox = Tensor::randn({n, 2 * c, h, w}, rng, 4.0, DType::F64);
  Tensor ot = Tensor::randn({n, 2 * c, h, w}, rng, 4.0, DType::F64);
  Tensor om = random_mask01({n, c, h, w}, rng, 0.5);
  const double kf = 0.15;

  const std::string dir = "/tmp/deeperlab_test_losses_" + std::to_string(::getpid());
  REQUIRE(std::system(("mkdir -p " + dir).c_str()) == 0);
  write_f64(dir + "/x.bin", x);
  write_f64(dir + "/lab.bin", lab.to(DType::F64));
  write_f64(dir + "/sw.bin", sw);
  write_f64(dir + "/hx.bin", hx);
  write_f64(dir + "/ht.bin", ht);
  write_f64(dir + "/hw.bin", hwt);
  write_f64(dir + "/ox.bin", ox);
  write_f64(dir + "/ot.bin", ot);
  write_f64(dir + "/om.bin", om);
  std::ostringstream py;
  py << "import numpy as np, torch, torch.nn.functional as F\n"
     << "d='" << dir << "'; n,k,p,c,h,w=" << n << "," << k << "," << p << "," << c << "," << h << "," << w
     << "\n"
     << "L=lambda f,s: torch.tensor(np.fromfile(d+'/'+f, np.float64).reshape(s))\n"
     << "x=L('x.bin',(n,k,h,w)).requires_grad_(); lab=L('lab.bin',(n,h,w)).long(); sw=L('sw.bin',(n,h,w))\n"
     << "hx=L('hx.bin',(n,p,h,w)).requires_grad_(); ht=L('ht.bin',(n,p,h,w)); hw_=L('hw.bin',(n,1,h,w))\n"
     << "ox=L('ox.bin',(n,2*c,h,w)).requires_grad_(); ot=L('ot.bin',(n,2*c,h,w)); om=L('om.bin',(n,c,h,w))\n"
     // semantic: per-pixel CE (ignore -1) x weight, top-K per image, mean over images
     << "ce=F.cross_entropy(x, lab.clamp(min=0), reduction='none')*sw*(lab>=0)\n"
     << "K=max(1, round(" << kf << "*h*w)); K=min(K,h*w)\n"
     << "sem=(ce.reshape(n,-1).topk(K,dim=1).values.sum(1)/K).mean()\n"
     // heatmap: BCE with logits averaged over weighted-active elements
     << "we=hw_.expand(n,p,h,w); act=we>0\n"
     << "heat=(F.binary_cross_entropy_with_logits(hx, ht, reduction='none')*we)[act].sum()/act.sum()\n"
     // offsets: L1 on pairs, mask per pair, / 25, averaged over active (pair, pixel)
     << "d_=(ox-ot).abs().reshape(n,c,2,h,w).sum(2)*om/25.0\n"
     << "off=d_[om>0].sum()/(om>0).sum()\n"
     << "(sem+heat+off).backward()\n"
     << "np.array([sem.item(), heat.item(), off.item()]).tofile(d+'/vals.bin')\n"
     << "x.grad.numpy().tofile(d+'/gx.bin'); hx.grad.numpy().tofile(d+'/ghx.bin'); "
        "ox.grad.numpy().tofile(d+'/gox.bin')\n";
  {
    std::ofstream f(dir + "/ref.py");
    f << py.str();
  }
  REQUIRE(std::system(("/usr/bin/python3 " + dir + "/ref.py").c_str()) == 0);
  auto vals = read_f64(dir + "/vals.bin", 3);

  x.set_requires_grad(true);
  hx.set_requires_grad(true);
  ox.set_requires_grad(true);
  Tensor sem = bootstrapped_cross_entropy(x, lab, sw, kf);
  Tensor heat = sigmoid_cross_entropy(hx, ht, hwt);
  Tensor off = offset_l1(ox, ot, om, 25.0);
  CHECK(sem.item() == Approx(vals[0]).epsilon(1e-10));
  CHECK(heat.item() == Approx(vals[1]).epsilon(1e-10));
  CHECK(off.item() == Approx(vals[2]).epsilon(1e-10));
  add(add(sem, heat), off).backward();
  DL_REQUIRE_CLOSE(x.grad(), Tensor::from_vector(read_f64(dir + "/gx.bin", n * k * hw), {n, k, h, w}), 1e-9);
  DL_REQUIRE_CLOSE(hx.grad(), Tensor::from_vector(read_f64(dir + "/ghx.bin", n * p * hw), {n, p, h, w}),
                   1e-9);
  DL_REQUIRE_CLOSE(ox.grad(),
                   Tensor::from_vector(read_f64(dir + "/gox.bin", n * 2 * c * hw), {n, 2 * c, h, w}), 1e-9);
  std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("sigmoid CE is stable for large logits and 0 when nothing is active", "[losses]") {
  Tensor x = Tensor::from_vector(std::vector<double>{1000.0, -1000.0, 30.0, -30.0}, {1, 4, 1, 1});
  Tensor t = Tensor::from_vector(std::vector<double>{1.0, 0.0, 0.0, 1.0}, {1, 4, 1, 1});
  Tensor wt = Tensor::ones({1, 1, 1, 1}, DType::F64);
  const double v = sigmoid_cross_entropy(x, t, wt).item();
  REQUIRE(std::isfinite(v));
  REQUIRE(v == Approx((0.0 + 0.0 + 30.0 + 30.0) / 4).epsilon(1e-9));
  REQUIRE(sigmoid_cross_entropy(x, t, Tensor::zeros({1, 1, 1, 1}, DType::F64)).item() == 0.0);
  REQUIRE(offset_l1(Tensor::ones({1, 2, 2, 2}, DType::F64), Tensor::zeros({1, 2, 2, 2}, DType::F64),
                    Tensor::zeros({1, 1, 2, 2}, DType::F64), 25.0)
              .item() == 0.0);
}

TEST_CASE("offset L1 normalisation: one active pair of three at one pixel", "[losses]") {
  // pred - target = (3, -4) for pair 1 at pixel 0; mask 2 there. Loss = (3 + 4) * 2 / 10 / 1.
  Tensor pred = Tensor::zeros({1, 6, 1, 2}, DType::F64);
  pred.data<double>()[2 * 2 + 0] = 3.0;   // channel 2 (dy of pair 1), pixel 0
  pred.data<double>()[3 * 2 + 0] = -4.0;  // channel 3 (dx of pair 1), pixel 0
  Tensor target = Tensor::zeros({1, 6, 1, 2}, DType::F64);
  Tensor mask = Tensor::zeros({1, 3, 1, 2}, DType::F64);
  mask.data<double>()[1 * 2 + 0] = 2.0;
  REQUIRE(offset_l1(pred, target, mask, 10.0).item() == Approx(1.4));
  // A broadcast mask (N, 1, H, W) activates all three pairs: 7 * 2 / 10 / 3.
  Tensor mask1 = Tensor::zeros({1, 1, 1, 2}, DType::F64);
  mask1.data<double>()[0] = 2.0;
  REQUIRE(offset_l1(pred, target, mask1, 10.0).item() == Approx(1.4 / 3));
}

TEST_CASE("keep fraction anneals linearly from 1 over warmup_steps", "[losses]") {
  LossConfig cfg;
  REQUIRE(cfg.keep_fraction_at(0) == 0.15);
  cfg.warmup_steps = 100;
  REQUIRE(cfg.keep_fraction_at(0) == 1.0);
  REQUIRE(cfg.keep_fraction_at(50) == Approx(0.575));
  REQUIRE(cfg.keep_fraction_at(100) == 0.15);
  REQUIRE(cfg.keep_fraction_at(1000) == 0.15);
}

TEST_CASE("deeperlab_loss on the targets of a scene: perfect offsets give 0, weights scale the total",
          "[losses]") {
  PanopticMap m;
  m.height = 17;
  m.width = 19;
  m.ids.assign(17 * 19, 1);
  for (int64_t y = 3; y < 9; ++y)
    for (int64_t x = 4; x < 12; ++x) m.ids[y * 19 + x] = 5;
  for (int64_t y = 10; y < 15; ++y)
    for (int64_t x = 10; x < 17; ++x) m.ids[y * 19 + x] = 6;
  m.segments = {{1, 1, false, 0, {}}, {5, 2, false, 0, {}}, {6, 2, false, 0, {}}};
  ClassMap cm({{1, "road", false, {}}, {2, "car", true, {}}});
  TargetConfig tc;
  tc.radius = 4;
  Targets t = build_targets(m, cm, tc);
  Rng rng(9);
  HeadOutputs out;
  out.semantic = dl::testing::param({1, 2, 17, 19}, rng);
  out.heatmap = dl::testing::param({1, 5, 17, 19}, rng);
  out.short_offsets = t.short_offsets.to(DType::F64).clone().set_requires_grad(true);
  out.mid_offsets = t.mid_offsets.to(DType::F64).clone().set_requires_grad(true);
  out.long_offsets = t.long_offsets.to(DType::F64).clone().set_requires_grad(true);
  LossConfig cfg;
  cfg.radius = 4;
  cfg.heatmap_weight = 2.0;
  LossTerms l = deeperlab_loss(out, t, cfg, 0);
  REQUIRE(all_finite(l));
  REQUIRE(l.short_offsets.item() == 0.0);
  REQUIRE(l.mid_offsets.item() == 0.0);
  REQUIRE(l.long_offsets.item() == 0.0);
  REQUIRE(l.semantic.item() > 0);
  REQUIRE(l.total.item() == Approx(l.semantic.item() + 2.0 * l.heatmap.item()));
  l.total.backward();
  REQUIRE(out.semantic.grad().defined());
  REQUIRE(out.heatmap.grad().defined());
  // The same with F32 outputs; a term with weight 0 is not computed.
  HeadOutputs out32{out.semantic.detach().to(DType::F32), out.heatmap.detach().to(DType::F32),
                    out.long_offsets.detach().to(DType::F32), out.short_offsets.detach().to(DType::F32),
                    out.mid_offsets.detach().to(DType::F32)};
  cfg.long_weight = 0;
  LossTerms l32 = deeperlab_loss(out32, t, cfg, 0);
  REQUIRE(l32.semantic.item() == Approx(l.semantic.item()).epsilon(1e-5));
  REQUIRE(l32.heatmap.item() == Approx(l.heatmap.item()).epsilon(1e-5));
  REQUIRE(l32.long_offsets.item() == 0.0);
  // Perturbed long offsets: one pixel of one instance off by (1, 1) in keypoint 0.
  Tensor lo = t.long_offsets.clone();
  const int64_t p = 5 * 19 + 6;  // inside the first car
  lo.data<float>()[p] += 1.0f;
  lo.data<float>()[17 * 19 + p] += 1.0f;
  HeadOutputs out3 = out32;
  out3.long_offsets = lo;
  cfg.long_weight = 1;
  int64_t active = 0;
  for (float v : t.long_weight.to_vector<float>()) active += v > 0;
  REQUIRE(deeperlab_loss(out3, t, cfg, 0).long_offsets.item() ==
          Approx(2.0 / std::sqrt(48.0) / double(5 * active)).epsilon(1e-5));
  // A NaN in the predictions is reported.
  out32.heatmap.data<float>()[3] = std::nanf("");
  REQUIRE(!all_finite(deeperlab_loss(out32, t, cfg, 0)));
}

TEST_CASE("loss bad inputs raise errors naming the op and the shapes", "[losses][errors]") {
  Rng rng(1);
  Tensor x = Tensor::randn({1, 3, 4, 5}, rng, 1.0, DType::F64);
  Tensor lab = random_labels(1, 4, 5, 3, rng, 0.0);
  Tensor w = Tensor::ones({1, 4, 5}, DType::F64);
  REQUIRE_THROWS_WITH(bootstrapped_cross_entropy(x, random_labels(1, 4, 6, 3, rng, 0), w, 0.5),
                      Catch::Contains("bootstrapped_cross_entropy: labels must be I32"));
  REQUIRE_THROWS_WITH(bootstrapped_cross_entropy(x, lab, Tensor::ones({1, 4, 5}), 0.5),
                      Catch::Contains("must have the dtype"));
  REQUIRE_THROWS_WITH(bootstrapped_cross_entropy(x, lab, w, 0.0), Catch::Contains("keep_fraction"));
  REQUIRE_THROWS_WITH(bootstrapped_cross_entropy(x, lab, w, 1.5), Catch::Contains("keep_fraction"));
  std::vector<int32_t> bad(20, 0);
  bad[13] = 3;
  REQUIRE_THROWS_WITH(bootstrapped_cross_entropy(x, Tensor::from_vector(bad, {1, 4, 5}), w, 0.5),
                      Catch::Contains("label 3 at (image 0, y 2, x 3)"));
  Tensor hx = Tensor::randn({1, 5, 4, 5}, rng, 1.0, DType::F64);
  REQUIRE_THROWS_WITH(sigmoid_cross_entropy(hx, hx, Tensor::ones({1, 2, 4, 5}, DType::F64)),
                      Catch::Contains("sigmoid_cross_entropy: weight must be"));
  REQUIRE_THROWS_WITH(sigmoid_cross_entropy(hx, Tensor::ones({1, 5, 4, 4}, DType::F64),
                                            Tensor::ones({1, 1, 4, 5}, DType::F64)),
                      Catch::Contains("targets"));
  Tensor ox = Tensor::randn({1, 5, 4, 5}, rng, 1.0, DType::F64);
  REQUIRE_THROWS_WITH(offset_l1(ox, ox, Tensor::ones({1, 1, 4, 5}, DType::F64), 1.0),
                      Catch::Contains("(dy, dx) pairs"));
  Tensor oy = Tensor::randn({1, 6, 4, 5}, rng, 1.0, DType::F64);
  REQUIRE_THROWS_WITH(offset_l1(oy, oy, Tensor::ones({1, 2, 4, 5}, DType::F64), 1.0),
                      Catch::Contains("mask must be"));
  REQUIRE_THROWS_WITH(offset_l1(oy, oy, Tensor::ones({1, 3, 4, 5}, DType::F64), 0.0),
                      Catch::Contains("scale"));
}

// ---- the `deeperlab grad` subcommand on a generated scene ----
#include "parser/panoptic.h"
#include "weights/safetensors.h"

TEST_CASE("deeperlab grad on a generated 33x41 scene writes every loss term and gradient", "[losses][cli]") {
  const char* bin = std::getenv("DEEPERLAB_BIN");
  if (!bin) {
    WARN("skipped: DEEPERLAB_BIN is not set (ctest sets it)");
    return;
  }
  const std::string dir = "/tmp/deeperlab_test_grad_" + std::to_string(::getpid());
  REQUIRE(std::system(("mkdir -p " + dir).c_str()) == 0);
  const int64_t h = 33, w = 41;
  std::vector<int32_t> ids(h * w, 1);
  for (int64_t y = 4; y < 15; ++y)
    for (int64_t x = 5; x < 20; ++x) ids[y * w + x] = 2;
  for (int64_t y = 18; y < 30; ++y)
    for (int64_t x = 22; x < 37; ++x) ids[y * w + x] = 3;
  write_panoptic_png(dir + "/gt.png", ids, h, w);
  Rng rng(1);
  std::vector<uint8_t> rgb(h * w * 3);
  for (auto& v : rgb) v = uint8_t(rng.randint(0, 256));
  write_rgb_png(dir + "/img.png", rgb, h, w);
  PanopticJson pj;
  pj.images.push_back({1, "img.png", w, h});
  pj.categories = {
      {1, "road", false, {128, 64, 128}}, {2, "car", true, {0, 0, 142}}, {3, "person", true, {220, 20, 60}}};
  PanopticAnnotation ann;
  ann.image_id = 1;
  ann.file_name = "gt.png";
  ann.segments = {{1, 1, false, 0, {0, 0, w, h}},
                  {2, 2, false, 165, {5, 4, 15, 11}},
                  {3, 3, false, 180, {22, 18, 15, 12}}};
  for (auto& s : ann.segments) s.area = int64_t(std::count(ids.begin(), ids.end(), s.id));
  pj.annotations.push_back(ann);
  write_panoptic_json(dir + "/gt.json", pj);
  auto write_config = [&](int classes) {
    std::ofstream f(dir + "/cfg.json");
    f << R"({"model": {"backbone": "mobilenet_v2", "width_multiplier": 0.25, "backbone_kernel_size": 3,
      "aspp_channels": 16, "aspp_rates": [2, 4, 6], "low_level_channels": 8, "decoder_widths": [32, 32],
      "decoder_kernel_size": 3, "head_kernel_size": 3, "semantic_head_width": 16, "instance_head_width": 8,
      "num_classes": )"
      << classes << R"(}, "loss": {"keypoint_radius": 5.0, "hard_pixel_fraction": 0.25}})";
  };
  write_config(3);
  const std::string cmd = std::string(bin) + " grad --config " + dir + "/cfg.json --image " + dir +
                          "/img.png --gt-json " + dir + "/gt.json --gt-png " + dir + "/gt.png --out " + dir +
                          "/g.safetensors --threads 2";
  REQUIRE(std::system((cmd + " > " + dir + "/stdout.txt").c_str()) == 0);
  NamedTensors got = read_safetensors(dir + "/g.safetensors");
  double sum_terms = 0, total = 0;
  int64_t grads = 0, nonzero = 0;
  for (const auto& [name, t] : got) {
    if (name.rfind("loss.", 0) == 0) {
      REQUIRE(std::isfinite(t.item()));
      if (name == "loss.total")
        total = t.item();
      else
        sum_terms += t.item();
    } else {
      REQUIRE(name.rfind("grad.", 0) == 0);
      ++grads;
      for (float v : t.to_vector<float>()) nonzero += v != 0.0f;
    }
  }
  REQUIRE(find_tensor(got, "loss.semantic").defined());
  REQUIRE(find_tensor(got, "loss.long_offsets").defined());
  REQUIRE(total == Approx(sum_terms).epsilon(1e-5));
  REQUIRE(total > 0);
  REQUIRE(grads > 10);
  REQUIRE(nonzero > 0);
  // A config whose class count does not match the dataset fails with a message, not a crash.
  write_config(5);
  REQUIRE(std::system((cmd + " > /dev/null 2> " + dir + "/stderr.txt").c_str()) != 0);
  std::ifstream err(dir + "/stderr.txt");
  std::string msg((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
  REQUIRE(msg.find("categories") != std::string::npos);
  std::system(("rm -rf " + dir).c_str());
}
