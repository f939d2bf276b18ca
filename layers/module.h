// Module: the base of every layer. Holds named parameters (trainable leaves), buffers (running
// statistics) and child modules, and exposes them under PyTorch-style dotted names
// ("decoder.sep1.depthwise.weight") in registration order: a module's own parameters, then its own
// buffers, then each child in turn (PyTorch's state_dict order).
//
// The one non-obvious decision: to(Device) / to(DType) move tensors *in place*. Each parameter keeps
// its TensorImpl; only the impl's storage (and offset/dtype) is replaced. Every Tensor handle that
// shares the impl (a layer's member, an optimizer's parameter list) therefore sees the moved data,
// and nothing has to be re-registered after a move. Gradients are moved with their parameter.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace dl {

class Rng;

// (name, tensor) pairs in a fixed order; the exchange type of state dicts and weight files.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  // Copying a module would silently share its tensors: forbidden.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // ---- introspection (recursive, dotted names) ----
  NamedTensors named_parameters() const;
  NamedTensors named_buffers() const;
  NamedTensors state_dict() const;  // parameters and buffers, PyTorch's order
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, const Module*>> named_modules() const;  // "" is this module
  int64_t num_parameters() const;                                            // elements of every parameter

  // ---- modes and placement ----
  void train(bool on = true);  // recursive
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void to(Device device);  // in place, see the file comment
  void to(DType dtype);    // float tensors only (F32 <-> F64, used by float64 checks); in place
  void zero_grad();        // drops every parameter's gradient

 protected:
  // Registration: names must be non-empty, dot-free and unique within this module.
  // The returned handle shares the registered tensor (store it as a member).
  Tensor register_parameter(const std::string& name, Tensor t);  // sets requires_grad
  Tensor register_buffer(const std::string& name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    check_name(name);
    children_.emplace_back(name, m);
    m->train(training_);
    return m;
  }

 private:
  void check_name(const std::string& name) const;
  void collect(const std::string& prefix, bool params, bool buffers, NamedTensors& out) const;
  void for_each_tensor(const std::function<void(Tensor&)>& fn);

  NamedTensors params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// Deterministic initialisation used by every layer: He normal (std = sqrt(2 / fan_in)).
Tensor he_normal(const Shape& oihw, Rng& rng);

}  // namespace dl
