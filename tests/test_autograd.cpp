// The autograd engine: accumulation for tensors used twice, NoGradGuard, leaf accumulation,
// saved-tensor release, error on a second backward.
#include <cstdlib>
#include <string>

#include "tests/testing.h"

using namespace dl;

TEST_CASE("a tensor used twice accumulates both gradients", "[autograd]") {
  Tensor x = Tensor::from_vector<double>({1, -2, 3}, {3});
  x.set_requires_grad(true);
  // y = sum(x * x + 3x) -> dy/dx = 2x + 3
  Tensor y = sum(add(mul(x, x), scale(x, 3.0)));
  y.backward();
  REQUIRE(x.grad().to_vector<double>() == std::vector<double>{5, -1, 9});
}

TEST_CASE("parameter gradients accumulate across backward calls", "[autograd]") {
  Tensor x = Tensor::from_vector<double>({1, 2}, {2});
  x.set_requires_grad(true);
  sum(scale(x, 2.0)).backward();
  sum(scale(x, 3.0)).backward();
  REQUIRE(x.grad().to_vector<double>() == std::vector<double>{5, 5});
  x.zero_grad();
  REQUIRE(!x.grad().defined());
}

TEST_CASE("NoGradGuard builds no nodes", "[autograd]") {
  Tensor x = Tensor::ones({2, 3, 4, 4});
  x.set_requires_grad(true);
  {
    NoGradGuard g;
    Tensor y = relu(add(x, x));
    REQUIRE(!y.requires_grad());
    REQUIRE(graph_size(y) == 0);
  }
  Tensor y = relu(add(x, x));
  REQUIRE(y.requires_grad());
  REQUIRE(graph_size(y) == 3);  // relu, add, accumulate
}

TEST_CASE("inputs that do not require grad get none", "[autograd]") {
  Tensor a = Tensor::from_vector<double>({1, 2}, {2});
  Tensor b = Tensor::from_vector<double>({3, 4}, {2});
  b.set_requires_grad(true);
  sum(mul(a, b)).backward();
  REQUIRE(!a.grad().defined());
  REQUIRE(b.grad().to_vector<double>() == std::vector<double>{1, 2});
}

TEST_CASE("a second backward through a released graph is an error", "[autograd]") {
  Tensor x = Tensor::from_vector<double>({1, 2}, {2});
  x.set_requires_grad(true);
  Tensor y = sum(mul(x, x));
  y.backward();
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("second time"));
}

TEST_CASE("backward on a tensor without history is an error", "[autograd]") {
  Tensor x = Tensor::ones({2});
  REQUIRE_THROWS_WITH(sum(x).backward(), Catch::Contains("does not require grad"));
}

TEST_CASE("saved tensors are released as backward runs", "[autograd]") {
  // A chain of 20 relu layers on a 1 MB tensor: after backward only the inputs and the grad remain.
  Tensor x = Tensor::ones({1, 1, 512, 512});
  x.set_requires_grad(true);
  const size_t before = memory_current(Device::CPU);
  {
    Tensor y = x;
    for (int i = 0; i < 20; ++i) y = relu(scale(y, 1.0));
    sum(y).backward();
  }
  const size_t after = memory_current(Device::CPU);
  REQUIRE(after - before <= x.nbytes() + 4096);  // only x.grad is new
}

TEST_CASE("views share storage", "[tensor]") {
  Tensor x = Tensor::zeros({2, 3});
  Tensor v = x.view({3, 2});
  v.data<float>()[5] = 7.f;
  REQUIRE(x.to_vector<float>()[5] == 7.f);
  Tensor s = x.select0(1);
  REQUIRE(s.shape() == Shape{3});
  REQUIRE(s.to_vector<float>()[2] == 7.f);
  REQUIRE_THROWS_WITH(x.view({4, 2}), Catch::Contains("does not match"));
  REQUIRE_THROWS_WITH(x.data<double>(), Catch::Contains("accessed as F64"));
}

TEST_CASE("cpu storage is 64-byte aligned and counted", "[tensor]") {
  const size_t before = memory_current(Device::CPU);
  {
    Tensor t = Tensor::empty({3, 5});
    REQUIRE(reinterpret_cast<uintptr_t>(t.raw_data()) % 64 == 0);
    REQUIRE(memory_current(Device::CPU) == before + 60);
    REQUIRE(memory_peak(Device::CPU) >= before + 60);
  }
  REQUIRE(memory_current(Device::CPU) == before);
}

TEST_CASE("inside a HostCacheScope big freed host blocks are reused by size and not counted", "[tensor]") {
  const HostCacheScope scope;
  const size_t before = memory_current(Device::CPU);
  Tensor held = Tensor::zeros({1024, 1024});  // 4 MiB live: the peak stays above what gets cached
  const void* first = nullptr;
  {
    Tensor a = Tensor::empty({512, 1024});  // 2 MiB
    first = a.raw_data();
    REQUIRE(reinterpret_cast<uintptr_t>(first) % 64 == 0);
  }
  REQUIRE(memory_current(Device::CPU) == before + (size_t(4) << 20));  // a cached block is not live
  {
    Tensor b = Tensor::ones({1024, 512});  // same byte size: the same block, and its contents are written
    const char* off = std::getenv("DEEPERLAB_HOST_CACHE");  // "0" turns the reuse off
    if (!(off && std::string(off) == "0")) REQUIRE(b.raw_data() == first);
    REQUIRE(b.to_vector<float>()[12345] == 1.f);
    REQUIRE(memory_current(Device::CPU) == before + (size_t(6) << 20));
  }
  held = Tensor();
  REQUIRE(memory_current(Device::CPU) == before);
}
