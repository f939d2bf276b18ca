// CUDA vs CPU for the training targets (bit-identical) and the losses (values and gradients) on
// random inputs of odd shapes; every case skips itself without a usable GPU.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "tests/target_scenes.h"
#include "parser/losses.h"
#include "parser/targets.h"
#include "tests/testing.h"

using namespace dl;

namespace {

using dl::testing::random_scene;

std::vector<Category> categories() { return dl::testing::scene_categories(); }

void require_equal(const Tensor& gpu, const Tensor& cpu, const char* what) {
  INFO(what << " " << cpu.desc());
  REQUIRE(gpu.is_cuda());
  REQUIRE(gpu.shape() == cpu.shape());
  if (cpu.dtype() == DType::I32) {
    REQUIRE(gpu.to(Device::CPU).to_vector<int32_t>() == cpu.to_vector<int32_t>());
    return;
  }
  auto g = gpu.to(Device::CPU).to_vector<float>();
  auto c = cpu.to_vector<float>();
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < c.size(); ++i)
    if (g[i] != c[i]) {
      if (first < 0) first = int64_t(i);
      ++bad;
    }
  INFO(bad << " elements differ, first at " << first << " (" << (first >= 0 ? g[first] : 0) << " vs "
           << (first >= 0 ? c[first] : 0) << ")");
  REQUIRE(bad == 0);
}

Tensor labels_of(int64_t n, int64_t h, int64_t w, int32_t k, Rng& rng, double ignore_p) {
  std::vector<int32_t> v(n * h * w);
  for (auto& x : v) x = rng.bernoulli(ignore_p) ? -1 : int32_t(rng.randint(0, k));
  return Tensor::from_vector(v, {n, h, w});
}

Tensor weights_of(const Shape& s, Rng& rng, double zero_p) {
  std::vector<float> v(shape_numel(s));
  for (auto& x : v) x = rng.bernoulli(zero_p) ? 0.0f : (rng.bernoulli(0.3) ? 3.0f : 1.0f);
  return Tensor::from_vector(v, s);
}

Tensor leaf(const Tensor& t, Device d) {
  Tensor x = t.to(d).clone();
  x.set_requires_grad(true);
  return x;
}

}  // namespace

TEST_CASE("cuda targets equal the CPU targets bit for bit, 61x83 R=9 and 128x96 R=25", "[cuda][targets]") {
  DL_REQUIRE_GPU_OR_SKIP();
  for (auto [h, w, n, r] :
       {std::tuple<int64_t, int64_t, int, double>{61, 83, 11, 9.0}, {128, 96, 17, 25.0}}) {
    DYNAMIC_SECTION("scene " << h << "x" << w << " instances " << n << " R=" << r) {
      PanopticMap m = random_scene(h, w, n, uint64_t(h) * 7);
      TargetConfig cfg;
      cfg.radius = r;
      ClassMap cm(categories());
      Targets c = build_targets(m, cm, cfg);
      Targets g = build_targets_on(m, cm, cfg, Device::CUDA);
      require_equal(g.semantic, c.semantic, "semantic");
      require_equal(g.semantic_weight, c.semantic_weight, "semantic_weight");
      require_equal(g.heatmap, c.heatmap, "heatmap");
      require_equal(g.heatmap_weight, c.heatmap_weight, "heatmap_weight");
      require_equal(g.short_offsets, c.short_offsets, "short_offsets");
      require_equal(g.short_mask, c.short_mask, "short_mask");
      require_equal(g.mid_offsets, c.mid_offsets, "mid_offsets");
      require_equal(g.mid_mask, c.mid_mask, "mid_mask");
      require_equal(g.long_offsets, c.long_offsets, "long_offsets");
      require_equal(g.long_weight, c.long_weight, "long_weight");
      REQUIRE(g.instances[0].size() == c.instances[0].size());
      // Stacking and moving on the device.
      Targets s = stack_targets({g, g});
      REQUIRE(s.mid_offsets.shape() == Shape{2, 16, h, w});
      require_equal(s.long_offsets.to(Device::CPU).select0(1).view({1, 10, h, w}).to(Device::CUDA),
                    c.long_offsets, "stacked long_offsets");
      Targets back = c.to(Device::CUDA);
      require_equal(back.heatmap, c.heatmap, "to(CUDA)");
    }
  }
}

TEST_CASE("cuda bootstrapped CE vs CPU: values, kept counts, gradients", "[cuda][losses]") {
  DL_REQUIRE_GPU_OR_SKIP();
  struct Case {
    int64_t n, k, h, w;
    double kf;
  };
  for (const Case& c : {Case{2, 7, 13, 17, 0.15}, Case{1, 3, 1, 1, 0.15}, Case{1, 5, 97, 131, 0.15},
                        Case{3, 4, 33, 29, 1.0}, Case{1, 19, 257, 261, 0.05}}) {
    DYNAMIC_SECTION("N=" << c.n << " K=" << c.k << " " << c.h << "x" << c.w << " keep " << c.kf) {
      Rng rng(uint64_t(c.h * 31 + c.k));
      Tensor x = Tensor::randn({c.n, c.k, c.h, c.w}, rng, 2.0);
      Tensor lab = labels_of(c.n, c.h, c.w, int32_t(c.k), rng, 0.1);
      Tensor wt = weights_of({c.n, c.h, c.w}, rng, 0.1);
      Tensor xc = leaf(x, Device::CPU), xg = leaf(x, Device::CUDA);
      Tensor lc = bootstrapped_cross_entropy(xc, lab, wt, c.kf);
      Tensor lg = bootstrapped_cross_entropy(xg, lab.to(Device::CUDA), wt.to(Device::CUDA), c.kf);
      REQUIRE(lg.is_cuda());
      REQUIRE(lg.item() == Approx(lc.item()).epsilon(1e-5));
      lc.backward();
      lg.backward();
      const int64_t hw = c.h * c.w;
      const int64_t keep = std::min(hw, std::max<int64_t>(1, std::llround(c.kf * double(hw))));
      auto gc = xc.grad().to_vector<float>();
      auto gg = xg.grad().to(Device::CPU).to_vector<float>();
      auto lv = lab.to_vector<int32_t>();
      auto wv = wt.to_vector<float>();
      // Per image, kept pixels with a gradient: at most keep, and the two devices agree on all but
      // near-ties (losses equal to float rounding).
      int64_t differ = 0;
      for (int64_t i = 0; i < c.n; ++i) {
        int64_t kept_g = 0, active = 0;
        for (int64_t p = 0; p < hw; ++p) {
          const bool act = lv[i * hw + p] >= 0 && wv[i * hw + p] != 0;
          active += act;
          bool any_g = false, any_c = false;
          for (int64_t ch = 0; ch < c.k; ++ch) {
            any_g |= gg[(i * c.k + ch) * hw + p] != 0;
            any_c |= gc[(i * c.k + ch) * hw + p] != 0;
          }
          kept_g += any_g;
          differ += any_g != any_c;
          if (any_g && any_c)
            for (int64_t ch = 0; ch < c.k; ++ch) {
              const float a = gg[(i * c.k + ch) * hw + p], b = gc[(i * c.k + ch) * hw + p];
              INFO("image " << i << " pixel " << p << " channel " << ch);
              REQUIRE(std::fabs(a - b) <= 1e-5f * std::max(1.0f, std::fabs(b)) + 1e-9f);
            }
        }
        REQUIRE(kept_g <= keep);
        if (active >= keep) REQUIRE(kept_g == keep);
      }
      REQUIRE(differ <= 2 * c.n);
    }
  }
}

TEST_CASE("cuda bootstrapped CE with exact ties keeps the lowest pixel indices, 1x3x40x50",
          "[cuda][losses]") {
  DL_REQUIRE_GPU_OR_SKIP();
  const int64_t h = 40, w = 50, hw = h * w;
  Tensor x = Tensor::zeros({1, 3, h, w});
  Tensor lab = Tensor::from_vector(std::vector<int32_t>(hw, 1), {1, h, w});
  std::vector<float> wv(hw, 1.0f);
  for (int64_t p = 0; p < hw; p += 97) wv[p] = 2.0f;  // 21 heavier pixels
  Tensor wt = Tensor::from_vector(wv, {1, h, w});
  for (double kf : {0.005, 0.15}) {
    Tensor xc = leaf(x, Device::CPU), xg = leaf(x, Device::CUDA);
    bootstrapped_cross_entropy(xc, lab, wt, kf).backward();
    bootstrapped_cross_entropy(xg, lab.to(Device::CUDA), wt.to(Device::CUDA), kf).backward();
    DL_REQUIRE_CLOSE(xg.grad(), xc.grad(), 1e-5);
  }
}

TEST_CASE("cuda sigmoid CE and offset L1 vs CPU, values and gradients, odd shapes", "[cuda][losses]") {
  DL_REQUIRE_GPU_OR_SKIP();
  struct Case {
    int64_t n, c, h, w, mc;
  };
  for (const Case& c :
       {Case{2, 5, 13, 11, 1}, Case{1, 5, 61, 67, 5}, Case{3, 8, 7, 9, 8}, Case{1, 1, 1, 1, 1}}) {
    DYNAMIC_SECTION("N=" << c.n << " C=" << c.c << " " << c.h << "x" << c.w << " mask channels " << c.mc) {
      Rng rng(uint64_t(c.h * 13 + c.c));
      Tensor x = Tensor::randn({c.n, c.c, c.h, c.w}, rng, 3.0);
      Tensor t = Tensor::uniform({c.n, c.c, c.h, c.w}, rng, 0.0, 1.0);
      Tensor wt = weights_of({c.n, c.mc, c.h, c.w}, rng, 0.3);
      Tensor xc = leaf(x, Device::CPU), xg = leaf(x, Device::CUDA);
      Tensor lc = sigmoid_cross_entropy(xc, t, wt);
      Tensor lg = sigmoid_cross_entropy(xg, t.to(Device::CUDA), wt.to(Device::CUDA));
      REQUIRE(lg.item() == Approx(lc.item()).epsilon(1e-5));
      lc.backward();
      lg.backward();
      DL_REQUIRE_CLOSE(xg.grad(), xc.grad(), 1e-4);

      Tensor p = Tensor::randn({c.n, 2 * c.c, c.h, c.w}, rng, 10.0);
      Tensor tg = Tensor::randn({c.n, 2 * c.c, c.h, c.w}, rng, 10.0);
      Tensor m = Tensor::uniform({c.n, c.mc, c.h, c.w}, rng, -0.5, 1.0);  // <= 0 is inactive
      for (double scale : {25.0, 1.0}) {
        Tensor pc = leaf(p, Device::CPU), pg = leaf(p, Device::CUDA);
        Tensor oc = offset_l1(pc, tg, m, scale);
        Tensor og = offset_l1(pg, tg.to(Device::CUDA), m.to(Device::CUDA), scale);
        REQUIRE(og.item() == Approx(oc.item()).epsilon(1e-5));
        oc.backward();
        og.backward();
        DL_REQUIRE_CLOSE(pg.grad(), pc.grad(), 1e-4);
      }
    }
  }
}

TEST_CASE("cuda deeperlab_loss vs CPU on the targets of a 45x53 scene", "[cuda][losses]") {
  DL_REQUIRE_GPU_OR_SKIP();
  PanopticMap m = random_scene(45, 53, 7, 3);
  ClassMap cm(categories());
  TargetConfig tc;
  tc.radius = 6;
  Targets tcpu = build_targets(m, cm, tc);
  Targets tgpu = build_targets_on(m, cm, tc, Device::CUDA);
  Rng rng(4);
  HeadOutputs oc{Tensor::randn({1, 3, 45, 53}, rng), Tensor::randn({1, 5, 45, 53}, rng),
                 Tensor::randn({1, 10, 45, 53}, rng, 5.0), Tensor::randn({1, 10, 45, 53}, rng, 5.0),
                 Tensor::randn({1, 16, 45, 53}, rng, 5.0)};
  HeadOutputs og{oc.semantic.to(Device::CUDA), oc.heatmap.to(Device::CUDA), oc.long_offsets.to(Device::CUDA),
                 oc.short_offsets.to(Device::CUDA), oc.mid_offsets.to(Device::CUDA)};
  LossConfig cfg;
  cfg.radius = 6;
  cfg.warmup_steps = 10;
  LossTerms lc = deeperlab_loss(oc, tcpu, cfg, 3);
  LossTerms lg = deeperlab_loss(og, tgpu, cfg, 3);
  REQUIRE(all_finite(lg));
  REQUIRE(lg.semantic.item() == Approx(lc.semantic.item()).epsilon(1e-5));
  REQUIRE(lg.heatmap.item() == Approx(lc.heatmap.item()).epsilon(1e-5));
  REQUIRE(lg.short_offsets.item() == Approx(lc.short_offsets.item()).epsilon(1e-5));
  REQUIRE(lg.mid_offsets.item() == Approx(lc.mid_offsets.item()).epsilon(1e-5));
  REQUIRE(lg.long_offsets.item() == Approx(lc.long_offsets.item()).epsilon(1e-5));
  REQUIRE(lg.total.item() == Approx(lc.total.item()).epsilon(1e-5));
  REQUIRE_THROWS_WITH(deeperlab_loss(og, tcpu, cfg, 3), Catch::Contains("Targets::to"));
}

TEST_CASE("cuda bootstrapped CE rejects bad labels", "[cuda][losses][errors]") {
  DL_REQUIRE_GPU_OR_SKIP();
  Rng rng(2);
  Tensor x = Tensor::randn({1, 3, 4, 5}, rng).to(Device::CUDA);
  std::vector<int32_t> bad(20, 0);
  bad[7] = 5;
  REQUIRE_THROWS_WITH(bootstrapped_cross_entropy(x, Tensor::from_vector(bad, {1, 4, 5}, Device::CUDA),
                                                 Tensor::ones({1, 4, 5}, DType::F32, Device::CUDA), 0.5),
                      Catch::Contains("1 labels outside [0, 3)"));
}
