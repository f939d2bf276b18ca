#include "core/tensor.h"

#include <cstring>
#include <sstream>

#include "core/autograd.h"
#include "core/rng.h"
#ifdef DEEPERLAB_WITH_CUDA
#include "cuda/runtime.h"
#endif

namespace dl {

namespace {
void check_shape(const Shape& shape) {
  DL_CHECK(shape.size() <= 5, "tensor shape " << shape_str(shape) << " has more than 5 dims");
  for (auto d : shape) DL_CHECK(d >= 0, "tensor shape " << shape_str(shape) << " has a negative dim");
}

void copy_bytes(void* dst, Device dd, const void* src, Device sd, size_t bytes) {
  if (bytes == 0) return;
  if (dd == Device::CPU && sd == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef DEEPERLAB_WITH_CUDA
  if (dd == Device::CUDA && sd == Device::CPU) return cuda::memcpy_h2d(dst, src, bytes);
  if (dd == Device::CPU && sd == Device::CUDA) return cuda::memcpy_d2h(dst, src, bytes);
  return cuda::memcpy_d2d(dst, src, bytes);
#else
  DL_FAIL("copy involving a CUDA tensor in a build without CUDA");
#endif
}

template <class T>
void fill_host(void* p, int64_t n, double v) {
  T* t = static_cast<T*>(p);
  const T val = static_cast<T>(v);
  for (int64_t i = 0; i < n; ++i) t[i] = val;
}
}  // namespace

int64_t Tensor::size(int64_t d) const {
  int64_t nd = dim();
  if (d < 0) d += nd;
  DL_CHECK(d >= 0 && d < nd, "dim " << d << " out of range for shape " << shape_str());
  return shape()[d];
}

std::string Tensor::desc() const {
  if (!defined()) return "undefined";
  std::ostringstream os;
  os << dtype_name(dtype()) << shape_str() << " " << device_name(device());
  return os.str();
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  check_shape(shape);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(0.0);
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  DL_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
           "from_vector: " << values.size() << " values for shape " << dl::shape_str(shape));
  Tensor t = empty(shape, DTypeOf<T>::value, device);
  copy_bytes(t.raw_data(), device, values.data(), Device::CPU, values.size() * sizeof(T));
  return t;
}
template Tensor Tensor::from_vector<float>(const std::vector<float>&, const Shape&, Device);
template Tensor Tensor::from_vector<double>(const std::vector<double>&, const Shape&, Device);
template Tensor Tensor::from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, Device);
template Tensor Tensor::from_vector<uint8_t>(const std::vector<uint8_t>&, const Shape&, Device);

Tensor Tensor::randn(const Shape& shape, Rng& rng, double stddev, DType dtype) {
  Tensor t = empty(shape, DType::F64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = rng.normal() * stddev;
  return dtype == DType::F64 ? t : t.to(dtype);
}

Tensor Tensor::uniform(const Shape& shape, Rng& rng, double lo, double hi, DType dtype) {
  Tensor t = empty(shape, DType::F64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = rng.uniform(lo, hi);
  return dtype == DType::F64 ? t : t.to(dtype);
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  DL_CHECK(dtype() == DTypeOf<T>::value,
           "to_vector: tensor is " << dtype_name(dtype()) << ", asked for " << dtype_name(DTypeOf<T>::value));
  std::vector<T> v(numel());
  copy_bytes(v.data(), Device::CPU, raw_data(), device(), nbytes());
  return v;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

double Tensor::item() const {
  DL_CHECK(numel() == 1, "item() on a tensor of shape " << shape_str() << " (needs exactly one element)");
  Tensor h = device() == Device::CPU ? *this : to(Device::CPU);
  switch (dtype()) {
    case DType::F32: return *h.data<float>();
    case DType::F64: return *h.data<double>();
    case DType::I32: return *h.data<int32_t>();
    case DType::U8: return *h.data<uint8_t>();
  }
  return 0;
}

Tensor Tensor::to(Device dev) const {
  if (device() == dev) return *this;
  Tensor t = empty(shape(), dtype(), dev);
  copy_bytes(t.raw_data(), dev, raw_data(), device(), nbytes());
  return t;
}

Tensor Tensor::to(DType dt) const {
  if (dtype() == dt) return *this;
  DL_CHECK(device() == Device::CPU, "dtype conversion " << desc() << " -> " << dtype_name(dt)
                                                        << " is only implemented on the CPU");
  Tensor t = empty(shape(), dt, Device::CPU);
  const int64_t n = numel();
  auto get = [&](int64_t i) -> double {
    switch (dtype()) {
      case DType::F32: return static_cast<const float*>(raw_data())[i];
      case DType::F64: return static_cast<const double*>(raw_data())[i];
      case DType::I32: return static_cast<const int32_t*>(raw_data())[i];
      case DType::U8: return static_cast<const uint8_t*>(raw_data())[i];
    }
    return 0;
  };
  for (int64_t i = 0; i < n; ++i) {
    double v = get(i);
    switch (dt) {
      case DType::F32: static_cast<float*>(t.raw_data())[i] = static_cast<float>(v); break;
      case DType::F64: static_cast<double*>(t.raw_data())[i] = v; break;
      case DType::I32: static_cast<int32_t*>(t.raw_data())[i] = static_cast<int32_t>(v); break;
      case DType::U8: static_cast<uint8_t*>(t.raw_data())[i] = static_cast<uint8_t>(v); break;
    }
  }
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape(), dtype(), device());
  copy_bytes(t.raw_data(), device(), raw_data(), device(), nbytes());
  return t;
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->offset = impl_->offset;
  impl->shape = impl_->shape;
  impl->dtype = impl_->dtype;
  return Tensor(impl);
}

Tensor Tensor::view(const Shape& new_shape) const {
  Shape s = new_shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      DL_CHECK(infer < 0, "view: more than one -1 in " << dl::shape_str(new_shape));
      infer = static_cast<int64_t>(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    DL_CHECK(known > 0 && numel() % known == 0,
             "view: cannot infer a dim of " << dl::shape_str(new_shape) << " from " << shape_str());
    s[infer] = numel() / known;
  }
  DL_CHECK(shape_numel(s) == numel(), "view: shape " << dl::shape_str(new_shape) << " does not match "
                                                     << shape_str() << " (" << numel() << " elements)");
  Tensor t = detach();
  t.impl().shape = s;
  return t;
}

Tensor Tensor::select0(int64_t i) const {
  DL_CHECK(dim() >= 1 && i >= 0 && i < size(0), "select0(" << i << ") on shape " << shape_str());
  Tensor t = detach();
  Shape s(shape().begin() + 1, shape().end());
  t.impl().offset += static_cast<size_t>(i) * shape_numel(s) * dtype_size(dtype());
  t.impl().shape = s;
  return t;
}

void Tensor::copy_(const Tensor& src) {
  DL_CHECK(src.shape() == shape() && src.dtype() == dtype(),
           "copy_: destination " << desc() << " and source " << src.desc() << " differ");
  copy_bytes(raw_data(), device(), src.raw_data(), src.device(), nbytes());
}

void Tensor::fill_(double value) {
  const int64_t n = numel();
  if (device() == Device::CPU) {
    switch (dtype()) {
      case DType::F32: fill_host<float>(raw_data(), n, value); break;
      case DType::F64: fill_host<double>(raw_data(), n, value); break;
      case DType::I32: fill_host<int32_t>(raw_data(), n, value); break;
      case DType::U8: fill_host<uint8_t>(raw_data(), n, value); break;
    }
    return;
  }
#ifdef DEEPERLAB_WITH_CUDA
  if (value == 0.0) return cuda::memset_zero(raw_data(), nbytes());
  Tensor host = full(shape(), value, dtype(), Device::CPU);
  copy_(host);
#endif
}

Tensor& Tensor::set_requires_grad(bool r) {
  DL_CHECK(!r || dtype() == DType::F32 || dtype() == DType::F64,
           "requires_grad on a non-float tensor " << desc());
  DL_CHECK(is_leaf() || r, "set_requires_grad(false) on a non-leaf tensor; use detach()");
  impl().requires_grad = r;
  return *this;
}

void Tensor::backward(const Tensor& grad_output) const { run_backward(*this, grad_output); }

}  // namespace dl
