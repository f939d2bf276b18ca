// Module bookkeeping (names, order, modes, in-place moves), config parsing, layer shapes and
// float64 gradient checks of the layers through their parameters.
#include <fstream>

#include "layers/aspp.h"
#include "layers/decoder.h"
#include "layers/mobilenet_v2.h"
#include "layers/xception.h"
#include "parser/config.h"
#include "parser/model.h"
#include "tests/testing.h"

using namespace dl;

namespace {
std::vector<std::string> names(const NamedTensors& t) {
  std::vector<std::string> n;
  for (const auto& p : t) n.push_back(p.first);
  return n;
}
Config tiny_config() {
  return load_config("examples/configs/tiny.json");
}
}  // namespace

TEST_CASE("module: dotted names in PyTorch order, buffers, counts") {
  Rng rng(1);
  SeparableConv2d s(4, 6, 3, rng, BatchNormOptions{});
  const std::vector<std::string> want_params = {"depthwise.weight",    "depthwise_bn.weight",
                                                "depthwise_bn.bias",   "pointwise.weight",
                                                "pointwise_bn.weight", "pointwise_bn.bias"};
  REQUIRE(names(s.named_parameters()) == want_params);
  REQUIRE(names(s.named_buffers()) ==
          std::vector<std::string>{"depthwise_bn.running_mean", "depthwise_bn.running_var",
                                   "pointwise_bn.running_mean", "pointwise_bn.running_var"});
  const std::vector<std::string> want_state = {"depthwise.weight",          "depthwise_bn.weight",
                                               "depthwise_bn.bias",         "depthwise_bn.running_mean",
                                               "depthwise_bn.running_var",  "pointwise.weight",
                                               "pointwise_bn.weight",       "pointwise_bn.bias",
                                               "pointwise_bn.running_mean", "pointwise_bn.running_var"};
  REQUIRE(names(s.state_dict()) == want_state);
  REQUIRE(s.num_parameters() == 4 * 9 + 4 + 4 + 6 * 4 + 6 + 6);
  REQUIRE(s.depthwise->weight.shape() == Shape{4, 1, 3, 3});
  for (const auto& p : s.named_parameters()) REQUIRE(p.second.requires_grad());
  for (const auto& p : s.named_buffers()) REQUIRE(!p.second.requires_grad());
}

TEST_CASE("module: train/eval is recursive") {
  Config c = tiny_config();
  DeeperLab m(c.model);
  REQUIRE(m.is_training());
  m.eval();
  for (const auto& [n, mod] : m.named_modules()) {
    INFO(n);
    REQUIRE(!mod->is_training());
  }
  m.train();
  for (const auto& [n, mod] : m.named_modules()) REQUIRE(mod->is_training());
}

TEST_CASE("module: to(dtype) keeps tensor identity, moves gradients") {
  Rng rng(2);
  Conv2d conv(3, 5, 3, rng, 1, 1, 1, true);
  Tensor held = conv.weight;  // what an optimizer would hold
  Tensor x = Tensor::randn({1, 3, 6, 6}, rng);
  sum(conv.forward(x)).backward();
  REQUIRE(conv.weight.grad().defined());
  const std::vector<float> before = conv.weight.to_vector<float>();
  conv.to(DType::F64);
  REQUIRE(held.same(conv.weight));
  REQUIRE(held.dtype() == DType::F64);
  REQUIRE(held.grad().dtype() == DType::F64);
  REQUIRE(conv.named_parameters()[0].second.same(held));
  const std::vector<double> after = held.to_vector<double>();
  for (size_t i = 0; i < before.size(); ++i) REQUIRE(after[i] == double(before[i]));
  conv.to(Device::CPU);  // no-op
  REQUIRE(held.same(conv.weight));
  conv.zero_grad();
  REQUIRE(!held.grad().defined());
}

TEST_CASE("module: registration errors") {
  struct Bad : Module {
    explicit Bad(int which) {
      register_parameter("w", Tensor::zeros({2}));
      if (which == 0) register_parameter("w", Tensor::zeros({2}));
      if (which == 1) register_buffer("a.b", Tensor::zeros({2}));
    }
  };
  REQUIRE_THROWS_WITH(Bad(0), Catch::Contains("registered twice"));
  REQUIRE_THROWS_WITH(Bad(1), Catch::Contains("invalid name"));
}

TEST_CASE("initialisation is deterministic by seed") {
  Config c = tiny_config();
  DeeperLab a(c.model), b(c.model);
  c.model.init_seed = 1;
  DeeperLab d(c.model);
  auto pa = a.named_parameters(), pb = b.named_parameters(), pd = d.named_parameters();
  REQUIRE(pa.size() == pb.size());
  bool differs = false;
  for (size_t i = 0; i < pa.size(); ++i) {
    REQUIRE(pa[i].second.to_vector<float>() == pb[i].second.to_vector<float>());
    if (pa[i].second.to_vector<float>() != pd[i].second.to_vector<float>()) differs = true;
  }
  REQUIRE(differs);
  // BN starts as the identity affine map.
  REQUIRE(a.aspp->project->bn->weight.to_vector<float>() == std::vector<float>(32, 1.0f));
  REQUIRE(a.aspp->project->bn->bias.to_vector<float>() == std::vector<float>(32, 0.0f));
}

TEST_CASE("config: defaults, round trip and errors naming field and file") {
  Config d = parse_config("{}", "empty.json");
  REQUIRE(d.model.backbone == "mobilenet_v2");
  REQUIRE(d.model.bn_eps == 1e-3);
  REQUIRE(d.model.decoder_widths == IntList{4096, 4096});
  Config t = tiny_config();
  Config r = parse_config(config_to_json(t), "roundtrip");
  REQUIRE(config_to_json(r) == config_to_json(t));
  REQUIRE_THROWS_WITH(parse_config(R"({"model": {"widht_multiplier": 1}})", "x.json"),
                      Catch::Contains("x.json") && Catch::Contains("unknown field 'model.widht_multiplier'"));
  REQUIRE_THROWS_WITH(parse_config(R"({"modle": {}})", "x.json"), Catch::Contains("unknown section 'modle'"));
  REQUIRE_THROWS_WITH(parse_config(R"({"model": {"output_stride": "16"}})", "x.json"),
                      Catch::Contains("model.output_stride") && Catch::Contains("integer"));
  REQUIRE_THROWS_WITH(parse_config(R"({"model": {"output_stride": 12}})", "x.json"),
                      Catch::Contains("output_stride"));
  REQUIRE_THROWS_WITH(parse_config(R"({"model": {"backbone": "resnet"}})", "x.json"),
                      Catch::Contains("resnet"));
  REQUIRE_THROWS_WITH(parse_config("{", "broken.json"),
                      Catch::Contains("broken.json") && Catch::Contains("malformed"));
  REQUIRE_THROWS_WITH(load_config("does/not/exist.json"), Catch::Contains("does/not/exist.json"));
  REQUIRE(config_reference().find("model.backbone") != std::string::npos);
}

TEST_CASE("shipped configs parse") {
  for (const char* f : {"examples/configs/tiny.json", "examples/configs/wider_mnv2.json",
                        "examples/configs/xception71.json"}) {
    INFO(f);
    REQUIRE_NOTHROW(load_config(f));
  }
}

TEST_CASE("make_divisible matches torchvision") {
  REQUIRE(make_divisible(32 * 1.0) == 32);
  REQUIRE(make_divisible(16 * 0.25) == 8);
  REQUIRE(make_divisible(320 * 0.25) == 80);
  REQUIRE(make_divisible(96 * 0.35) == 32);  // 33.6 -> 32
  REQUIRE(make_divisible(160 * 0.35) == 56);
  REQUIRE(make_divisible(24 * 0.5) == 16);  // 12 -> 16 (int(12 + 4) // 8 * 8)
}

TEST_CASE("MobileNetV2 k=3 w=1: torchvision block layout, low-level 144 ch at stride 4") {
  Rng rng(3);
  MobileNetV2Options o;
  o.kernel_size = 3;
  MobileNetV2 m(o, rng);
  REQUIRE(m.blocks->items.size() == 17);
  REQUIRE(m.low_level_block == 2);
  REQUIRE(m.low_level_channels == 144);
  REQUIRE(m.high_level_channels == 320);
  REQUIRE(!m.blocks->items[0]->expand);
  // Output stride 16: the first 160 unit (block 13) at stride 1 dilation 1, later ones dilation 2.
  REQUIRE(m.blocks->items[13]->depthwise->conv->opt.stride_h == 1);
  REQUIRE(m.blocks->items[13]->depthwise->conv->opt.dil_h == 1);
  REQUIRE(m.blocks->items[14]->depthwise->conv->opt.dil_h == 2);
  REQUIRE(m.blocks->items[16]->depthwise->conv->opt.dil_h == 2);
  // torchvision mobilenet_v2(): 3,504,872 parameters, minus the classifier (1,281,000) and features.18
  // (412,160) = features[:18].
  REQUIRE(m.num_parameters() == 1811712);
}

TEST_CASE("Xception71 block table: 16 middle units, shortcuts, output stride 16 dilation") {
  Rng rng(4);
  XceptionOptions o;
  o.width_multiplier = 0.125;
  Xception71 x(o, rng);
  REQUIRE(x.middle->items.size() == 16);
  REQUIRE(x.entry1->shortcut);
  REQUIRE(!x.middle->items[0]->shortcut);
  REQUIRE(x.middle->items[0]->shortcut_kind == Shortcut::Sum);
  REQUIRE(x.exit2->shortcut_kind == Shortcut::None);
  REQUIRE(x.exit2->act_inside);
  REQUIRE(x.exit1->sep3->depthwise->opt.stride_h == 1);
  REQUIRE(x.exit1->sep3->depthwise->opt.dil_h == 1);
  REQUIRE(x.exit2->sep1->depthwise->opt.dil_h == 2);
  REQUIRE(x.exit2->sep1->depthwise->opt.pad_h == 2);
  NoGradGuard ng;
  x.eval();
  Tensor img = Tensor::uniform({1, 3, 65, 65}, rng, -1, 1);
  BackboneFeatures f = x.forward(img);
  REQUIRE(f.low_level.shape() == Shape{1, 32, 17, 17});
  REQUIRE(f.high_level.shape() == Shape{1, 256, 5, 5});
}

TEST_CASE("DeeperLab tiny: head shapes at 65x65 and 97x129, features at stride 4 and 16") {
  Config c = tiny_config();
  DeeperLab m(c.model);
  m.eval();
  NoGradGuard ng;
  for (auto [h, w] : {std::pair<int64_t, int64_t>{65, 65}, {97, 129}, {100, 75}}) {
    INFO(h << "x" << w);
    Rng rng(5);
    Tensor img = Tensor::uniform({1, 3, h, w}, rng, -1, 1);
    DeeperLabFeatures f = m.forward_features(img);
    const int64_t h4 = ((h + 1) / 2 + 1) / 2, w4 = ((w + 1) / 2 + 1) / 2;
    REQUIRE(f.low_level.size(2) == h4);
    REQUIRE(f.decoder.shape() == Shape{1, 4, h4, w4});
    REQUIRE(f.aspp.shape() == Shape{1, 32, (h4 + 3) / 4, (w4 + 3) / 4});
    HeadOutputs o = m.forward(img);
    REQUIRE(o.semantic.shape() == Shape{1, 6, h, w});
    REQUIRE(o.heatmap.shape() == Shape{1, 5, h, w});
    REQUIRE(o.long_offsets.shape() == Shape{1, 10, h, w});
    REQUIRE(o.short_offsets.shape() == Shape{1, 10, h, w});
    REQUIRE(o.mid_offsets.shape() == Shape{1, 16, h, w});
  }
}

TEST_CASE("ASPP image pooling in train mode at batch 1 is a clear error") {
  Config c = tiny_config();
  DeeperLab m(c.model);
  Rng rng(6);
  Tensor img = Tensor::uniform({1, 3, 65, 65}, rng, -1, 1);
  REQUIRE_THROWS_WITH(m.forward(img), Catch::Contains("batch >= 2"));
}

TEST_CASE("BatchNorm2d train updates running stats, num_batches_tracked counts") {
  BatchNormOptions o;
  o.track_num_batches = true;
  o.momentum = 0.5;
  BatchNorm2d bn(2, o);
  Rng rng(7);
  Tensor x = Tensor::randn({3, 2, 4, 4}, rng, 1.0);
  bn.forward(x);
  REQUIRE(bn.num_batches_tracked.item() == 1);
  REQUIRE(bn.running_mean.to_vector<float>() != std::vector<float>(2, 0.0f));
  bn.eval();
  bn.forward(x);
  REQUIRE(bn.num_batches_tracked.item() == 1);
}

TEST_CASE("normalize_image maps 0..255 to -1..1") {
  Tensor u = Tensor::from_vector<uint8_t>({0, 255, 51, 0, 0, 0}, {1, 3, 1, 2});
  auto v = normalize_image(u).to_vector<float>();
  REQUIRE(v[0] == -1.0f);
  REQUIRE(v[1] == Approx(1.0f));
  REQUIRE(v[2] == Approx(-0.6f));
}

TEST_CASE("count_macs: a conv's multiply-adds") {
  ModelConfig mc = tiny_config().model;
  DeeperLab m(mc);
  const double a = count_macs(m, 65, 65), b = count_macs(m, 129, 129);
  REQUIRE(a > 0);
  REQUIRE(b > 3 * a);
  REQUIRE(m.is_training());
}

// Float64 gradient checks through the parameters of each layer kind (small shapes, BN in train mode).
namespace {
// Random BN affine parameters and running statistics: with the identity init, a ReLU after an
// eval-mode BN sees exact zeros (a kink) wherever its input is exactly zero.
void randomize_bn(Module& m, Rng& rng) {
  for (auto& [name, t] : m.state_dict()) {
    if (t.dim() != 1 || t.dtype() != DType::F64) continue;
    double* p = t.data<double>();
    const bool var = name.find("running_var") != std::string::npos;
    for (int64_t i = 0; i < t.numel(); ++i)
      p[i] = var ? rng.uniform(0.5, 1.5) : p[i] + rng.uniform(-0.3, 0.3);
  }
}

void check_module_grads(Module& m, const std::function<Tensor(const Tensor&)>& f, const Shape& in,
                        uint64_t seed) {
  m.to(DType::F64);
  Rng rng(seed);
  randomize_bn(m, rng);
  Tensor x = Tensor::randn(in, rng, 1.0, DType::F64).set_requires_grad(true);
  std::vector<Tensor> inputs{x};
  for (auto& p : m.parameters()) inputs.push_back(p);
  testing::gradcheck([&](const std::vector<Tensor>& v) { return f(v[0]); }, inputs, 1e-6, 1e-5);
}
}  // namespace

TEST_CASE("gradcheck SeparableConv2d k=3 s=2 d=1 in train mode 2x3x7x6") {
  Rng rng(8);
  BatchNormOptions bn;
  bn.momentum = 0;  // keep the running stats fixed across the finite-difference evaluations
  SeparableConv2d s(3, 4, 3, rng, bn, 2, 1, true);
  check_module_grads(
      s, [&](const Tensor& x) { return s.forward(x); }, {2, 3, 7, 6}, 9);
}

TEST_CASE("gradcheck XceptionBlock (conv shortcut, stride 2) eval mode 1x4x7x7") {
  Rng rng(10);
  XceptionBlock b(4, {4, 6, 6}, 2, 1, Shortcut::Conv, false, rng, BatchNormOptions{});
  b.eval();
  check_module_grads(
      b, [&](const Tensor& x) { return b.forward(x); }, {1, 4, 7, 7}, 11);
}

TEST_CASE("gradcheck ASPP + Decoder eval mode (pad, s2d, concat, d2s, crop) 1x8x9x9 / 1x4x3x3") {
  Rng rng(12);
  BatchNormOptions bn;
  struct Both : Module {
    std::shared_ptr<ASPP> aspp;
    std::shared_ptr<Decoder> dec;
    Both(Rng& rng, const BatchNormOptions& bn) {
      aspp = register_module("aspp", std::make_shared<ASPP>(4, 4, std::vector<int64_t>{1, 2}, rng, bn));
      dec =
          register_module("dec", std::make_shared<Decoder>(8, 2, 4, std::vector<int64_t>{16}, 3, 4, rng, bn));
    }
  } m(rng, bn);
  m.eval();
  m.to(DType::F64);
  randomize_bn(m, rng);
  Tensor low = Tensor::randn({1, 8, 9, 9}, rng, 1.0, DType::F64).set_requires_grad(true);
  Tensor high = Tensor::randn({1, 4, 3, 3}, rng, 1.0, DType::F64).set_requires_grad(true);
  std::vector<Tensor> inputs{low, high};
  for (auto& p : m.parameters()) inputs.push_back(p);
  testing::gradcheck(
      [&](const std::vector<Tensor>& v) { return m.dec->forward(v[0], m.aspp->forward(v[1])); }, inputs, 1e-6,
      1e-5);
}

TEST_CASE("DeeperLab tiny on CUDA: to(CUDA) keeps handles, forward matches the CPU 1x3x65x65") {
  DL_REQUIRE_GPU_OR_SKIP();
  Config c = tiny_config();
  DeeperLab cpu_model(c.model), gpu_model(c.model);
  cpu_model.eval();
  gpu_model.eval();
  Tensor held = gpu_model.heads->semantic->conv->weight;
  gpu_model.to(Device::CUDA);
  REQUIRE(held.is_cuda());
  for (const auto& [n, t] : gpu_model.state_dict()) {
    INFO(n);
    REQUIRE(t.is_cuda());
  }
  Rng rng(9);
  Tensor x = Tensor::uniform({1, 3, 65, 65}, rng, -1, 1);
  NoGradGuard ng;
  NamedTensors a = named_heads(cpu_model.forward(x)), b = named_heads(gpu_model.forward(x.to(Device::CUDA)));
  for (size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].first);
    auto d = testing::compare(b[i].second.to(Device::CPU), a[i].second, 1.0);
    INFO(d.str());
    REQUIRE(!d.nan);
    REQUIRE(d.max_rel <= 1e-3);
  }
  gpu_model.to(Device::CPU);
  REQUIRE(!held.is_cuda());
}
