// Tensor: a shape, a dtype and a view into shared Storage (always contiguous, NCHW for images),
// plus the autograd fields (requires_grad, grad, the Node that produced it).
// Copies of a Tensor share everything (like a shared_ptr); clone() copies the data.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/storage.h"

namespace dl {

class Rng;
struct Node;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  size_t offset = 0;  // bytes from storage->data()
  Shape shape;
  DType dtype = DType::F32;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;      // accumulated gradient (leaves)
  std::shared_ptr<Node> grad_fn;         // the op that made this tensor (non-leaves)
  std::weak_ptr<Node> grad_accumulator;  // shared AccumulateGrad node of a leaf
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories (uninitialised / filled / from host data / random) ----
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU) {
    return full(shape, 1.0, dtype, device);
  }
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::CPU);
  static Tensor randn(const Shape& shape, Rng& rng, double stddev = 1.0, DType dtype = DType::F32);
  static Tensor uniform(const Shape& shape, Rng& rng, double lo, double hi, DType dtype = DType::F32);

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return shape_numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  bool is_cuda() const { return device() == Device::CUDA; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  std::string shape_str() const { return dl::shape_str(shape()); }
  std::string desc() const;  // "F32[2, 3, 5, 5] cpu"

  // ---- data ----
  void* raw_data() const { return static_cast<char*>(impl().storage->data()) + impl().offset; }
  template <class T>
  T* data() const {
    DL_CHECK(defined() && dtype() == DTypeOf<T>::value,
             "tensor of dtype " << (defined() ? dtype_name(dtype()) : "undefined") << " accessed as "
                                << dtype_name(DTypeOf<T>::value));
    return static_cast<T*>(raw_data());
  }
  template <class T>
  std::vector<T> to_vector() const;  // copies to the host
  double item() const;               // one-element tensor -> double

  // ---- copies and views (no autograd; see ops.h for differentiable versions) ----
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;  // CPU only; numeric conversion
  Tensor clone() const;
  Tensor detach() const;  // shares data, no grad history
  Tensor view(const Shape& shape) const;  // shares storage, -1 infers one dim; no autograd
  Tensor select0(int64_t i) const;        // the i-th slice along dim 0, sharing storage; no autograd
  void copy_(const Tensor& src);          // same shape and dtype; any devices
  void fill_(double value);
  void zero_() { fill_(0.0); }

  // ---- autograd ----
  bool requires_grad() const { return defined() && impl().requires_grad; }
  Tensor& set_requires_grad(bool r);
  Tensor grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }
  void set_grad(const Tensor& g) { impl().grad = g.impl_; }
  void zero_grad() { impl().grad.reset(); }
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  bool is_leaf() const { return !impl().grad_fn; }
  // Runs reverse-mode autograd from this scalar (or with an explicit output gradient).
  void backward(const Tensor& grad_output = Tensor()) const;

  TensorImpl& impl() const {
    DL_CHECK(impl_ != nullptr, "use of an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

}  // namespace dl
