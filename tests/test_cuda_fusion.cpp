// CUDA instance prediction and fusion against the CPU reference: the same segments and the same
// pixels, exactly (fixed-point votes, shared non-contracting arithmetic), on perfect, noisy and
// random head outputs of odd sizes; and the same errors. Skips itself without a GPU.
#include <cmath>
#include <random>

#include "parser/instance.h"
#include "tests/fusion_scenes.h"
#include "tests/testing.h"

using namespace dl;
using namespace dl::testing;

namespace {

void add_noise(Tensor& t, std::mt19937& rng, float sigma) {
  std::normal_distribution<float> n(0.0f, sigma);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] += n(rng);
}

HeadOutputs to_cuda(const HeadOutputs& o) {
  return {o.semantic.to(Device::CUDA), o.heatmap.to(Device::CUDA), o.long_offsets.to(Device::CUDA),
          o.short_offsets.to(Device::CUDA), o.mid_offsets.to(Device::CUDA)};
}

void require_identical(const PanopticMap& cpu, const PanopticMap& gpu) {
  REQUIRE(gpu.height == cpu.height);
  REQUIRE(gpu.width == cpu.width);
  REQUIRE(gpu.ids.size() == cpu.ids.size());
  int64_t first = -1, count = 0;
  for (size_t i = 0; i < cpu.ids.size(); ++i)
    if (cpu.ids[i] != gpu.ids[i]) {
      if (first < 0) first = int64_t(i);
      ++count;
    }
  INFO(count << " pixels differ; first at (" << first / std::max<int64_t>(cpu.width, 1) << ", "
             << first % std::max<int64_t>(cpu.width, 1) << "): CPU id "
             << (first >= 0 ? cpu.ids[first] : 0) << " CUDA id " << (first >= 0 ? gpu.ids[first] : 0));
  REQUIRE(count == 0);
  REQUIRE(gpu.segments.size() == cpu.segments.size());
  for (size_t s = 0; s < cpu.segments.size(); ++s) {
    INFO("segment " << s);
    REQUIRE(gpu.segments[s].id == cpu.segments[s].id);
    REQUIRE(gpu.segments[s].category_id == cpu.segments[s].category_id);
    REQUIRE(gpu.segments[s].area == cpu.segments[s].area);
    REQUIRE(gpu.segments[s].bbox == cpu.segments[s].bbox);
  }
}

void compare(const HeadOutputs& o, const ClassMap& cm, const InferenceConfig& cfg) {
  const PanopticMap cpu = predict_panoptic(o, cm, cfg);
  const PanopticMap gpu = predict_panoptic(to_cuda(o), cm, cfg);
  require_identical(cpu, gpu);
}

}  // namespace

TEST_CASE("CUDA fusion == CPU: perfect and noisy outputs of scenes 157x203 (14 inst) and 401x577 (40 inst)",
          "[cuda][instance]") {
  DL_REQUIRE_GPU_OR_SKIP();
  ClassMap cm(fusion_categories());
  std::mt19937 rng(3);
  for (auto [h, w, n] : {std::tuple<int, int, int>{157, 203, 14}, {401, 577, 40}}) {
    FusionScene s = random_fusion_scene(h, w, n, uint32_t(h));
    TargetConfig tc;
    tc.radius = 12;
    HeadOutputs o = perfect_outputs(build_targets(s.map, cm, tc), cm);
    InferenceConfig cfg;
    cfg.radius = 12;
    INFO(h << "x" << w << " perfect");
    compare(o, cm, cfg);
    add_noise(o.semantic, rng, 3.0f);
    add_noise(o.heatmap, rng, 5.0f);
    add_noise(o.short_offsets, rng, 2.0f);
    add_noise(o.mid_offsets, rng, 2.0f);
    add_noise(o.long_offsets, rng, 3.0f);
    INFO(h << "x" << w << " noisy");
    compare(o, cm, cfg);
    cfg.min_vote_weight = 0;
    cfg.refine_steps = 3;
    cfg.short_weight = 0.7;
    cfg.long_weight = 1.3;
    cfg.min_area = 20;
    INFO("other config");
    compare(o, cm, cfg);
  }
}

TEST_CASE("CUDA fusion == CPU: random outputs 63x91 K=4, offsets up to 40 px", "[cuda][instance]") {
  DL_REQUIRE_GPU_OR_SKIP();
  ClassMap cm(fusion_categories());
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  HeadOutputs o;
  auto rnd = [&](Shape s, float scale) {
    Tensor t = Tensor::empty(s);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = scale * u(rng);
    return t;
  };
  o.semantic = rnd({1, 4, 63, 91}, 3);
  o.heatmap = rnd({1, 5, 63, 91}, 6);
  o.long_offsets = rnd({1, 10, 63, 91}, 40);
  o.short_offsets = rnd({1, 10, 63, 91}, 10);
  o.mid_offsets = rnd({1, 16, 63, 91}, 40);
  InferenceConfig cfg;
  cfg.radius = 5;
  compare(o, cm, cfg);
  // Nothing reaches the threshold: no instances, thing pixels void on both.
  cfg.keypoint_threshold = 1e6;
  compare(o, cm, cfg);
}

TEST_CASE("CUDA fusion == CPU over calls: host buffers grown and released, 157x203 613x517 157x203",
          "[cuda][instance]") {
  DL_REQUIRE_GPU_OR_SKIP();
  ClassMap cm(fusion_categories());
  InferenceConfig cfg;
  cfg.radius = 12;
  auto outputs = [&](int h, int w, int n) {
    TargetConfig tc;
    tc.radius = 12;
    return perfect_outputs(build_targets(random_fusion_scene(h, w, n, uint32_t(w)).map, cm, tc), cm);
  };
  const HeadOutputs small = outputs(157, 203, 14), large = outputs(613, 517, 30);
  compare(small, cm, cfg);
  compare(large, cm, cfg);  // id map larger than the first page-locked buffer
  release_inference_workspace();
  compare(small, cm, cfg);
  compare(large, cm, cfg);
}

TEST_CASE("CUDA fusion: non-finite values and mixed devices raise the CPU errors", "[cuda][instance]") {
  DL_REQUIRE_GPU_OR_SKIP();
  ClassMap cm(fusion_categories());
  HeadOutputs o{Tensor::zeros({1, 4, 9, 11}), Tensor::zeros({1, 5, 9, 11}), Tensor::zeros({1, 10, 9, 11}),
                Tensor::zeros({1, 10, 9, 11}), Tensor::zeros({1, 16, 9, 11})};
  o.mid_offsets.data<float>()[(7 * 9 + 4) * 11 + 3] = std::nanf("");
  REQUIRE_THROWS_WITH(predict_panoptic(to_cuda(o), cm, InferenceConfig()),
                      Catch::Contains("'mid_offsets'") && Catch::Contains("[0, 7, 4, 3]"));
  // Scalar tail of the vectorised scan (495 heatmap values) and the first of two bad values in one
  // 16-byte load.
  o.mid_offsets.data<float>()[(7 * 9 + 4) * 11 + 3] = 0.0f;
  o.mid_offsets.data<float>()[1003] = std::nanf("");
  o.mid_offsets.data<float>()[1001] = -INFINITY;
  REQUIRE_THROWS_WITH(predict_panoptic(to_cuda(o), cm, InferenceConfig()),
                      Catch::Contains("'mid_offsets'") && Catch::Contains("[0, 10, 1, 0]"));
  o.heatmap.data<float>()[494] = INFINITY;
  REQUIRE_THROWS_WITH(predict_panoptic(to_cuda(o), cm, InferenceConfig()),
                      Catch::Contains("'heatmap'") && Catch::Contains("[0, 4, 8, 10]"));
  o.heatmap.data<float>()[494] = 0.0f;
  HeadOutputs mixed = to_cuda(o);
  mixed.heatmap = o.heatmap;
  REQUIRE_THROWS_WITH(predict_panoptic(mixed, cm, InferenceConfig()), Catch::Contains("'heatmap' is on cpu"));
}
