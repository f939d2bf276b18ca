// CUDA optimizer kernels against the CPU reference on odd shapes: SGD (plain, momentum,
// nesterov), AdamW, gradient norm and clipping, and state loading onto the device.
// Skips itself without a usable GPU.
#include <cmath>

#include "core/optim.h"
#include "tests/testing.h"

using namespace dl;
using namespace dl::testing;

namespace {

NamedTensors params_on(Device d, uint64_t seed) {
  Rng rng(seed);
  NamedTensors ps = {{"a", Tensor::randn({3, 5, 7}, rng)},
                     {"b", Tensor::randn({1}, rng)},
                     {"c", Tensor::randn({257, 33}, rng)},
                     {"d", Tensor::randn({2, 3, 5, 5}, rng)}};
  for (auto& kv : ps) kv.second = kv.second.to(d);
  return ps;
}

void set_grads(const NamedTensors& ps, int k) {
  Rng rng(500 + k);
  for (auto [n, p] : ps) p.set_grad(Tensor::randn(p.shape(), rng, 0.7).to(p.device()));
}

// |gpu - cpu| <= 1e-6 + 1e-5 |cpu|: the GPU contracts a * b + c into FMAs, so values that cancel
// to near zero differ from the CPU by an ulp of the operands, not of the result.
void require_near(const Tensor& gpu, const Tensor& cpu, const std::string& what) {
  auto g = gpu.to(Device::CPU).to(DType::F64).to_vector<double>();
  auto c = cpu.to(Device::CPU).to(DType::F64).to_vector<double>();
  REQUIRE(g.size() == c.size());
  double worst = 0;
  int64_t wi = -1;
  for (size_t i = 0; i < g.size(); ++i) {
    const double excess = std::fabs(g[i] - c[i]) - (1e-6 + 1e-5 * std::fabs(c[i]));
    if (std::isnan(g[i]) || excess > worst) {
      worst = std::isnan(g[i]) ? 1e30 : excess;
      wi = int64_t(i);
    }
  }
  INFO(what << ": worst element " << wi
            << (wi >= 0 ? " gpu " + std::to_string(g[wi]) + " cpu " + std::to_string(c[wi]) : ""));
  REQUIRE(wi == -1);
}

template <class Make>
void compare_steps(const char* what, Make make) {
  NamedTensors cpu = params_on(Device::CPU, 3), gpu = params_on(Device::CUDA, 3);
  auto oc = make(cpu);
  auto og = make(gpu);
  for (int k = 0; k < 5; ++k) {
    oc->set_lr(poly_lr(0.05, k, 10, 0.9, 2));
    og->set_lr(poly_lr(0.05, k, 10, 0.9, 2));
    set_grads(cpu, k);
    set_grads(gpu, k);
    oc->step();
    og->step();
  }
  for (size_t i = 0; i < cpu.size(); ++i) {
    require_near(gpu[i].second, cpu[i].second,
                 std::string(what) + " " + cpu[i].first + " " + cpu[i].second.shape_str());
  }
  auto sc = oc->state(), sg = og->state();
  REQUIRE(sc.size() == sg.size());
  for (size_t i = 0; i < sc.size(); ++i) {
    REQUIRE(sg[i].second.device() == (sc[i].second.dtype() == DType::I32 ? Device::CPU : Device::CUDA));
    require_near(sg[i].second, sc[i].second, std::string(what) + " state " + sc[i].first);
  }
  // The CPU state loads onto the GPU optimizer and the next step agrees again.
  og->load_state(sc);
  for (size_t i = 0; i < cpu.size(); ++i) gpu[i].second.copy_(cpu[i].second);
  set_grads(cpu, 9);
  set_grads(gpu, 9);
  oc->step();
  og->step();
  for (size_t i = 0; i < cpu.size(); ++i)
    require_near(gpu[i].second, cpu[i].second, std::string(what) + " resumed");
}

}  // namespace

TEST_CASE("cuda SGD momentum=0.9 nesterov wd=1e-3 vs cpu, shapes 3x5x7 1 257x33 2x3x5x5", "[cuda][optim]") {
  DL_REQUIRE_GPU_OR_SKIP();
  compare_steps("sgd nesterov", [](const NamedTensors& ps) {
    SGDOptions o;
    o.momentum = 0.9;
    o.nesterov = true;
    o.weight_decay = 1e-3;
    o.decay = decay_except_1d;
    return std::make_unique<SGD>(ps, o);
  });
  compare_steps("sgd dampening", [](const NamedTensors& ps) {
    SGDOptions o;
    o.momentum = 0.8;
    o.dampening = 0.25;
    return std::make_unique<SGD>(ps, o);
  });
  compare_steps("sgd plain", [](const NamedTensors& ps) {
    SGDOptions o;
    o.momentum = 0;
    o.weight_decay = 0.01;
    return std::make_unique<SGD>(ps, o);
  });
}

TEST_CASE("cuda AdamW wd=0.05 vs cpu, shapes 3x5x7 1 257x33 2x3x5x5", "[cuda][optim]") {
  DL_REQUIRE_GPU_OR_SKIP();
  compare_steps("adamw", [](const NamedTensors& ps) {
    AdamWOptions o;
    o.weight_decay = 0.05;
    o.decay = decay_except_1d;
    return std::make_unique<AdamW>(ps, o);
  });
}

TEST_CASE("cuda grad_norm and clip_grad_norm vs cpu, 1000003 + 3x5x7 elements", "[cuda][optim]") {
  DL_REQUIRE_GPU_OR_SKIP();
  Rng rng(8);
  NamedTensors cpu = {{"big", Tensor::zeros({1000003})}, {"small", Tensor::zeros({3, 5, 7})}};
  NamedTensors gpu;
  for (auto [n, p] : cpu) {
    p.set_grad(Tensor::randn(p.shape(), rng));
    Tensor g = p.to(Device::CUDA);
    g.set_grad(p.grad().to(Device::CUDA));
    gpu.emplace_back(n, g);
  }
  const double nc = grad_norm(cpu), ng = grad_norm(gpu);
  REQUIRE(ng == Approx(nc).epsilon(1e-12));
  REQUIRE(grad_norm(gpu) == ng);  // deterministic
  REQUIRE(clip_grad_norm(gpu, 10.0) == Approx(nc).epsilon(1e-12));
  clip_grad_norm(cpu, 10.0);
  for (size_t i = 0; i < cpu.size(); ++i)
    require_near(gpu[i].second.grad(), cpu[i].second.grad(), "clipped grad");
  REQUIRE(grad_norm(gpu) == Approx(10.0).epsilon(1e-5));
}
