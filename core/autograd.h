// Reverse-mode autograd on a dynamic tape.
// Every differentiable op produces one tensor and records one Node; a Node's edges point at the
// Nodes of its inputs (a leaf that requires grad gets a shared AccumulateGrad node). backward()
// counts dependencies, then runs each Node once all its consumers have delivered their gradient,
// and releases the Node's saved tensors right after it ran.
#pragma once
#include <functional>
#include <initializer_list>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace dl {

struct Node {
  virtual ~Node() = default;
  // Gradients w.r.t. each input, given the gradient w.r.t. the output. An undefined tensor
  // means "no gradient" (the input does not require it).
  virtual std::vector<Tensor> backward(const Tensor& grad_out) = 0;
  virtual void release() {}  // drop saved tensors
  virtual const char* name() const = 0;
  virtual bool single_use() const { return true; }  // false for leaf accumulators

  std::vector<std::shared_ptr<Node>> next;  // one per input; null when that input needs no grad
  bool consumed = false;                    // backward ran (saved tensors are gone)
  bool needs_input_grad(size_t i) const { return i < next.size() && next[i] != nullptr; }
};

// A Node defined by a lambda: convenient for ops whose backward captures what it needs.
// The lambda's captures are the saved tensors; they are dropped by release().
struct LambdaNode : Node {
  using Fn = std::function<std::vector<Tensor>(const Tensor&, const LambdaNode&)>;
  LambdaNode(const char* n, Fn f) : name_(n), fn_(std::move(f)) {}
  std::vector<Tensor> backward(const Tensor& g) override { return fn_(g, *this); }
  void release() override { fn_ = nullptr; }
  const char* name() const override { return name_; }

 private:
  const char* name_;
  Fn fn_;
};

// Gradient recording is on by default; NoGradGuard switches it off for its scope (thread-local).
bool grad_mode_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and any input requires grad: the op must record a Node.
bool any_requires_grad(std::initializer_list<Tensor> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Attaches `node` as out's grad_fn with edges to `inputs` (in order). Returns out.
Tensor record(Tensor out, std::shared_ptr<Node> node, const std::vector<Tensor>& inputs);
inline Tensor record(Tensor out, std::shared_ptr<Node> node, std::initializer_list<Tensor> inputs) {
  return record(std::move(out), std::move(node), std::vector<Tensor>(inputs));
}
// Convenience: record a LambdaNode.
inline Tensor record_fn(Tensor out, const char* name, std::initializer_list<Tensor> inputs, LambdaNode::Fn fn) {
  return record(std::move(out), std::make_shared<LambdaNode>(name, std::move(fn)), inputs);
}

// Runs backward from `root` with output gradient `grad` (ones for a scalar when undefined).
void run_backward(const Tensor& root, const Tensor& grad);

// Number of Nodes reachable from t (0 under NoGradGuard): used by tests and diagnostics.
size_t graph_size(const Tensor& t);

}  // namespace dl
