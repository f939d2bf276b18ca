// Optimizers over named parameters (SGD with momentum, AdamW; torch.optim semantics), global
// gradient-norm clipping and the poly learning-rate schedule with linear warm-up.
// Parameters are updated in place by one fused kernel per tensor on the parameter's device.
// Optimizer state is exported as named tensors ("<param>.exp_avg", ...) so that checkpoints can
// store it and a resumed run continues bit-exactly.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace dl {

// Same alias as weights/named_tensors.h (an identical re-declaration is legal C++).
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Which parameters get weight decay: true = decay. Empty = every parameter (PyTorch's default).
using DecayFilter = std::function<bool(const std::string& name, const Tensor& param)>;
// The usual exclusion: no decay for tensors of at most one dim (biases, BatchNorm weight and bias).
bool decay_except_1d(const std::string& name, const Tensor& param);

class Optimizer {
 public:
  // Parameters must be defined F32 tensors with unique names (on any device).
  Optimizer(NamedTensors params, double lr);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient (the others are skipped, as in PyTorch).
  virtual void step() = 0;
  void zero_grad();  // drops every parameter's gradient
  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  const NamedTensors& params() const { return params_; }

  // State as named tensors on the parameters' devices (the live tensors for CUDA params, copies
  // never needed: the checkpoint writer copies to the host).
  virtual NamedTensors state() const = 0;
  // Replaces the whole state; checks every name, shape and dtype first and reports all problems
  // at once (nothing changes on error). Parameters absent from `state` start fresh.
  virtual void load_state(const NamedTensors& state) = 0;
  virtual const char* name() const = 0;

 protected:
  bool decays(size_t i, const DecayFilter& f) const;
  NamedTensors params_;
  double lr_;
};

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0.9;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  DecayFilter decay;  // which params get weight_decay (empty: all)
};

// torch.optim.SGD: g += wd * p; buf = g on the first step, else momentum * buf + (1 - dampening) * g;
// g = nesterov ? g + momentum * buf : buf; p -= lr * g.
class SGD : public Optimizer {
 public:
  SGD(NamedTensors params, SGDOptions opt);
  void step() override;
  NamedTensors state() const override;  // "<param>.momentum_buffer"
  void load_state(const NamedTensors& state) override;
  const char* name() const override { return "sgd"; }
  const SGDOptions& options() const { return opt_; }

 private:
  SGDOptions opt_;
  std::vector<Tensor> buf_;  // undefined until the param's first step
};

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
  DecayFilter decay;  // which params get weight_decay (empty: all)
};

// torch.optim.AdamW (amsgrad off): p *= 1 - lr * wd; Adam moments with bias correction.
class AdamW : public Optimizer {
 public:
  AdamW(NamedTensors params, AdamWOptions opt);
  void step() override;
  NamedTensors state() const override;  // "<param>.exp_avg", "<param>.exp_avg_sq", "<param>.step" (I32 [1])
  void load_state(const NamedTensors& state) override;
  const char* name() const override { return "adamw"; }
  const AdamWOptions& options() const { return opt_; }

 private:
  AdamWOptions opt_;
  std::vector<Tensor> m_, v_;  // undefined until the param's first step
  std::vector<int64_t> steps_;
};

// Global L2 norm of all gradients (params without a gradient are skipped), in double.
double grad_norm(const NamedTensors& params);
// torch.nn.utils.clip_grad_norm_: scales every gradient by max_norm / (norm + 1e-6) when that is
// below 1, and returns the norm before clipping. A non-finite norm is returned without touching
// the gradients (the caller decides to skip the step).
double clip_grad_norm(const NamedTensors& params, double max_norm);

// Poly schedule with linear warm-up: base * (1 - min(step, total) / total)^power, multiplied
// during the first warmup_steps steps by a factor rising linearly from warmup_start_factor (at
// step 0) to 1 (at step warmup_steps).
double poly_lr(double base, int64_t step, int64_t total, double power = 0.9, int64_t warmup_steps = 0,
               double warmup_start_factor = 0.1);

}  // namespace dl
