// Net: DeeperLab behind a pointer (see trainer_glue.h for why).
#include "core/autograd.h"
#include "parser/model.h"
#include "parser/trainer_glue.h"

namespace dl {

struct Net::Impl {
  explicit Impl(const ModelConfig& c) : model(c) {}
  DeeperLab model;
};

Net::Net(const ModelConfig& c) : impl_(std::make_unique<Impl>(c)) {}
Net::~Net() = default;
HeadOutputs Net::forward(const Tensor& x) const {
  return impl_->model.forward(x);
}
NamedTensors Net::state_dict() const {
  return impl_->model.state_dict();
}
NamedTensors Net::named_parameters() const {
  return impl_->model.named_parameters();
}
NamedTensors Net::backbone_state_dict() const {
  return impl_->model.backbone->state_dict();
}
void Net::train(bool on) {
  impl_->model.train(on);
}
void Net::to(Device d) {
  impl_->model.to(d);
}
void Net::zero_grad() {
  impl_->model.zero_grad();
}

NamedTensors Net::dump(const Tensor& x) const {
  NoGradGuard ng;
  DeeperLabFeatures f = impl_->model.forward_features(x);
  NamedTensors named = f.named();
  for (auto& kv : named_heads(resize_heads(f.heads, x.size(2), x.size(3)), "heads.")) named.push_back(kv);
  return named;
}

}  // namespace dl
