// The CUDA runtime pieces: device discovery, the caching allocator (reuse, counters, the
// out-of-memory message), copies, the DEEPERLAB_CUDA_SYNC mode and the TF32 / conv-algorithm
// switches. GPU cases skip themselves without a usable device.
#include <cstdlib>
#include <string>

#include "tests/testing.h"
#ifdef DEEPERLAB_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/allocator.h"
#include "cuda/conv.h"
#include "cuda/handles.h"
#include "cuda/runtime.h"
#endif

using namespace dl;

#ifndef DEEPERLAB_WITH_CUDA

TEST_CASE("cuda runtime: build without the CUDA backend", "[cuda]") {
  REQUIRE_FALSE(cuda_available());
  REQUIRE_THROWS_AS(Tensor::zeros({4}, DType::F32, Device::CUDA), Error);
}

#else

TEST_CASE("cuda available() is cached and explains itself", "[cuda][runtime]") {
  const bool a = cuda::available();
  REQUIRE(cuda::available() == a);
  if (!a) {
    INFO("reason: " << cuda::unavailable_reason());
    REQUIRE(std::string(cuda::unavailable_reason()).size() > 0);
    // Asking for device memory without a device is a clear error, not a crash.
    try {
      Tensor::zeros({4}, DType::F32, Device::CUDA);
      FAIL("CUDA allocation without a device did not throw");
    } catch (const Error& e) {
      REQUIRE(std::string(e.what()).find("no usable CUDA device") != std::string::npos);
    }
    WARN("skipped GPU checks: " << cuda::unavailable_reason());
    return;
  }
  INFO("device: " << cuda::device_name());
  REQUIRE(std::string(cuda::device_name()).size() > 0);
  REQUIRE(std::string(cuda::unavailable_reason()).empty());
}

TEST_CASE("cuda allocator reuses freed blocks and keeps counters", "[cuda][allocator]") {
  DL_REQUIRE_GPU_OR_SKIP();
  cuda::synchronize();
  const size_t base_current = cuda::current_bytes();
  const size_t bytes = 3 * 1000 * 1000 + 7;  // not a multiple of the 512-byte rounding
  const size_t rounded = (bytes + cuda::kAllocRound - 1) / cuda::kAllocRound * cuda::kAllocRound;
  void* p = cuda::device_alloc(bytes);
  REQUIRE(p != nullptr);
  REQUIRE(reinterpret_cast<uintptr_t>(p) % 256 == 0);
  REQUIRE(cuda::current_bytes() == base_current + rounded);
  REQUIRE(cuda::peak_bytes() >= cuda::current_bytes());
  cuda::device_free(p, bytes);
  REQUIRE(cuda::current_bytes() == base_current);
  REQUIRE(cuda::cached_bytes() >= rounded);
  const size_t mallocs = cuda::num_device_mallocs();
  void* q = cuda::device_alloc(bytes);
  REQUIRE(q == p);  // the cached block comes back
  REQUIRE(cuda::num_device_mallocs() == mallocs);
  // A slightly smaller request (within 1/8) reuses the same block too.
  cuda::device_free(q, bytes);
  void* r = cuda::device_alloc(bytes - 4096);
  REQUIRE(r == p);
  REQUIRE(cuda::num_device_mallocs() == mallocs);
  cuda::device_free(r, bytes - 4096);

  // Tensors go through the same cache: a steady loop makes no new cudaMalloc calls.
  { Tensor warm = Tensor::zeros({1, 64, 91, 91}, DType::F32, Device::CUDA); }
  const size_t before = cuda::num_device_mallocs();
  for (int i = 0; i < 10; ++i) {
    Tensor t = Tensor::zeros({1, 64, 91, 91}, DType::F32, Device::CUDA);
    Tensor u = relu(t);
  }
  cuda::synchronize();
  REQUIRE(cuda::num_device_mallocs() <= before + 1);  // at most the relu output's first block

  cuda::reset_peak_bytes();
  REQUIRE(cuda::peak_bytes() == cuda::current_bytes());
  REQUIRE(memory_current(Device::CUDA) == cuda::current_bytes());
  cuda::empty_cache();
  REQUIRE(cuda::cached_bytes() == 0);
  REQUIRE(cuda::reserved_bytes() == cuda::current_bytes());
}

TEST_CASE("cuda zero-sized tensors allocate and copy", "[cuda][allocator]") {
  DL_REQUIRE_GPU_OR_SKIP();
  Tensor z = Tensor::zeros({0, 3}, DType::F32, Device::CUDA);
  REQUIRE(z.numel() == 0);
  REQUIRE(z.to(Device::CPU).numel() == 0);
  Tensor r = relu(z);
  REQUIRE(r.numel() == 0);
}

TEST_CASE("cuda out-of-memory error states requested and free bytes", "[cuda][allocator]") {
  DL_REQUIRE_GPU_OR_SKIP();
  const size_t absurd = size_t(1) << 50;  // 1 PiB
  try {
    cuda::device_alloc(absurd);
    FAIL("absurd allocation did not throw");
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO(msg);
    REQUIRE(msg.find("out of memory") != std::string::npos);
    REQUIRE(msg.find("requested " + std::to_string(absurd) + " bytes") != std::string::npos);
    REQUIRE(msg.find("free ") != std::string::npos);
  }
  // The device is still usable afterwards.
  Tensor t = Tensor::full({5}, 2.0, DType::F32, Device::CUDA);
  REQUIRE(sum(t).item() == 10.0);
  REQUIRE(cudaGetLastError() == cudaSuccess);
}

TEST_CASE("cuda copies round-trip every dtype", "[cuda][runtime]") {
  DL_REQUIRE_GPU_OR_SKIP();
  std::vector<float> f{1.5f, -2.f, 3.25f};
  std::vector<int32_t> i{7, -8, 9, 10};
  std::vector<uint8_t> u{0, 255, 17};
  REQUIRE(Tensor::from_vector(f, {3}, Device::CUDA).to_vector<float>() == f);
  REQUIRE(Tensor::from_vector(i, {4}, Device::CUDA).to_vector<int32_t>() == i);
  REQUIRE(Tensor::from_vector(u, {3}, Device::CUDA).to_vector<uint8_t>() == u);
  Tensor a = Tensor::from_vector(f, {3}, Device::CUDA);
  Tensor b = a.clone();
  REQUIRE(b.to_vector<float>() == f);
  a.zero_();
  REQUIRE(a.to_vector<float>() == std::vector<float>{0, 0, 0});
  REQUIRE(b.to_vector<float>() == f);
}

TEST_CASE("DEEPERLAB_CUDA_SYNC: every op synchronises and checks", "[cuda][runtime]") {
  DL_REQUIRE_GPU_OR_SKIP();
  const bool before = cuda::sync_after_ops();
  const char* env = std::getenv("DEEPERLAB_CUDA_SYNC");
  INFO("DEEPERLAB_CUDA_SYNC=" << (env ? env : "(unset)"));
  cuda::set_sync_after_ops(true);
  REQUIRE(cuda::sync_after_ops());
  Tensor x = Tensor::full({1, 8, 300, 300}, 1.0, DType::F32, Device::CUDA);
  Tensor y = sigmoid(relu(x));
  // The op returned only after the stream drained.
  REQUIRE(cudaStreamQuery(cuda::stream()) == cudaSuccess);
  REQUIRE_NOTHROW(cuda::check_after_op("test"));
  cuda::set_sync_after_ops(false);
  REQUIRE_FALSE(cuda::sync_after_ops());
  cuda::set_sync_after_ops(before);
}

TEST_CASE("cuda TF32 and convolution-algorithm switches", "[cuda][runtime]") {
  DL_REQUIRE_GPU_OR_SKIP();
  const bool tf32 = cuda::tf32_enabled();
  cuda::set_tf32(true);
  REQUIRE(cuda::tf32_enabled());
  REQUIRE(cuda::cublas_handle() != nullptr);
  cuda::set_tf32(false);
  REQUIRE_FALSE(cuda::tf32_enabled());
  REQUIRE(cuda::cublas_handle() != nullptr);
  cuda::set_tf32(tf32);
  const auto algo = cuda::conv_algo();
  cuda::set_conv_algo(cuda::ConvAlgo::Cudnn);
  REQUIRE(cuda::conv_algo() == cuda::ConvAlgo::Cudnn);
  // Without cuDNN in the build the cudnn choice falls back to im2col and still works.
  Rng rng(3);
  Tensor x = Tensor::randn({1, 3, 9, 9}, rng).to(Device::CUDA),
         w = Tensor::randn({4, 3, 3, 3}, rng).to(Device::CUDA);
  Tensor y1 = conv2d(x, w, Tensor(), Conv2dOptions::same(3));
  cuda::set_conv_algo(cuda::ConvAlgo::Im2col);
  Tensor y2 = conv2d(x, w, Tensor(), Conv2dOptions::same(3));
  auto a = y1.to_vector<float>(), b = y2.to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i)
    REQUIRE(std::fabs(a[i] - b[i]) <= 1e-4 * std::max(1.f, std::fabs(b[i])));
  cuda::set_conv_algo(algo);
}

#endif  // DEEPERLAB_WITH_CUDA
