// Every core op on CUDA tensors against the same op on CPU tensors (the reference), forward and
// backward through the public ops, on random inputs of odd shapes and a few DeeperLab-like shapes.
// Launchers called directly get outputs with sentinel guards around them, checked untouched.
// All cases skip themselves without a usable GPU.
#include <cstdlib>
#include <cstring>
#include <functional>

#include "core/cpu/kernels.h"
#include "tests/testing.h"
#ifdef DEEPERLAB_WITH_CUDA
#include "cuda/conv.h"
#include "cuda/handles.h"
#include "cuda/kernels.h"
#endif

using namespace dl;

#ifndef DEEPERLAB_WITH_CUDA

TEST_CASE("cuda ops: build without the CUDA backend", "[cuda]") {
  REQUIRE_FALSE(cuda_available());
  WARN("skipped: built without CUDA");
}

#else

namespace {

// Error of got vs want, relative to max(|want_i|, 1% of max|want|): summation order differences
// between devices give absolute errors that scale with the largest values, not each element.
void expect_close(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  REQUIRE(got.defined());
  REQUIRE(want.defined());
  REQUIRE(got.shape() == want.shape());
  const auto g = got.to(Device::CPU).to_vector<float>();
  const auto w = want.to(Device::CPU).to_vector<float>();
  double maxabs = 0;
  for (float v : w) maxabs = std::max(maxabs, double(std::fabs(v)));
  const double floor = std::max(1e-2 * maxabs, 1e-6);
  double worst = 0;
  int64_t worst_i = -1;
  bool nan = false;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(g[i]) != std::isnan(w[i])) {
      nan = true;
      worst_i = int64_t(i);
      break;
    }
    if (std::isnan(w[i])) continue;
    const double e = std::fabs(double(g[i]) - double(w[i])) / std::max(double(std::fabs(w[i])), floor);
    if (e > worst) {
      worst = e;
      worst_i = int64_t(i);
    }
  }
  INFO(what << " " << want.shape_str() << ": worst relative error " << worst << " at index " << worst_i
            << " (cuda " << (worst_i >= 0 ? g[worst_i] : 0.f) << ", cpu " << (worst_i >= 0 ? w[worst_i] : 0.f)
            << ")" << (nan ? " NaN mismatch" : ""));
  CHECK_FALSE(nan);
  CHECK(worst <= tol);
}

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Runs f on CPU inputs and on their CUDA copies; compares the outputs and the gradients of
// sum(f(inputs) * R) for every input with requires_grad.
void check_op(const std::string& name, const OpFn& f, const std::vector<Tensor>& cpu_in,
              double tol_fwd = 1e-4, double tol_bwd = 1e-4, uint64_t seed = 11) {
  std::vector<Tensor> a, b;
  bool any_grad = false;
  for (const auto& t : cpu_in) {
    if (!t.defined()) {
      a.emplace_back();
      b.emplace_back();
      continue;
    }
    Tensor ta = t.detach().clone(), tb = t.detach().to(Device::CUDA);
    if (t.requires_grad()) {
      ta.set_requires_grad(true);
      tb.set_requires_grad(true);
      any_grad = true;
    }
    a.push_back(ta);
    b.push_back(tb);
  }
  Tensor ya = f(a), yb = f(b);
  REQUIRE(yb.is_cuda());
  expect_close(yb, ya, tol_fwd, name + " forward");
  if (!any_grad) return;
  Rng rng(seed);
  Tensor r = Tensor::uniform(ya.shape(), rng, -1.0, 1.0, DType::F32);
  sum(mul(ya, r)).backward();
  sum(mul(yb, r.to(Device::CUDA))).backward();
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].defined() || !a[i].requires_grad()) continue;
    REQUIRE(b[i].grad().defined());
    REQUIRE(b[i].grad().is_cuda());
    expect_close(b[i].grad(), a[i].grad(), tol_bwd, name + " grad of input " + std::to_string(i));
  }
}

Tensor rnd(const Shape& s, Rng& rng, bool grad = true, double std = 1.0) {
  Tensor t = Tensor::randn(s, rng, std, DType::F32);
  if (grad) t.set_requires_grad(true);
  return t;
}

// A CUDA buffer of n floats with kGuard sentinel floats on each side.
constexpr int64_t kGuard = 67;
constexpr float kSentinel = -12345.5f;
struct Guarded {
  Tensor buf;
  int64_t n;
  explicit Guarded(int64_t n_) : n(n_) {
    buf = Tensor::full({n + 2 * kGuard}, kSentinel, DType::F32, Device::CUDA);
  }
  float* data() const { return buf.data<float>() + kGuard; }
  Tensor get() const {  // the payload, on the CPU
    auto v = buf.to_vector<float>();
    return Tensor::from_vector(std::vector<float>(v.begin() + kGuard, v.begin() + kGuard + n), {n});
  }
  void check_guards(const std::string& what) const {
    cuda::synchronize();
    auto v = buf.to_vector<float>();
    int64_t bad = -1;
    for (int64_t i = 0; i < kGuard && bad < 0; ++i) {
      if (v[i] != kSentinel) bad = i;
      if (v[kGuard + n + i] != kSentinel) bad = kGuard + n + i;
    }
    INFO(what << ": guard element " << bad << " overwritten");
    CHECK(bad < 0);
  }
};

Tensor flat(const Tensor& t) {
  return t.detach().to(Device::CPU).view({t.numel()});
}

// Both convolution paths when the build has cuDNN; DEEPERLAB_TEST_CONV_ALGO=im2col|cudnn restricts the
// tests to one (the sanitizer pass of scripts/gpu-check.sh skips cuDNN to save time).
std::vector<cuda::ConvAlgo> conv_algos() {
  const char* only = std::getenv("DEEPERLAB_TEST_CONV_ALGO");
  std::vector<cuda::ConvAlgo> v;
  if (!only || std::string(only) != "cudnn") v.push_back(cuda::ConvAlgo::Im2col);
  if (cuda::cudnn_built() && (!only || std::string(only) != "im2col")) v.push_back(cuda::ConvAlgo::Cudnn);
  return v;
}

const char* algo_name(cuda::ConvAlgo a) {
  return a == cuda::ConvAlgo::Cudnn ? "cudnn" : "im2col";
}

}  // namespace

TEST_CASE("cuda conv2d vs cpu: dense, grouped, pointwise, depthwise", "[cuda][conv]") {
  DL_REQUIRE_GPU_OR_SKIP();
  cuda::set_tf32(false);
  struct Case {
    int64_t n, cin, h, w, cout, kh, kw, stride, dil, groups;
    bool bias;
  };
  const Case cases[] = {
      {2, 3, 7, 6, 4, 3, 3, 1, 1, 1, true},       // dense 3x3
      {1, 5, 9, 7, 6, 3, 3, 2, 1, 1, false},      // dense stride 2
      {2, 6, 11, 10, 4, 5, 5, 1, 2, 1, true},     // dense 5x5 dilation 2
      {1, 7, 9, 8, 5, 1, 1, 2, 1, 1, true},       // 1x1 stride 2 (im2col path)
      {3, 13, 9, 11, 17, 1, 1, 1, 1, 1, true},    // pointwise, batched GEMM
      {1, 64, 23, 23, 32, 1, 1, 1, 1, 1, false},  // pointwise, DeeperLab-like
      {2, 8, 7, 9, 6, 1, 1, 1, 1, 2, false},      // grouped 1x1
      {1, 4, 7, 7, 6, 3, 3, 1, 1, 2, true},       // grouped 3x3
      {2, 5, 17, 34, 5, 3, 3, 1, 1, 5, true},     // depthwise 3x3 (tiled)
      {2, 5, 17, 34, 5, 3, 3, 2, 1, 5, false},    // depthwise 3x3 stride 2
      {1, 6, 37, 45, 6, 5, 5, 1, 1, 6, false},    // depthwise 5x5 (tiled, several tiles)
      {1, 6, 19, 21, 6, 5, 5, 2, 1, 6, true},     // depthwise 5x5 stride 2
      {2, 3, 41, 70, 3, 7, 7, 1, 1, 3, false},    // depthwise 7x7 (tiled, several tiles)
      {1, 4, 17, 34, 4, 7, 7, 2, 1, 4, false},    // depthwise 7x7 stride 2
      {1, 4, 23, 29, 4, 7, 7, 1, 3, 4, false},    // depthwise 7x7 dilation 3
      {1, 3, 25, 27, 3, 3, 3, 1, 18, 3, false},   // depthwise 3x3 dilation 18
      {1, 3, 45, 46, 3, 7, 7, 1, 6, 3, false},    // depthwise 7x7 dilation 6
      {1, 5, 13, 12, 5, 3, 5, 1, 1, 5, false},    // depthwise 3x5 (generic kernel)
      {1, 4, 12, 13, 4, 4, 4, 2, 1, 4, false},    // depthwise 4x4 stride 2 (generic)
      {1, 48, 46, 46, 48, 7, 7, 1, 1, 48, true},  // depthwise 7x7, DeeperLab-like
      {2, 3, 70, 97, 3, 7, 7, 1, 1, 3, true},     // depthwise 7x7, 24 tiles: 6 grad-weight chunks
      {3, 2, 33, 31, 2, 5, 5, 1, 1, 2, false},    // depthwise 5x5, a chunk spans two images
      {1, 2, 5, 3, 2, 7, 7, 1, 1, 2, false},      // depthwise 7x7, image smaller than the kernel
  };
  for (auto algo : conv_algos()) {
    cuda::set_conv_algo(algo);
    for (const auto& c : cases) {
      DYNAMIC_SECTION("conv " << algo_name(algo) << " k=" << c.kh << "x" << c.kw << " s=" << c.stride
                              << " d=" << c.dil << " g=" << c.groups << " " << c.n << "x" << c.cin << "x"
                              << c.h << "x" << c.w << " -> " << c.cout << (c.bias ? " bias" : "")) {
        Rng rng(uint64_t(c.h * 131 + c.w * 7 + c.kh));
        Tensor x = rnd({c.n, c.cin, c.h, c.w}, rng);
        Tensor w = rnd({c.cout, c.cin / c.groups, c.kh, c.kw}, rng, true, 0.5);
        Tensor b = c.bias ? rnd({c.cout}, rng) : Tensor();
        Conv2dOptions opt;
        opt.stride_h = opt.stride_w = c.stride;
        opt.dil_h = opt.dil_w = c.dil;
        opt.pad_h = ((c.kh - 1) * c.dil + 1) / 2;
        opt.pad_w = ((c.kw - 1) * c.dil + 1) / 2;
        opt.groups = c.groups;
        // cuDNN may pick Winograd/FFT algorithms, a little less exact than a plain FP32 GEMM.
        const double tol_fwd = algo == cuda::ConvAlgo::Cudnn ? 1e-3 : 1e-4;
        check_op(
            "conv2d", [&](const std::vector<Tensor>& v) { return conv2d(v[0], v[1], v[2], opt); }, {x, w, b},
            tol_fwd, 1e-3);
      }
    }
  }
  cuda::set_conv_algo(cuda::ConvAlgo::Im2col);
}

TEST_CASE("cuda conv2d: only the weight needs a gradient", "[cuda][conv]") {
  DL_REQUIRE_GPU_OR_SKIP();
  Rng rng(5);
  Tensor x = rnd({1, 6, 15, 14}, rng, false);
  Tensor w = rnd({6, 1, 7, 7}, rng);
  check_op("depthwise weight-only",
           [](const std::vector<Tensor>& v) {
             return conv2d(v[0], v[1], Tensor(), Conv2dOptions::same(7, 1, 1, 6));
           },
           {x, w});
  Tensor w2 = rnd({4, 6, 3, 3}, rng);
  check_op(
      "dense weight-only",
      [](const std::vector<Tensor>& v) {
        return conv2d(v[0], v[1], Tensor(), Conv2dOptions::same(3, 2, 1, 1));
      },
      {x, w2}, 1e-4, 1e-3);
}

TEST_CASE("cuda batch_norm vs cpu: train and eval, affine on and off", "[cuda][bn]") {
  DL_REQUIRE_GPU_OR_SKIP();
  const Shape shapes[] = {{3, 5, 7, 9}, {2, 33, 13, 11}, {1, 256, 23, 23}, {4, 3, 1, 1}};
  for (const auto& s : shapes)
    for (bool training : {true, false})
      for (bool affine : {true, false}) {
        DYNAMIC_SECTION("batch_norm " << shape_str(s) << " training=" << training << " affine=" << affine) {
          Rng rng(uint64_t(s[1] * 3 + training));
          Tensor x = rnd(s, rng, true, 2.0);
          // Offset mean so the two-pass variance matters.
          x = add(x.detach(), Tensor::full(s, 3.0)).detach().set_requires_grad(true);
          Tensor w = affine ? rnd({s[1]}, rng) : Tensor();
          Tensor b = affine ? rnd({s[1]}, rng) : Tensor();
          Tensor rm = Tensor::randn({s[1]}, rng, 0.1);
          Tensor rv = Tensor::uniform({s[1]}, rng, 0.5, 1.5);
          Tensor rm_c = rm.to(Device::CUDA), rv_c = rv.to(Device::CUDA);
          Tensor rm_h = rm.clone(), rv_h = rv.clone();
          check_op(
              "batch_norm",
              [&](const std::vector<Tensor>& v) {
                const bool cu = v[0].is_cuda();
                return batch_norm(v[0], v[1], v[2], cu ? rm_c : rm_h, cu ? rv_c : rv_h, training, 0.1, 1e-5);
              },
              {x, w, b}, 1e-4, 1e-3);
          expect_close(rm_c, rm_h, 1e-5, "running_mean");
          expect_close(rv_c, rv_h, 1e-5, "running_var");
        }
      }
}

TEST_CASE("cuda batch_norm: gradient for the parameters only (null grad-input)", "[cuda][bn]") {
  DL_REQUIRE_GPU_OR_SKIP();
  for (bool training : {true, false}) {
    DYNAMIC_SECTION("batch_norm params-only training=" << training << " 2x7x5x6") {
      Rng rng(9);
      Tensor x = rnd({2, 7, 5, 6}, rng, false);
      Tensor w = rnd({7}, rng), b = rnd({7}, rng);
      Tensor rm = Tensor::zeros({7}), rv = Tensor::ones({7});
      Tensor rm_c = rm.to(Device::CUDA), rv_c = rv.to(Device::CUDA);
      check_op(
          "batch_norm params-only",
          [&](const std::vector<Tensor>& v) {
            const bool cu = v[0].is_cuda();
            return batch_norm(v[0], v[1], v[2], cu ? rm_c : rm, cu ? rv_c : rv, training, 0.1, 1e-5);
          },
          {x, w, b}, 1e-4, 1e-3);
    }
  }
}

TEST_CASE("cuda elementwise vs cpu", "[cuda][elementwise]") {
  DL_REQUIRE_GPU_OR_SKIP();
  const Shape shapes[] = {{1}, {3, 5, 7}, {2, 3, 33, 17}, {1, 7, 91, 91}};
  for (const auto& s : shapes) {
    DYNAMIC_SECTION("elementwise " << shape_str(s)) {
      Rng rng{uint64_t(shape_numel(s))};
      Tensor x = rnd(s, rng, true, 4.0), y = rnd(s, rng);
      check_op("relu", [](const std::vector<Tensor>& v) { return relu(v[0]); }, {x});
      check_op("relu6", [](const std::vector<Tensor>& v) { return relu6(v[0]); }, {x});
      check_op("sigmoid", [](const std::vector<Tensor>& v) { return sigmoid(v[0]); }, {x});
      check_op("add", [](const std::vector<Tensor>& v) { return add(v[0], v[1]); }, {x, y});
      check_op("sub", [](const std::vector<Tensor>& v) { return sub(v[0], v[1]); }, {x, y});
      check_op("mul", [](const std::vector<Tensor>& v) { return mul(v[0], v[1]); }, {x, y});
      check_op("scale", [](const std::vector<Tensor>& v) { return scale(v[0], -0.37); }, {x});
      check_op(
          "sum", [](const std::vector<Tensor>& v) { return sum(v[0]); }, {x}, 1e-4);
      check_op(
          "mean", [](const std::vector<Tensor>& v) { return mean(v[0]); }, {x}, 1e-4);
    }
  }
}

TEST_CASE("cuda sum is deterministic and exact on a large input", "[cuda][elementwise]") {
  DL_REQUIRE_GPU_OR_SKIP();
  Rng rng(4);
  Tensor x = Tensor::uniform({3, 1000, 1001}, rng, -1.0, 1.0).to(Device::CUDA);
  const double a = sum(x).item(), b = sum(x).item();
  REQUIRE(a == b);
  const double ref = cpu::sum_all(x.to(Device::CPU).data<float>(), x.numel());
  INFO("cuda " << a << " cpu (double) " << ref);
  REQUIRE(std::fabs(a - ref) <= 1e-3 * std::max(1.0, std::fabs(ref)));
  Tensor empty = Tensor::zeros({0}, DType::F32, Device::CUDA);
  REQUIRE(sum(empty).item() == 0.0);
}

TEST_CASE("cuda axpy and add_inplace vs cpu", "[cuda][elementwise]") {
  DL_REQUIRE_GPU_OR_SKIP();
  Rng rng(6);
  Tensor y = Tensor::randn({5, 77}, rng), x = Tensor::randn({5, 77}, rng);
  Tensor yc = y.to(Device::CUDA), xc = x.to(Device::CUDA);
  axpy_inplace(y, -0.75, x);
  axpy_inplace(yc, -0.75, xc);
  expect_close(yc, y, 1e-6, "axpy");
  add_inplace(y, x);
  add_inplace(yc, xc);
  expect_close(yc, y, 1e-6, "add_inplace");
  Tensor f = Tensor::full({3, 4}, 2.5, DType::F32, Device::CUDA);
  for (float v : f.to_vector<float>()) REQUIRE(v == 2.5f);
}

TEST_CASE("cuda global_avg_pool vs cpu", "[cuda][pool]") {
  DL_REQUIRE_GPU_OR_SKIP();
  const Shape shapes[] = {{2, 3, 5, 7}, {1, 256, 23, 23}, {3, 2, 1, 1}, {1, 4, 91, 91}};
  for (const auto& s : shapes) {
    DYNAMIC_SECTION("global_avg_pool " << shape_str(s)) {
      Rng rng{uint64_t(s[1])};
      check_op("global_avg_pool", [](const std::vector<Tensor>& v) { return global_avg_pool(v[0]); },
               {rnd(s, rng)});
    }
  }
}

TEST_CASE("cuda shape ops vs cpu: concat, slice, pad, crop, reshape", "[cuda][shuffle]") {
  DL_REQUIRE_GPU_OR_SKIP();
  Rng rng(8);
  Tensor a = rnd({2, 3, 5, 7}, rng), b = rnd({2, 4, 5, 7}, rng), c = rnd({2, 1, 5, 7}, rng);
  check_op("concat dim 1", [](const std::vector<Tensor>& v) { return concat(v, 1); }, {a, b, c});
  Tensor d = rnd({2, 3, 5, 2}, rng);
  check_op("concat dim 3", [](const std::vector<Tensor>& v) { return concat(v, 3); }, {a, d});
  check_op("concat dim 0", [](const std::vector<Tensor>& v) { return concat(v, 0); },
           {a, a.detach().clone()});
  check_op("slice dim 1", [](const std::vector<Tensor>& v) { return slice(v[0], 1, 1, 3); }, {b});
  check_op("slice dim 3", [](const std::vector<Tensor>& v) { return slice(v[0], 3, 2, 5); }, {a});
  check_op("pad2d", [](const std::vector<Tensor>& v) { return pad2d(v[0], 1, 2, 3, 0); }, {a});
  check_op("crop2d", [](const std::vector<Tensor>& v) { return crop2d(v[0], 1, 2, 3, 4); }, {a});
  check_op("reshape", [](const std::vector<Tensor>& v) { return relu(reshape(v[0], {6, 35})); }, {a});
}

TEST_CASE("cuda space_to_depth / depth_to_space vs cpu (TensorFlow channel order)", "[cuda][shuffle]") {
  DL_REQUIRE_GPU_OR_SKIP();
  struct Case {
    int64_t n, c, h, w, b;
  };
  const Case cases[] = {
      {1, 3, 8, 12, 2}, {2, 5, 12, 8, 4}, {1, 32, 36, 36, 4}, {1, 2, 6, 9, 3}, {1, 3, 4, 4, 1}};
  for (const auto& k : cases) {
    DYNAMIC_SECTION("space_to_depth b=" << k.b << " " << k.n << "x" << k.c << "x" << k.h << "x" << k.w) {
      Rng rng(uint64_t(k.c * 17 + k.b));
      const int64_t b = k.b;
      check_op("space_to_depth", [b](const std::vector<Tensor>& v) { return space_to_depth(v[0], b); },
               {rnd({k.n, k.c, k.h, k.w}, rng)});
      check_op("depth_to_space", [b](const std::vector<Tensor>& v) { return depth_to_space(v[0], b); },
               {rnd({k.n, k.c * b * b, k.h / b, k.w / b}, rng)});
      // Round trip is exact.
      Tensor x = Tensor::randn({k.n, k.c, k.h, k.w}, rng).to(Device::CUDA);
      Tensor back = depth_to_space(space_to_depth(x, b), b);
      REQUIRE(back.to_vector<float>() == x.to_vector<float>());
    }
  }
}

TEST_CASE("cuda resize_bilinear vs cpu", "[cuda][resize]") {
  DL_REQUIRE_GPU_OR_SKIP();
  struct Case {
    int64_t n, c, h, w, oh, ow;
  };
  const Case cases[] = {{1, 2, 5, 7, 17, 25}, {2, 3, 23, 23, 91, 91},  {1, 2, 91, 91, 23, 23},
                        {1, 3, 9, 13, 9, 13}, {1, 2, 1, 1, 4, 5},      {1, 2, 6, 7, 1, 1},
                        {1, 1, 7, 5, 3, 11},  {1, 2, 46, 46, 181, 181}};
  for (const auto& k : cases)
    for (bool ac : {false, true}) {
      DYNAMIC_SECTION("resize_bilinear " << k.h << "x" << k.w << " -> " << k.oh << "x" << k.ow
                                         << " align_corners=" << ac) {
        Rng rng(uint64_t(k.h * k.oh + ac));
        const int64_t oh = k.oh, ow = k.ow;
        check_op(
            "resize_bilinear",
            [=](const std::vector<Tensor>& v) { return resize_bilinear(v[0], oh, ow, ac); },
            {rnd({k.n, k.c, k.h, k.w}, rng)}, 1e-4, 1e-4);
      }
    }
}

TEST_CASE("cuda launchers leave guard elements untouched", "[cuda][guards]") {
  DL_REQUIRE_GPU_OR_SKIP();
  cuda::set_tf32(false);
  cudaStream_t s = cuda::stream();
  Rng rng(12);
  SECTION("depthwise fwd / bwd_input / bwd_weight k=7 s=1 and s=2, 1x5x19x23") {
    for (int64_t stride : {1, 2}) {
      Tensor x = Tensor::randn({1, 5, 19, 23}, rng), w = Tensor::randn({5, 1, 7, 7}, rng);
      const ConvGeom g = conv_geometry(x.shape(), w.shape(), Conv2dOptions::same(7, stride, 1, 5));
      Tensor xc = x.to(Device::CUDA), wc = w.to(Device::CUDA);
      Guarded y(g.n * g.c_out * g.h_out * g.w_out);
      cuda::conv2d_fwd(y.data(), xc.data<float>(), wc.data<float>(), nullptr, g, s);
      y.check_guards("depthwise fwd");
      Tensor yr = Tensor::empty({g.n, g.c_out, g.h_out, g.w_out});
      cpu::conv2d_fwd(yr.data<float>(), x.data<float>(), w.data<float>(), (const float*)nullptr, g);
      expect_close(y.get(), flat(yr), 1e-4, "depthwise fwd");
      Tensor gy = Tensor::randn({g.n, g.c_out, g.h_out, g.w_out}, rng), gyc = gy.to(Device::CUDA);
      Guarded gx(x.numel()), gw(w.numel());
      cuda::conv2d_bwd_input(gx.data(), gyc.data<float>(), wc.data<float>(), g, s);
      cuda::conv2d_bwd_weight(gw.data(), gyc.data<float>(), xc.data<float>(), g, s);
      gx.check_guards("depthwise bwd_input");
      gw.check_guards("depthwise bwd_weight");
      Tensor gxr = Tensor::empty(x.shape()), gwr = Tensor::empty(w.shape());
      cpu::conv2d_bwd_input(gxr.data<float>(), gy.data<float>(), w.data<float>(), g);
      cpu::conv2d_bwd_weight(gwr.data<float>(), gy.data<float>(), x.data<float>(), g);
      expect_close(gx.get(), flat(gxr), 1e-4, "depthwise bwd_input");
      expect_close(gw.get(), flat(gwr), 1e-3, "depthwise bwd_weight");
      // Deterministic: a second run is bitwise identical.
      Guarded gw2(w.numel());
      cuda::conv2d_bwd_weight(gw2.data(), gyc.data<float>(), xc.data<float>(), g, s);
      REQUIRE(gw2.get().to_vector<float>() == gw.get().to_vector<float>());
    }
  }
  SECTION("dense conv fwd / bwd with bias, 2x3x9x10 -> 4, k=3 s=2") {
    Tensor x = Tensor::randn({2, 3, 9, 10}, rng), w = Tensor::randn({4, 3, 3, 3}, rng),
           b = Tensor::randn({4}, rng);
    const ConvGeom g = conv_geometry(x.shape(), w.shape(), Conv2dOptions::same(3, 2, 1, 1));
    Tensor xc = x.to(Device::CUDA), wc = w.to(Device::CUDA), bc = b.to(Device::CUDA);
    Guarded y(g.n * g.c_out * g.h_out * g.w_out), gb(4), gx(x.numel()), gw(w.numel());
    cuda::conv2d_fwd(y.data(), xc.data<float>(), wc.data<float>(), bc.data<float>(), g, s);
    Tensor gy = Tensor::randn({g.n, g.c_out, g.h_out, g.w_out}, rng), gyc = gy.to(Device::CUDA);
    cuda::conv2d_bwd_bias(gb.data(), gyc.data<float>(), g, s);
    cuda::conv2d_bwd_input(gx.data(), gyc.data<float>(), wc.data<float>(), g, s);
    cuda::conv2d_bwd_weight(gw.data(), gyc.data<float>(), xc.data<float>(), g, s);
    for (auto* t : {&y, &gb, &gx, &gw}) t->check_guards("dense conv");
    Tensor yr = Tensor::empty({g.n, g.c_out, g.h_out, g.w_out}), gbr = Tensor::empty({4});
    cpu::conv2d_fwd(yr.data<float>(), x.data<float>(), w.data<float>(), b.data<float>(), g);
    cpu::conv2d_bwd_bias(gbr.data<float>(), gy.data<float>(), g);
    expect_close(y.get(), flat(yr), 1e-4, "dense fwd");
    expect_close(gb.get(), gbr, 1e-5, "dense bias grad");
  }
  SECTION("batch_norm stats / fwd / bwd, 2x6x5x7") {
    const int64_t n = 2, c = 6, hw = 35;
    Tensor x = Tensor::randn({n, c, 5, 7}, rng), gy = Tensor::randn({n, c, 5, 7}, rng);
    Tensor w = Tensor::randn({c}, rng), b = Tensor::randn({c}, rng);
    Tensor xc = x.to(Device::CUDA), gyc = gy.to(Device::CUDA), wc = w.to(Device::CUDA),
           bc = b.to(Device::CUDA);
    Guarded mean(c), var(c), invstd(c), y(x.numel()), gx(x.numel()), gw(c), gb(c);
    cuda::batch_norm_stats(mean.data(), var.data(), xc.data<float>(), n, c, hw, s);
    cuda::batch_norm_invstd(invstd.data(), var.data(), c, 1e-5f, s);
    cuda::batch_norm_fwd(y.data(), xc.data<float>(), mean.data(), invstd.data(), wc.data<float>(),
                         bc.data<float>(), n, c, hw, s);
    cuda::batch_norm_bwd_train(gx.data(), gw.data(), gb.data(), gyc.data<float>(), xc.data<float>(),
                               mean.data(), invstd.data(), wc.data<float>(), n, c, hw, s);
    for (auto* t : {&mean, &var, &invstd, &y, &gx, &gw, &gb}) t->check_guards("batch_norm");
    Tensor mr = Tensor::empty({c}), vr = Tensor::empty({c});
    cpu::batch_norm_stats(mr.data<float>(), vr.data<float>(), x.data<float>(), n, c, hw);
    expect_close(mean.get(), mr, 1e-5, "bn mean");
    expect_close(var.get(), vr, 1e-5, "bn var");
    // Eval backward with every output null except gb.
    Guarded gb2(c);
    cuda::batch_norm_bwd_eval(nullptr, nullptr, gb2.data(), gyc.data<float>(), xc.data<float>(), mean.data(),
                              invstd.data(), nullptr, n, c, hw, s);
    gb2.check_guards("batch_norm eval gb");
    expect_close(gb2.get(), gb.get(), 1e-6, "bn eval gb vs train gb");
  }
  SECTION("shuffle kernels: s2d / d2s / crop / pad / copy_columns (1 and 4 byte elements)") {
    Tensor x = Tensor::randn({1, 3, 8, 12}, rng), xc = x.to(Device::CUDA);
    Guarded s2d(x.numel()), d2s(x.numel()), crop(3 * 5 * 6), pad(3 * 11 * 15);
    cuda::space_to_depth_fwd(s2d.data(), xc.data<float>(), 1, 3, 8, 12, 2, s);
    cuda::depth_to_space_fwd(d2s.data(), s2d.data(), 1, 12, 4, 6, 2, s);
    cuda::crop2d_fwd(crop.data(), xc.data<float>(), 3, 8, 12, 2, 3, 5, 6, s);
    cuda::pad2d_fwd(pad.data(), xc.data<float>(), 3, 8, 12, 1, 2, 11, 15, s);
    for (auto* t : {&s2d, &d2s, &crop, &pad}) t->check_guards("shuffle");
    Tensor r = Tensor::empty({x.numel()});
    cpu::space_to_depth_fwd(r.data<float>(), x.data<float>(), 1, 3, 8, 12, 2);
    REQUIRE(s2d.get().to_vector<float>() == r.to_vector<float>());
    REQUIRE(d2s.get().to_vector<float>() == flat(x).to_vector<float>());
    Tensor pr = Tensor::empty({3 * 11 * 15});
    cpu::pad2d_fwd(pr.data<float>(), x.data<float>(), 3, 8, 12, 1, 2, 11, 15);
    REQUIRE(pad.get().to_vector<float>() == pr.to_vector<float>());
    // copy_columns on bytes: (4, 5) into columns [3, 8) of (4, 11), then back out.
    std::vector<uint8_t> src(20), big(44, 7);
    for (size_t i = 0; i < src.size(); ++i) src[i] = uint8_t(i * 13 + 1);
    Tensor srcc = Tensor::from_vector(src, {20}, Device::CUDA);
    Tensor bigc = Tensor::from_vector(std::vector<uint8_t>(44 + 2 * 16, 7), {44 + 32}, Device::CUDA);
    cuda::copy_columns(static_cast<uint8_t*>(bigc.raw_data()) + 16, srcc.raw_data(), 4, 11, 5, 3, true, 1, s);
    cpu::copy_columns(big.data(), src.data(), 4, 11, 5, 3, true);
    auto got = bigc.to_vector<uint8_t>();
    for (int i = 0; i < 16; ++i) REQUIRE((got[i] == 7 && got[16 + 44 + i] == 7));
    REQUIRE(std::vector<uint8_t>(got.begin() + 16, got.begin() + 60) == big);
    Tensor outc = Tensor::zeros({20}, DType::U8, Device::CUDA);
    cuda::copy_columns(outc.raw_data(), static_cast<uint8_t*>(bigc.raw_data()) + 16, 4, 11, 5, 3, false, 1,
                       s);
    REQUIRE(outc.to_vector<uint8_t>() == src);
    // 4-byte integers through concat / slice.
    Tensor ia = Tensor::from_vector(std::vector<int32_t>{1, 2, 3, 4, 5, 6}, {2, 3}, Device::CUDA);
    Tensor ib = Tensor::from_vector(std::vector<int32_t>{7, 8}, {2, 1}, Device::CUDA);
    REQUIRE(concat({ia, ib}, 1).to_vector<int32_t>() == std::vector<int32_t>{1, 2, 3, 7, 4, 5, 6, 8});
    REQUIRE(slice(ia, 1, 1, 3).to_vector<int32_t>() == std::vector<int32_t>{2, 3, 5, 6});
  }
  SECTION("resize, pool and sum launchers") {
    Tensor x = Tensor::randn({2, 3, 7, 9}, rng), xc = x.to(Device::CUDA);
    Guarded y(2 * 3 * 15 * 4), gx(x.numel()), pool(6), total(1);
    cuda::resize_bilinear_fwd(y.data(), xc.data<float>(), 6, 7, 9, 15, 4, false, s);
    Tensor gy = Tensor::randn({2 * 3 * 15 * 4}, rng), gyc = gy.to(Device::CUDA);
    cuda::resize_bilinear_bwd(gx.data(), gyc.data<float>(), 6, 7, 9, 15, 4, false, s);
    cuda::global_avg_pool_fwd(pool.data(), xc.data<float>(), 6, 63, s);
    cuda::sum_all(total.data(), xc.data<float>(), x.numel(), s);
    for (auto* t : {&y, &gx, &pool, &total}) t->check_guards("resize/pool/sum");
    Tensor gxr = Tensor::empty({x.numel()});
    cpu::resize_bilinear_bwd(gxr.data<float>(), gy.data<float>(), 6, 7, 9, 15, 4, false);
    expect_close(gx.get(), gxr, 1e-4, "resize bwd");
  }
}

TEST_CASE("cuda ops reject mixed-device inputs with a clear error", "[cuda][errors]") {
  DL_REQUIRE_GPU_OR_SKIP();
  Tensor xc = Tensor::zeros({1, 2, 5, 5}, DType::F32, Device::CUDA);
  Tensor w = Tensor::zeros({2, 1, 3, 3});
  try {
    conv2d(xc, w, Tensor(), Conv2dOptions::same(3, 1, 1, 2));
    FAIL("mixed-device conv2d did not throw");
  } catch (const Error& e) {
    INFO(e.what());
    REQUIRE(std::string(e.what()).find("different devices") != std::string::npos);
  }
  REQUIRE_THROWS_AS(add(xc, Tensor::zeros({1, 2, 5, 5})), Error);
  REQUIRE_THROWS_AS(concat({xc, Tensor::zeros({1, 2, 5, 5})}, 1), Error);
}

#endif  // DEEPERLAB_WITH_CUDA
