// Optimizer front-ends: argument checks, PyTorch's scalar preparation (double math, then float),
// and dispatch of one fused kernel per parameter to core/cpu/optim.cpp or cuda/optim.cu.
#include "core/optim.h"

#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "core/cpu/optim.h"
#include "core/error.h"
#ifdef DEEPERLAB_WITH_CUDA
#include "cuda/optim.h"
#endif

namespace dl {

namespace {

#ifndef DEEPERLAB_WITH_CUDA
[[noreturn]] void no_cuda(const char* op) {
  DL_FAIL(op << ": CUDA parameter in a build without CUDA");
}
#endif

float* fptr(const Tensor& t) {
  return t.data<float>();
}

void check_grad(const char* op, const std::string& name, const Tensor& p, const Tensor& g) {
  DL_CHECK(g.shape() == p.shape() && g.dtype() == DType::F32 && g.device() == p.device(),
           op << ": gradient of '" << name << "' is " << g.desc() << " but the parameter is " << p.desc());
}

Tensor zeros_like(const Tensor& p) {
  return Tensor::zeros(p.shape(), DType::F32, p.device());
}

// A copy of `src` on `device` that shares nothing with it.
Tensor copy_to(const Tensor& src, Device device) {
  Tensor t = Tensor::empty(src.shape(), src.dtype(), device);
  t.copy_(src);
  return t;
}

// Validates an optimizer state against the expected entries; throws one error listing every
// problem. `expected` maps a state name to (param index, required shape, dtype).
struct Expected {
  size_t param;
  Shape shape;
  DType dtype;
};
std::map<std::string, Tensor> check_state(const char* opt, const NamedTensors& state,
                                          const std::map<std::string, Expected>& expected) {
  std::vector<std::string> problems;
  std::map<std::string, Tensor> found;
  for (const auto& [name, t] : state) {
    auto it = expected.find(name);
    if (it == expected.end()) {
      problems.push_back("unexpected: " + name);
    } else if (!t.defined()) {
      problems.push_back("undefined: " + name);
    } else if (t.shape() != it->second.shape || t.dtype() != it->second.dtype) {
      std::ostringstream os;
      os << "mismatch: " << name << ": expected " << dtype_name(it->second.dtype)
         << shape_str(it->second.shape) << ", got " << t.desc();
      problems.push_back(os.str());
    } else if (!found.emplace(name, t).second) {
      problems.push_back("duplicate: " + name);
    }
  }
  if (!problems.empty()) {
    std::ostringstream os;
    os << opt << ".load_state: " << problems.size() << " problem" << (problems.size() > 1 ? "s" : "")
       << " (state unchanged):";
    for (const auto& p : problems) os << "\n  " << p;
    DL_FAIL(os.str());
  }
  return found;
}

}  // namespace

bool decay_except_1d(const std::string&, const Tensor& param) {
  return param.dim() > 1;
}

Optimizer::Optimizer(NamedTensors params, double lr) : params_(std::move(params)), lr_(lr) {
  std::set<std::string> names;
  for (const auto& [name, p] : params_) {
    DL_CHECK(names.insert(name).second, "optimizer: parameter name '" << name << "' appears twice");
    DL_CHECK(p.defined() && p.dtype() == DType::F32,
             "optimizer: parameter '" << name << "' is " << p.desc() << " (F32 required)");
  }
}

void Optimizer::zero_grad() {
  for (auto& kv : params_) kv.second.zero_grad();
}

bool Optimizer::decays(size_t i, const DecayFilter& f) const {
  return !f || f(params_[i].first, params_[i].second);
}

// ---------------------------------------------------------------- SGD

SGD::SGD(NamedTensors params, SGDOptions opt) : Optimizer(std::move(params), opt.lr), opt_(std::move(opt)) {
  DL_CHECK(opt_.lr >= 0 && opt_.momentum >= 0 && opt_.weight_decay >= 0,
           "SGD: lr " << opt_.lr << ", momentum " << opt_.momentum << ", weight_decay " << opt_.weight_decay
                      << " must be >= 0");
  DL_CHECK(!opt_.nesterov || (opt_.momentum > 0 && opt_.dampening == 0),
           "SGD: nesterov needs momentum > 0 and dampening 0");
  buf_.resize(params_.size());
}

void SGD::step() {
  const bool use_momentum = opt_.momentum != 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, p] = params_[i];
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    check_grad("SGD", name, p, g);
    const bool first = use_momentum && !buf_[i].defined();
    if (first) buf_[i] = Tensor::empty(p.shape(), DType::F32, p.device());
    float* buf = use_momentum ? fptr(buf_[i]) : nullptr;
    const float lr = static_cast<float>(lr_);
    const float wd = decays(i, opt_.decay) ? static_cast<float>(opt_.weight_decay) : 0.0f;
    if (p.device() == Device::CPU) {
      cpu::sgd_step(fptr(p), buf, fptr(g), p.numel(), lr, static_cast<float>(opt_.momentum),
                    static_cast<float>(opt_.dampening), wd, opt_.nesterov, first);
    } else {
#ifdef DEEPERLAB_WITH_CUDA
      cuda::sgd_step(fptr(p), buf, fptr(g), p.numel(), lr, static_cast<float>(opt_.momentum),
                     static_cast<float>(opt_.dampening), wd, opt_.nesterov, first, cuda::stream());
#else
      no_cuda("SGD");
#endif
    }
  }
}

NamedTensors SGD::state() const {
  NamedTensors s;
  for (size_t i = 0; i < params_.size(); ++i)
    if (buf_[i].defined()) s.emplace_back(params_[i].first + ".momentum_buffer", buf_[i]);
  return s;
}

void SGD::load_state(const NamedTensors& state) {
  std::map<std::string, Expected> expected;
  if (opt_.momentum != 0)
    for (size_t i = 0; i < params_.size(); ++i)
      expected[params_[i].first + ".momentum_buffer"] = {i, params_[i].second.shape(), DType::F32};
  auto found = check_state("SGD", state, expected);
  for (size_t i = 0; i < params_.size(); ++i) {
    auto it = found.find(params_[i].first + ".momentum_buffer");
    buf_[i] = it == found.end() ? Tensor() : copy_to(it->second, params_[i].second.device());
  }
}

// ---------------------------------------------------------------- AdamW

AdamW::AdamW(NamedTensors params, AdamWOptions opt)
    : Optimizer(std::move(params), opt.lr), opt_(std::move(opt)) {
  DL_CHECK(opt_.lr >= 0 && opt_.eps >= 0 && opt_.weight_decay >= 0 && opt_.beta1 >= 0 && opt_.beta1 < 1 &&
               opt_.beta2 >= 0 && opt_.beta2 < 1,
           "AdamW: invalid lr " << opt_.lr << ", betas (" << opt_.beta1 << ", " << opt_.beta2 << "), eps "
                                << opt_.eps << " or weight_decay " << opt_.weight_decay);
  m_.resize(params_.size());
  v_.resize(params_.size());
  steps_.assign(params_.size(), 0);
}

void AdamW::step() {
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, p] = params_[i];
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    check_grad("AdamW", name, p, g);
    if (!m_[i].defined()) {
      m_[i] = zeros_like(p);
      v_[i] = zeros_like(p);
      steps_[i] = 0;
    }
    const int64_t t = ++steps_[i];
    // The scalars exactly as torch.optim.AdamW computes them (Python floats = double).
    const double wd = decays(i, opt_.decay) ? opt_.weight_decay : 0.0;
    const double bc1 = 1.0 - std::pow(opt_.beta1, static_cast<double>(t));
    const double bc2 = 1.0 - std::pow(opt_.beta2, static_cast<double>(t));
    const float decay_scale = static_cast<float>(1.0 - lr_ * wd);
    const float b1 = static_cast<float>(opt_.beta1), omb1 = static_cast<float>(1.0 - opt_.beta1);
    const float b2 = static_cast<float>(opt_.beta2), omb2 = static_cast<float>(1.0 - opt_.beta2);
    const float neg_step = static_cast<float>(-(lr_ / bc1));
    const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
    const float eps = static_cast<float>(opt_.eps);
    if (p.device() == Device::CPU) {
      cpu::adamw_step(fptr(p), fptr(m_[i]), fptr(v_[i]), fptr(g), p.numel(), decay_scale, b1, omb1, b2, omb2,
                      neg_step, bc2_sqrt, eps);
    } else {
#ifdef DEEPERLAB_WITH_CUDA
      cuda::adamw_step(fptr(p), fptr(m_[i]), fptr(v_[i]), fptr(g), p.numel(), decay_scale, b1, omb1, b2, omb2,
                       neg_step, bc2_sqrt, eps, cuda::stream());
#else
      no_cuda("AdamW");
#endif
    }
  }
}

NamedTensors AdamW::state() const {
  NamedTensors s;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!m_[i].defined()) continue;
    const std::string& n = params_[i].first;
    s.emplace_back(n + ".exp_avg", m_[i]);
    s.emplace_back(n + ".exp_avg_sq", v_[i]);
    DL_CHECK(steps_[i] <= INT32_MAX, "AdamW: step count of '" << n << "' exceeds the I32 range");
    s.emplace_back(n + ".step", Tensor::from_vector<int32_t>({static_cast<int32_t>(steps_[i])}, {1}));
  }
  return s;
}

void AdamW::load_state(const NamedTensors& state) {
  std::map<std::string, Expected> expected;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [n, p] = params_[i];
    expected[n + ".exp_avg"] = {i, p.shape(), DType::F32};
    expected[n + ".exp_avg_sq"] = {i, p.shape(), DType::F32};
    expected[n + ".step"] = {i, {1}, DType::I32};
  }
  auto found = check_state("AdamW", state, expected);
  std::vector<std::string> problems;
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string& n = params_[i].first;
    const int have = int(found.count(n + ".exp_avg")) + int(found.count(n + ".exp_avg_sq")) +
                     int(found.count(n + ".step"));
    if (have != 0 && have != 3)
      problems.push_back("incomplete: " + n + " needs exp_avg, exp_avg_sq and step");
    if (have == 3 && found.at(n + ".step").item() < 1) problems.push_back("step < 1: " + n + ".step");
  }
  if (!problems.empty()) {
    std::ostringstream os;
    os << "AdamW.load_state: " << problems.size() << " problem" << (problems.size() > 1 ? "s" : "")
       << " (state unchanged):";
    for (const auto& p : problems) os << "\n  " << p;
    DL_FAIL(os.str());
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string& n = params_[i].first;
    const Device dev = params_[i].second.device();
    if (!found.count(n + ".exp_avg")) {
      m_[i] = v_[i] = Tensor();
      steps_[i] = 0;
      continue;
    }
    m_[i] = copy_to(found.at(n + ".exp_avg"), dev);
    v_[i] = copy_to(found.at(n + ".exp_avg_sq"), dev);
    steps_[i] = static_cast<int64_t>(found.at(n + ".step").item());
  }
}

// ---------------------------------------------------------------- clipping and schedule

double grad_norm(const NamedTensors& params) {
  double total = 0;
  std::vector<Tensor> grads;
  grads.reserve(params.size());
  for (const auto& [name, p] : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    DL_CHECK(g.dtype() == DType::F32, "grad_norm: gradient of '" << name << "' is " << g.desc());
    if (g.device() == Device::CPU)
      total += cpu::sum_squares(fptr(g), g.numel());
    else
      grads.push_back(g);
  }
  if (!grads.empty()) {
#ifdef DEEPERLAB_WITH_CUDA
    // One partial-sum row per tensor, one final reduction, one copy back: a single sync.
    const int64_t nb = cuda::kSumSquaresBlocks;
    Tensor partial = Tensor::empty({static_cast<int64_t>(grads.size()) * nb}, DType::F64, Device::CUDA);
    Tensor out = Tensor::empty({1}, DType::F64, Device::CUDA);
    double* pp = partial.data<double>();
    for (size_t k = 0; k < grads.size(); ++k)
      cuda::sum_squares_partial(pp + k * nb, fptr(grads[k]), grads[k].numel(), cuda::stream());
    cuda::sum_f64(out.data<double>(), pp, partial.numel(), cuda::stream());
    total += out.item();
#else
    no_cuda("grad_norm");
#endif
  }
  return std::sqrt(total);
}

double clip_grad_norm(const NamedTensors& params, double max_norm) {
  DL_CHECK(max_norm > 0, "clip_grad_norm: max_norm " << max_norm << " must be > 0");
  const double norm = grad_norm(params);
  if (!std::isfinite(norm)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef >= 1.0) return norm;
  const float a = static_cast<float>(coef);
  for (const auto& kv : params) {
    Tensor g = kv.second.grad();
    if (!g.defined()) continue;
    if (g.device() == Device::CPU) {
      cpu::scale_inplace(fptr(g), a, g.numel());
    } else {
#ifdef DEEPERLAB_WITH_CUDA
      cuda::scale_inplace(fptr(g), a, g.numel(), cuda::stream());
#endif
    }
  }
  return norm;
}

double poly_lr(double base, int64_t step, int64_t total, double power, int64_t warmup_steps,
               double warmup_start_factor) {
  DL_CHECK(total > 0, "poly_lr: total steps " << total << " must be > 0");
  DL_CHECK(step >= 0, "poly_lr: step " << step << " must be >= 0");
  const double frac = static_cast<double>(std::min(step, total)) / static_cast<double>(total);
  double lr = base * std::pow(1.0 - frac, power);
  if (warmup_steps > 0 && step < warmup_steps)
    lr *= warmup_start_factor + (1.0 - warmup_start_factor) * static_cast<double>(step) / warmup_steps;
  return lr;
}

}  // namespace dl
