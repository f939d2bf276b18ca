// Module bookkeeping: registration, dotted-name traversal, in-place device/dtype moves.
#include "layers/module.h"

#include <cmath>

#include "core/rng.h"

namespace dl {

void Module::check_name(const std::string& name) const {
  DL_CHECK(!name.empty() && name.find('.') == std::string::npos,
           "Module: invalid name '" << name << "' (must be non-empty and contain no '.')");
  auto taken = [&](const auto& v) {
    for (const auto& p : v)
      if (p.first == name) return true;
    return false;
  };
  DL_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_),
           "Module: name '" << name << "' registered twice");
}

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  check_name(name);
  DL_CHECK(t.defined(), "Module: parameter '" << name << "' is undefined");
  t.set_requires_grad(true);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_name(name);
  DL_CHECK(t.defined(), "Module: buffer '" << name << "' is undefined");
  buffers_.emplace_back(name, t);
  return t;
}

void Module::collect(const std::string& prefix, bool params, bool buffers, NamedTensors& out) const {
  if (params)
    for (const auto& [n, t] : params_) out.emplace_back(prefix + n, t);
  if (buffers)
    for (const auto& [n, t] : buffers_) out.emplace_back(prefix + n, t);
  for (const auto& [n, m] : children_) m->collect(prefix + n + ".", params, buffers, out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, false, out);
  return out;
}
NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, true, out);
  return out;
}
NamedTensors Module::state_dict() const {
  NamedTensors out;
  collect("", true, true, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& p : named_parameters()) out.push_back(p.second);
  return out;
}

std::vector<std::pair<std::string, const Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, const Module*>> out{{"", this}};
  for (const auto& [n, m] : children_)
    for (auto& [cn, cm] : m->named_modules()) out.emplace_back(cn.empty() ? n : n + "." + cn, cm);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : named_parameters()) n += p.second.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& c : children_) c.second->train(on);
}

void Module::for_each_tensor(const std::function<void(Tensor&)>& fn) {
  for (auto& p : params_) fn(p.second);
  for (auto& b : buffers_) fn(b.second);
  for (auto& c : children_) c.second->for_each_tensor(fn);
}

namespace {
// Points `dst`'s impl at the storage of `src` (same shape), keeping the impl itself.
void adopt_storage(Tensor& dst, const Tensor& src) {
  TensorImpl& d = dst.impl();
  d.storage = src.impl().storage;
  d.offset = src.impl().offset;
  d.dtype = src.impl().dtype;
}
}  // namespace

void Module::to(Device device) {
  for_each_tensor([device](Tensor& t) {
    if (t.device() != device) adopt_storage(t, t.to(device));
    Tensor g = t.grad();
    if (g.defined() && g.device() != device) adopt_storage(g, g.to(device));
  });
}

void Module::to(DType dtype) {
  DL_CHECK(dtype == DType::F32 || dtype == DType::F64, "Module::to: only F32/F64, got " << dtype_name(dtype));
  for_each_tensor([dtype](Tensor& t) {
    if (t.dtype() != DType::F32 && t.dtype() != DType::F64) return;  // counters stay integer
    if (t.dtype() != dtype) adopt_storage(t, t.to(dtype));
    Tensor g = t.grad();
    if (g.defined() && g.dtype() != dtype) adopt_storage(g, g.to(dtype));
  });
}

void Module::zero_grad() {
  for (auto& p : named_parameters()) p.second.zero_grad();
}

Tensor he_normal(const Shape& oihw, Rng& rng) {
  DL_CHECK(oihw.size() == 4, "he_normal: expected an OIHW shape, got " << shape_str(oihw));
  const double fan_in = double(oihw[1] * oihw[2] * oihw[3]);
  return Tensor::randn(oihw, rng, std::sqrt(2.0 / fan_in));
}

}  // namespace dl
