#include "core/autograd.h"

#include <unordered_map>
#include <unordered_set>

#include "core/ops.h"

namespace dl {

namespace {
thread_local bool t_grad_enabled = true;

// Sink node of a leaf that requires grad: adds the incoming gradient into leaf.grad.
struct AccumulateGrad : Node {
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : leaf_(std::move(leaf)) {}
  std::vector<Tensor> backward(const Tensor& g) override {
    if (!leaf_->grad) {
      leaf_->grad = g.clone().impl_ptr();  // own copy: g may alias another tensor's gradient
    } else {
      Tensor acc(leaf_->grad);
      add_inplace(acc, g);
    }
    return {};
  }
  const char* name() const override { return "AccumulateGrad"; }
  bool single_use() const override { return false; }

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

std::shared_ptr<Node> edge_for(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return nullptr;
  auto& impl = t.impl();
  if (impl.grad_fn) return impl.grad_fn;
  if (auto acc = impl.grad_accumulator.lock()) return acc;
  auto acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
  impl.grad_accumulator = acc;
  return acc;
}
}  // namespace

bool grad_mode_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = prev_; }

bool any_requires_grad(std::initializer_list<Tensor> inputs) {
  if (!t_grad_enabled) return false;
  for (const auto& t : inputs)
    if (t.requires_grad()) return true;
  return false;
}
bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!t_grad_enabled) return false;
  for (const auto& t : inputs)
    if (t.requires_grad()) return true;
  return false;
}

Tensor record(Tensor out, std::shared_ptr<Node> node, const std::vector<Tensor>& inputs) {
  if (!any_requires_grad(inputs)) return out;
  node->next.clear();
  for (const auto& t : inputs) node->next.push_back(edge_for(t));
  out.impl().grad_fn = std::move(node);
  out.impl().requires_grad = true;
  return out;
}

void run_backward(const Tensor& root, const Tensor& grad) {
  DL_CHECK(root.requires_grad(), "backward() on a tensor that does not require grad "
                                 "(no input required grad, or it was computed under NoGradGuard)");
  Tensor g = grad;
  if (!g.defined()) {
    DL_CHECK(root.numel() == 1, "backward() without a gradient needs a scalar, got shape " << root.shape_str());
    g = Tensor::ones(root.shape(), root.dtype(), root.device());
  }
  DL_CHECK(g.shape() == root.shape(), "backward(): gradient " << g.shape_str() << " for output "
                                                              << root.shape_str());
  std::shared_ptr<Node> start = edge_for(root);

  // Dependency counts: how many consumers will deliver a gradient to each node.
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack{start.get()};
  std::unordered_set<Node*> seen{start.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& nx : n->next) {
      if (!nx) continue;
      deps[nx.get()]++;
      if (seen.insert(nx.get()).second) stack.push_back(nx.get());
    }
  }

  std::unordered_map<Node*, Tensor> grads;
  grads[start.get()] = g;
  std::vector<std::shared_ptr<Node>> ready{start};
  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.back();
    ready.pop_back();
    Tensor gout = std::move(grads[node.get()]);
    grads.erase(node.get());
    DL_CHECK(!node->consumed || !node->single_use(), "backward through " << node->name()
                                                  << " a second time: its saved tensors were released after the "
                                                     "first backward; run the forward pass again");
    node->consumed = true;
    std::vector<Tensor> gin = node->backward(gout);
    node->release();
    gout = Tensor();
    for (size_t i = 0; i < node->next.size(); ++i) {
      auto& nx = node->next[i];
      if (!nx) continue;
      if (i < gin.size() && gin[i].defined()) {
        auto it = grads.find(nx.get());
        if (it == grads.end() || !it->second.defined()) {
          grads[nx.get()] = gin[i];
        } else {
          // Second consumer: accumulate into a fresh tensor (the first may alias saved data).
          Tensor sum = it->second.clone();
          add_inplace(sum, gin[i]);
          it->second = sum;
        }
      }
      if (--deps[nx.get()] == 0) {
        if (grads.count(nx.get()) && grads[nx.get()].defined()) {
          ready.push_back(nx);
        } else {
          grads.erase(nx.get());
        }
      }
    }
    // Drop the edges so the consumed part of the graph (and its memory) can go now.
    node->next.clear();
  }
}

size_t graph_size(const Tensor& t) {
  if (!t.defined() || !t.grad_fn()) return 0;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack{t.grad_fn().get()};
  seen.insert(stack[0]);
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& nx : n->next)
      if (nx && seen.insert(nx.get()).second) stack.push_back(nx.get());
  }
  return seen.size();
}

}  // namespace dl
