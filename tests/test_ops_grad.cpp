// Every core op: forward on known values where it matters, and the gradient against central finite
// differences in float64 on odd shapes.
#include "tests/testing.h"

using namespace dl;
using dl::testing::gradcheck;
using dl::testing::param;

TEST_CASE("conv2d gradients over groups, stride, dilation, padding", "[ops][conv]") {
  struct Case { int64_t n, cin, h, w, cout, k, stride, dil, groups; bool bias; };
  const Case cases[] = {
      {2, 3, 7, 6, 4, 3, 1, 1, 1, true},   // dense 3x3
      {1, 4, 9, 7, 5, 3, 2, 1, 1, false},  // dense stride 2
      {1, 3, 8, 9, 2, 1, 1, 1, 1, true},   // pointwise
      {2, 4, 9, 8, 4, 3, 1, 2, 4, false},  // depthwise dilation 2
      {1, 3, 11, 10, 3, 5, 2, 1, 3, false},  // depthwise 5x5 stride 2
      {1, 2, 10, 9, 2, 7, 1, 1, 2, false},   // depthwise 7x7
      {1, 4, 7, 7, 6, 3, 1, 1, 2, true},   // grouped
  };
  for (const auto& c : cases) {
    DYNAMIC_SECTION("conv k=" << c.k << " s=" << c.stride << " d=" << c.dil << " g=" << c.groups << " " << c.h
                              << "x" << c.w) {
      Rng rng(1);
      Tensor x = param({c.n, c.cin, c.h, c.w}, rng);
      Tensor w = param({c.cout, c.cin / c.groups, c.k, c.k}, rng, 0.5);
      Tensor b = c.bias ? param({c.cout}, rng) : Tensor();
      auto opt = Conv2dOptions::same(c.k, c.stride, c.dil, c.groups);
      std::vector<Tensor> in{x, w};
      if (c.bias) in.push_back(b);
      gradcheck([&](const std::vector<Tensor>& v) { return conv2d(v[0], v[1], v.size() > 2 ? v[2] : Tensor(), opt); },
                in);
    }
  }
}

TEST_CASE("conv2d 'same' padding gives exact strides on 16k+1 sizes", "[ops][conv]") {
  Rng rng(2);
  Tensor x = Tensor::randn({1, 2, 17, 33}, rng);
  Tensor w = Tensor::randn({2, 1, 3, 3}, rng);
  Tensor y = conv2d(x, w, Tensor(), Conv2dOptions::same(3, 2, 1, 2));
  REQUIRE(y.shape() == Shape{1, 2, 9, 17});
  Tensor y2 = conv2d(x, w, Tensor(), Conv2dOptions::same(3, 1, 6, 2));
  REQUIRE(y2.shape() == Shape{1, 2, 17, 33});
}

TEST_CASE("batch_norm gradients, train and eval", "[ops][bn]") {
  for (bool training : {true, false}) {
    DYNAMIC_SECTION("batch_norm training=" << training << " 3x4x5x3") {
      Rng rng(3);
      Tensor x = param({3, 4, 5, 3}, rng);
      Tensor w = param({4}, rng);
      Tensor b = param({4}, rng);
      Tensor rm = Tensor::randn({4}, rng, 0.1, DType::F64);
      Tensor rv = Tensor::uniform({4}, rng, 0.5, 1.5, DType::F64);
      gradcheck(
          [&](const std::vector<Tensor>& v) {
            // Fresh running stats each call so the objective does not drift.
            return batch_norm(v[0], v[1], v[2], rm.clone(), rv.clone(), training, 0.1, 1e-3);
          },
          {x, w, b}, 1e-6, 1e-5);
    }
  }
}

TEST_CASE("batch_norm train normalises with batch stats and updates running stats", "[ops][bn]") {
  Rng rng(4);
  Tensor x = Tensor::randn({4, 3, 5, 6}, rng, 2.0, DType::F64);
  Tensor rm = Tensor::zeros({3}, DType::F64), rv = Tensor::ones({3}, DType::F64);
  Tensor y = batch_norm(x, Tensor(), Tensor(), rm, rv, true, 0.1, 1e-3);
  auto xv = x.to_vector<double>(), yv = y.to_vector<double>();
  for (int c = 0; c < 3; ++c) {
    double s = 0, s2 = 0, ys = 0;
    int cnt = 0;
    for (int n = 0; n < 4; ++n)
      for (int j = 0; j < 30; ++j) {
        double v = xv[(n * 3 + c) * 30 + j];
        s += v;
        s2 += v * v;
        ys += yv[(n * 3 + c) * 30 + j];
        ++cnt;
      }
    double m = s / cnt, var = s2 / cnt - m * m;
    REQUIRE(std::fabs(ys / cnt) < 1e-9);  // normalised output has zero mean
    REQUIRE(rm.to_vector<double>()[c] == Approx(0.1 * m).epsilon(1e-9));
    REQUIRE(rv.to_vector<double>()[c] == Approx(0.9 + 0.1 * var * cnt / (cnt - 1)).epsilon(1e-9));
  }
  // Eval uses the running stats and leaves them alone.
  Tensor rm2 = rm.clone(), rv2 = rv.clone();
  Tensor ye = batch_norm(x, Tensor(), Tensor(), rm, rv, false, 0.1, 1e-3);
  REQUIRE(rm.to_vector<double>() == rm2.to_vector<double>());
  double want = (xv[0] - rm2.to_vector<double>()[0]) / std::sqrt(rv2.to_vector<double>()[0] + 1e-3);
  REQUIRE(ye.to_vector<double>()[0] == Approx(want).epsilon(1e-12));
}

TEST_CASE("batch_norm refuses one value per channel in training", "[ops][bn]") {
  Tensor x = Tensor::zeros({1, 3, 1, 1}, DType::F64);
  Tensor rm = Tensor::zeros({3}, DType::F64), rv = Tensor::ones({3}, DType::F64);
  REQUIRE_THROWS_WITH(batch_norm(x, Tensor(), Tensor(), rm, rv, true, 0.1, 1e-3),
                      Catch::Contains("more than 1 value per channel"));
}

TEST_CASE("elementwise gradients", "[ops][elementwise]") {
  Rng rng(5);
  Tensor a = param({2, 3, 5, 7}, rng, 3.0);
  Tensor b = param({2, 3, 5, 7}, rng);
  // Keep relu/relu6 inputs away from the kinks so finite differences are valid.
  {
    double* p = a.data<double>();
    for (int64_t i = 0; i < a.numel(); ++i)
      for (double kink : {0.0, 6.0})
        if (std::fabs(p[i] - kink) < 1e-3) p[i] += 0.01;
  }
  SECTION("relu") { gradcheck([](const std::vector<Tensor>& v) { return relu(v[0]); }, {a}); }
  SECTION("relu6") { gradcheck([](const std::vector<Tensor>& v) { return relu6(v[0]); }, {a}); }
  SECTION("sigmoid") { gradcheck([](const std::vector<Tensor>& v) { return sigmoid(v[0]); }, {a}); }
  SECTION("add") { gradcheck([](const std::vector<Tensor>& v) { return add(v[0], v[1]); }, {a, b}); }
  SECTION("sub") { gradcheck([](const std::vector<Tensor>& v) { return sub(v[0], v[1]); }, {a, b}); }
  SECTION("mul") { gradcheck([](const std::vector<Tensor>& v) { return mul(v[0], v[1]); }, {a, b}); }
  SECTION("scale") { gradcheck([](const std::vector<Tensor>& v) { return scale(v[0], -2.5); }, {a}); }
  SECTION("sum") { gradcheck([](const std::vector<Tensor>& v) { return sum(v[0]); }, {a}); }
  SECTION("mean") { gradcheck([](const std::vector<Tensor>& v) { return mean(v[0]); }, {a}); }
  SECTION("global_avg_pool") { gradcheck([](const std::vector<Tensor>& v) { return global_avg_pool(v[0]); }, {a}); }
}

TEST_CASE("relu6 clamps and sigmoid is stable on the tails", "[ops][elementwise]") {
  Tensor x = Tensor::from_vector<float>({-3.f, 0.5f, 7.f, -1000.f, 1000.f}, {5});
  auto r6 = relu6(x).to_vector<float>();
  REQUIRE(r6 == std::vector<float>{0.f, 0.5f, 6.f, 0.f, 6.f});
  auto s = sigmoid(x).to_vector<float>();
  REQUIRE(s[3] == 0.f);
  REQUIRE(s[4] == 1.f);
}

TEST_CASE("shape op gradients", "[ops][shape]") {
  Rng rng(6);
  Tensor a = param({2, 3, 5, 7}, rng);
  Tensor b = param({2, 2, 5, 7}, rng);
  SECTION("concat dim 1") { gradcheck([](const std::vector<Tensor>& v) { return concat({v[0], v[1]}, 1); }, {a, b}); }
  SECTION("slice dim 3") { gradcheck([](const std::vector<Tensor>& v) { return slice(v[0], 3, 2, 6); }, {a}); }
  SECTION("pad2d") { gradcheck([](const std::vector<Tensor>& v) { return pad2d(v[0], 1, 3, 0, 2); }, {a}); }
  SECTION("crop2d") { gradcheck([](const std::vector<Tensor>& v) { return crop2d(v[0], 1, 2, 3, 4); }, {a}); }
  SECTION("reshape") { gradcheck([](const std::vector<Tensor>& v) { return reshape(v[0], {6, -1}); }, {a}); }
  SECTION("space_to_depth b=2 on 2x3x6x4") {
    Tensor c = param({2, 3, 6, 4}, rng);
    gradcheck([](const std::vector<Tensor>& v) { return space_to_depth(v[0], 2); }, {c});
  }
  SECTION("depth_to_space b=2 on 1x8x3x5") {
    Tensor c = param({1, 8, 3, 5}, rng);
    gradcheck([](const std::vector<Tensor>& v) { return depth_to_space(v[0], 2); }, {c});
  }
}

TEST_CASE("space_to_depth uses TensorFlow's channel order and depth_to_space inverts it", "[ops][shape]") {
  // x[0, c, y, x] = 100 c + 10 y + x with C = 2, 4x4, block 2.
  std::vector<double> v;
  for (int c = 0; c < 2; ++c)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 4; ++x) v.push_back(100 * c + 10 * y + x);
  Tensor x = Tensor::from_vector(v, {1, 2, 4, 4});
  Tensor s = space_to_depth(x, 2);
  REQUIRE(s.shape() == Shape{1, 8, 2, 2});
  auto sv = s.to_vector<double>();
  // out_c = (dy * b + dx) * C + c; out[0, out_c, Y, X] = x[c, 2Y + dy, 2X + dx]
  for (int dy = 0; dy < 2; ++dy)
    for (int dx = 0; dx < 2; ++dx)
      for (int c = 0; c < 2; ++c)
        for (int Y = 0; Y < 2; ++Y)
          for (int X = 0; X < 2; ++X) {
            int oc = (dy * 2 + dx) * 2 + c;
            REQUIRE(sv[(oc * 2 + Y) * 2 + X] == 100 * c + 10 * (2 * Y + dy) + (2 * X + dx));
          }
  Rng rng(8);
  Tensor r = Tensor::randn({2, 3, 8, 12}, rng);
  for (int b : {1, 2, 4})
    REQUIRE(depth_to_space(space_to_depth(r, b), b).to_vector<float>() == r.to_vector<float>());
}

TEST_CASE("resize_bilinear gradients and values", "[ops][resize]") {
  Rng rng(9);
  for (bool ac : {true, false}) {
    DYNAMIC_SECTION("resize align_corners=" << ac) {
      Tensor a = param({2, 2, 5, 7}, rng);
      gradcheck([ac](const std::vector<Tensor>& v) { return resize_bilinear(v[0], 17, 9, ac); }, {a});
      gradcheck([ac](const std::vector<Tensor>& v) { return resize_bilinear(v[0], 3, 4, ac); }, {a});
    }
  }
  // align_corners=true maps corners to corners: 2x2 -> 3x3 gives the midpoints.
  Tensor x = Tensor::from_vector<double>({0, 2, 4, 6}, {1, 1, 2, 2});
  auto y = resize_bilinear(x, 3, 3, true).to_vector<double>();
  REQUIRE(y == std::vector<double>{0, 1, 2, 2, 3, 4, 4, 5, 6});
  // align_corners=false, 2x -> pixel centres at (o + 0.5) / 2 - 0.5.
  Tensor x1 = Tensor::from_vector<double>({0, 4}, {1, 1, 1, 2});
  auto y1 = resize_bilinear(x1, 1, 4, false).to_vector<double>();
  REQUIRE(y1 == std::vector<double>{0, 1, 3, 4});
}

TEST_CASE("op errors name the op and the shapes", "[ops][errors]") {
  Tensor a = Tensor::zeros({1, 3, 4, 4});
  Tensor b = Tensor::zeros({1, 2, 4, 4});
  REQUIRE_THROWS_WITH(add(a, b), Catch::Contains("add") && Catch::Contains("[1, 3, 4, 4]") &&
                                     Catch::Contains("[1, 2, 4, 4]"));
  Tensor w = Tensor::zeros({4, 2, 3, 3});
  REQUIRE_THROWS_WITH(conv2d(a, w, Tensor(), Conv2dOptions{}), Catch::Contains("conv2d") &&
                                                                   Catch::Contains("[4, 2, 3, 3]"));
  REQUIRE_THROWS_WITH(add(a, a.to(DType::F64)), Catch::Contains("dtypes differ"));
  REQUIRE_THROWS_WITH(relu(Tensor::zeros({2}, DType::I32)), Catch::Contains("relu") && Catch::Contains("I32"));
  REQUIRE_THROWS_WITH(space_to_depth(Tensor::zeros({1, 1, 5, 4}), 2), Catch::Contains("space_to_depth"));
  if (!cuda_available()) REQUIRE_THROWS_AS(Tensor::zeros({1}, DType::F32, Device::CUDA), Error);
}
