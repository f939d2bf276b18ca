// Optimizers: single steps against hand-computed numbers, several steps against torch.optim
// (run through /usr/bin/python3), gradient clipping, the poly schedule, weight-decay filters,
// state export/import and bit-exact resumption, and the errors.
#include <cmath>
#include <cstring>

#include "core/optim.h"
#include "tests/testing.h"
#include "tests/weights_testing.h"
#include "weights/json_tensors.h"
#include "weights/safetensors.h"

using namespace dl;
using namespace dl::testing;
using Catch::Matchers::Contains;

namespace {

Tensor vec(std::vector<float> v) {
  const int64_t n = static_cast<int64_t>(v.size());
  return Tensor::from_vector<float>(v, {n});
}

void require_near(const Tensor& t, const std::vector<float>& want, double tol = 1e-6) {
  auto got = t.to_vector<float>();
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("index " << i << ": got " << got[i] << ", want " << want[i]);
    REQUIRE(std::fabs(got[i] - want[i]) <= tol * std::max(1.0f, std::fabs(want[i])));
  }
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

NamedTensors make_params(uint64_t seed) {
  Rng rng(seed);
  return {{"conv.weight", Tensor::randn({4, 3, 3, 3}, rng, 0.5)},
          {"bn.weight", Tensor::uniform({4}, rng, 0.5, 1.5)},
          {"bn.bias", Tensor::randn({4}, rng, 0.1)},
          {"head.weight", Tensor::randn({5, 4}, rng, 0.3)},
          {"frozen", Tensor::randn({3}, rng)}};  // never gets a gradient
}

// A deterministic gradient for step k: 2 (p - target) + noise, target and noise from the seed.
void fake_backward(const NamedTensors& params, int64_t k) {
  Rng rng(1000 + static_cast<uint64_t>(k));
  for (auto [name, p] : params) {
    if (name == "frozen") continue;
    Tensor noise = Tensor::randn(p.shape(), rng, 0.2);
    auto pv = p.to_vector<float>();
    auto nv = noise.to_vector<float>();
    std::vector<float> g(pv.size());
    for (size_t i = 0; i < g.size(); ++i) g[i] = 2.0f * (pv[i] - 0.25f) + nv[i];
    p.set_grad(Tensor::from_vector<float>(g, p.shape()));
  }
}

std::unique_ptr<Optimizer> make_opt(const std::string& kind, const NamedTensors& params) {
  if (kind == "sgd") {
    SGDOptions o;
    o.lr = 0.05;
    o.momentum = 0.9;
    o.weight_decay = 1e-3;
    o.nesterov = true;
    o.decay = decay_except_1d;
    return std::make_unique<SGD>(params, o);
  }
  AdamWOptions o;
  o.lr = 0.01;
  o.weight_decay = 0.05;
  o.decay = decay_except_1d;
  return std::make_unique<AdamW>(params, o);
}

NamedTensors clone_all(const NamedTensors& ts) {
  NamedTensors out;
  for (const auto& [n, t] : ts) out.emplace_back(n, t.clone());
  return out;
}

}  // namespace

TEST_CASE("SGD momentum=0.9 wd=0.01 lr=0.1: two steps by hand", "[optim]") {
  Tensor p = vec({1.0f, 2.0f});
  SGDOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  o.weight_decay = 0.01;
  SGD opt({{"p", p}}, o);
  p.set_grad(vec({0.5f, -1.0f}));
  opt.step();
  // d = g + 0.01 p = [0.51, -0.98]; buf = d; p -= 0.1 d
  require_near(p, {0.949f, 2.098f});
  opt.step();  // same gradient: d = [0.50949, -0.97902]; buf = 0.9 [0.51, -0.98] + d
  require_near(p, {0.852151f, 2.284102f});
  require_near(opt.state()[0].second, {0.96849f, -1.86102f});
  REQUIRE(opt.state()[0].first == "p.momentum_buffer");
}

TEST_CASE("SGD nesterov and momentum=0 by hand", "[optim]") {
  Tensor p = vec({1.0f});
  SGDOptions o;
  o.lr = 0.5;
  o.momentum = 0.5;
  o.nesterov = true;
  SGD opt({{"p", p}}, o);
  p.set_grad(vec({2.0f}));
  opt.step();  // buf = 2; d = 2 + 0.5 * 2 = 3; p = 1 - 1.5
  require_near(p, {-0.5f});
  opt.step();  // buf = 0.5 * 2 + 2 = 3; d = 2 + 1.5 = 3.5; p = -0.5 - 1.75
  require_near(p, {-2.25f});

  Tensor q = vec({1.0f});
  o.momentum = 0;
  o.nesterov = false;
  SGD plain({{"q", q}}, o);
  q.set_grad(vec({2.0f}));
  plain.step();
  plain.step();
  require_near(q, {-1.0f});
  REQUIRE(plain.state().empty());
}

TEST_CASE("AdamW lr=0.01 wd=0.1: first step by hand", "[optim]") {
  Tensor p = vec({1.0f, -2.0f, 0.5f});
  AdamWOptions o;
  o.lr = 0.01;
  o.weight_decay = 0.1;
  AdamW opt({{"p", p}}, o);
  p.set_grad(vec({0.5f, -3.0f, 0.0f}));
  opt.step();
  // First step: m^ = g, v^ = g^2, so the update is -lr * g / (|g| + eps) after p *= 1 - lr * wd.
  require_near(p, {0.999f - 0.01f, -1.998f + 0.01f, 0.4995f});
  auto st = opt.state();
  REQUIRE(st.size() == 3);
  REQUIRE(st[0].first == "p.exp_avg");
  require_near(st[0].second, {0.05f, -0.3f, 0.0f});
  require_near(st[1].second, {0.00025f, 0.009f, 0.0f});
  REQUIRE(st[2].second.to_vector<int32_t>() == std::vector<int32_t>{1});
}

TEST_CASE("weight-decay filter: decay_except_1d leaves biases and BN params alone", "[optim]") {
  Tensor w = Tensor::ones({2, 2}), b = Tensor::ones({2});
  SGDOptions o;
  o.lr = 1.0;
  o.momentum = 0;
  o.weight_decay = 0.1;
  o.decay = decay_except_1d;
  SGD opt({{"w", w}, {"b", b}}, o);
  w.set_grad(Tensor::zeros({2, 2}));
  b.set_grad(Tensor::zeros({2}));
  opt.step();
  require_near(w, {0.9f, 0.9f, 0.9f, 0.9f});
  require_near(b, {1.0f, 1.0f});
  // A name-based filter works too.
  Tensor w2 = Tensor::ones({2, 2});
  AdamWOptions a;
  a.weight_decay = 0.5;
  a.lr = 0.1;
  a.decay = [](const std::string& name, const Tensor&) { return name.find("nodecay") == std::string::npos; };
  AdamW ad({{"nodecay.w", w2}}, a);
  w2.set_grad(Tensor::zeros({2, 2}));
  ad.step();
  require_near(w2, {1.0f, 1.0f, 1.0f, 1.0f});
}

TEST_CASE("SGD and AdamW match torch.optim over 4 steps with a changing lr", "[optim][python]") {
  TempDir dir;
  const int steps = 4;
  NamedTensors init = make_params(11);
  // Gradients fixed up front (not computed from the params), so that Python can replay them.
  NamedTensors io;
  for (const auto& [n, t] : init) io.emplace_back("init/" + n, t);
  Rng rng(77);
  for (int k = 0; k < steps; ++k)
    for (const auto& [n, t] : init)
      if (n != "frozen") io.emplace_back("grad" + std::to_string(k) + "/" + n, Tensor::randn(t.shape(), rng));
  write_json_tensors(dir / "in.json", io);

  const std::string script = R"PY(
import json, sys
import torch
torch.set_num_threads(1)
io = json.load(open(sys.argv[1]))
t = lambda e: torch.tensor(e["data"], dtype=torch.float32).reshape(e["shape"])
names = [k[5:] for k in io if k.startswith("init/")]
steps = 4
lrs = [0.1 * (1 - k / 10) ** 0.9 for k in range(steps)]
configs = {
  "sgd_nesterov": lambda g: torch.optim.SGD(g, lr=lrs[0], momentum=0.9, nesterov=True),
  "sgd_damp": lambda g: torch.optim.SGD(g, lr=lrs[0], momentum=0.8, dampening=0.3),
  "sgd_plain": lambda g: torch.optim.SGD(g, lr=lrs[0], momentum=0.0),
  "adamw": lambda g: torch.optim.AdamW(g, lr=lrs[0], betas=(0.9, 0.99), eps=1e-6),
}
out = {}
for cfg, make in configs.items():
  params = {n: t(io["init/" + n]).clone().requires_grad_(True) for n in names}
  decay = [params[n] for n in names if params[n].dim() > 1]
  no_decay = [params[n] for n in names if params[n].dim() <= 1]
  opt = make([{"params": decay, "weight_decay": 0.02}, {"params": no_decay, "weight_decay": 0.0}])
  for k in range(steps):
    for g in opt.param_groups: g["lr"] = lrs[k]
    for n in names:
      key = "grad%d/%s" % (k, n)
      params[n].grad = t(io[key]) if key in io else None
    opt.step()
  for n in names:
    p = params[n].detach()
    out[cfg + "/" + n] = {"shape": list(p.shape), "dtype": "F32", "data": p.flatten().tolist()}
json.dump(out, open(sys.argv[2], "w"))
)PY";
  write_bytes(dir / "ref.py", script);
  if (!python_has("torch")) return;
  REQUIRE(run_python(dir / "ref.py", dir / "in.json " + dir / "out.json"));
  const NamedTensors ref = read_json_tensors(dir / "out.json");

  for (const std::string cfg : {"sgd_nesterov", "sgd_damp", "sgd_plain", "adamw"}) {
    {  // one Python run for all configs (a SECTION would re-run the whole case)
      NamedTensors params = clone_all(init);
      std::unique_ptr<Optimizer> opt;
      if (cfg == "adamw") {
        AdamWOptions o;
        o.beta2 = 0.99;
        o.eps = 1e-6;
        o.weight_decay = 0.02;
        o.decay = decay_except_1d;
        opt = std::make_unique<AdamW>(params, o);
      } else {
        SGDOptions o;
        o.momentum = cfg == "sgd_plain" ? 0.0 : cfg == "sgd_damp" ? 0.8 : 0.9;
        o.dampening = cfg == "sgd_damp" ? 0.3 : 0.0;
        o.nesterov = cfg == "sgd_nesterov";
        o.weight_decay = 0.02;
        o.decay = decay_except_1d;
        opt = std::make_unique<SGD>(params, o);
      }
      for (int k = 0; k < steps; ++k) {
        opt->set_lr(poly_lr(0.1, k, 10));
        for (auto [n, p] : params) {
          Tensor g = find_tensor(io, "grad" + std::to_string(k) + "/" + n);
          if (g.defined())
            p.set_grad(g.clone());
          else
            p.zero_grad();
        }
        opt->step();
      }
      for (const auto& [n, p] : params) {
        INFO(cfg << " " << n);
        Tensor want = find_tensor(ref, cfg + "/" + n);
        REQUIRE(want.defined());
        DL_REQUIRE_CLOSE(p, want, 2e-5);  // float rounding-order differences (FMA), ~1 ulp
      }
      REQUIRE(bit_equal(params.back().second, init.back().second));  // "frozen" never moved
    }
  }
}

TEST_CASE("clip_grad_norm: norm 13 clipped to 6.5, to 100 untouched, NaN untouched", "[optim]") {
  Tensor a = vec({0, 0}), b = vec({0}), c = vec({5});
  NamedTensors ps = {{"a", a}, {"b", b}, {"c", c}};  // c has no gradient
  a.set_grad(vec({3, 4}));
  b.set_grad(vec({12}));
  REQUIRE(grad_norm(ps) == Approx(13.0).epsilon(1e-12));
  REQUIRE(clip_grad_norm(ps, 100.0) == Approx(13.0).epsilon(1e-12));
  require_near(a.grad(), {3, 4});
  REQUIRE(clip_grad_norm(ps, 6.5) == Approx(13.0).epsilon(1e-12));
  const float s = static_cast<float>(6.5 / (13.0 + 1e-6));  // torch's clip_coef
  require_near(a.grad(), {3 * s, 4 * s}, 1e-7);
  require_near(b.grad(), {12 * s}, 1e-7);
  REQUIRE(grad_norm(ps) == Approx(6.5).epsilon(1e-6));
  b.set_grad(vec({NAN}));
  REQUIRE(std::isnan(clip_grad_norm(ps, 1.0)));
  require_near(a.grad(), {3 * s, 4 * s}, 1e-7);
  REQUIRE_THAT(error_of([&] { clip_grad_norm(ps, 0.0); }), Contains("max_norm"));
}

TEST_CASE("grad_norm of a large tensor does not depend on the thread count", "[optim]") {
  Rng rng(2);
  Tensor p = Tensor::zeros({100003});
  p.set_grad(Tensor::randn({100003}, rng));
  const NamedTensors ps = {{"p", p}};
  const double n1 = grad_norm(ps);
  double ref = 0;
  for (float x : p.grad().to_vector<float>()) ref += double(x) * x;
  REQUIRE(n1 == Approx(std::sqrt(ref)).epsilon(1e-12));
  REQUIRE(grad_norm(ps) == n1);
}

TEST_CASE("poly_lr base=0.1 total=100 power=0.9 with and without warm-up", "[optim]") {
  REQUIRE(poly_lr(0.1, 0, 100) == Approx(0.1));
  REQUIRE(poly_lr(0.1, 50, 100) == Approx(0.1 * std::pow(0.5, 0.9)));
  REQUIRE(poly_lr(0.1, 99, 100) == Approx(0.1 * std::pow(0.01, 0.9)));
  REQUIRE(poly_lr(0.1, 100, 100) == 0.0);
  REQUIRE(poly_lr(0.1, 150, 100) == 0.0);
  REQUIRE(poly_lr(0.1, 50, 100, 1.0) == Approx(0.05));
  // Warm-up over 10 steps from 0.1x: step 0 -> 0.1x, step 5 -> 0.55x, step 10 -> plain poly.
  REQUIRE(poly_lr(0.1, 0, 100, 0.9, 10, 0.1) == Approx(0.01));
  REQUIRE(poly_lr(0.1, 5, 100, 0.9, 10, 0.1) == Approx(0.1 * 0.55 * std::pow(0.95, 0.9)));
  REQUIRE(poly_lr(0.1, 10, 100, 0.9, 10, 0.1) == Approx(0.1 * std::pow(0.9, 0.9)));
  REQUIRE(poly_lr(0.1, 5, 100, 0.9, 10, 0.0) == Approx(0.05 * std::pow(0.95, 0.9)));
  REQUIRE_THAT(error_of([] { poly_lr(0.1, 1, 0); }), Contains("total"));
}

TEST_CASE("resume: 7 steps == 3 steps + save/load through safetensors + 4 steps, bit-exact", "[optim]") {
  TempDir dir;
  for (const std::string kind : {"sgd", "adamw"}) {
    DYNAMIC_SECTION(kind) {
      const int total = 7, split = 3;
      auto run = [&](NamedTensors& params, Optimizer& opt, int from, int to) {
        for (int k = from; k < to; ++k) {
          opt.set_lr(poly_lr(0.05, k, total, 0.9, 2, 0.2));
          fake_backward(params, k);
          clip_grad_norm(params, 1.0);
          opt.step();
          opt.zero_grad();
        }
      };
      NamedTensors a = make_params(5);
      auto opt_a = make_opt(kind, a);
      run(a, *opt_a, 0, total);

      NamedTensors b = make_params(5);
      auto opt_b = make_opt(kind, b);
      run(b, *opt_b, 0, split);
      NamedTensors saved = b;
      for (const auto& kv : opt_b->state()) saved.emplace_back("optim/" + kv.first, kv.second);
      write_safetensors(dir / (kind + ".safetensors"), saved);

      NamedTensors loaded = read_safetensors(dir / (kind + ".safetensors"));
      NamedTensors c = make_params(99);  // different init, overwritten by the load
      NamedTensors opt_state;
      for (const auto& [n, t] : loaded) {
        if (n.rfind("optim/", 0) == 0)
          opt_state.emplace_back(n.substr(6), t);
        else
          find_tensor(c, n).copy_(t);
      }
      auto opt_c = make_opt(kind, c);
      opt_c->load_state(opt_state);
      run(c, *opt_c, split, total);
      for (size_t i = 0; i < a.size(); ++i) {
        INFO(kind << " " << a[i].first);
        REQUIRE(bit_equal(a[i].second, c[i].second));
      }
      auto sa = opt_a->state(), sc = opt_c->state();
      REQUIRE(sa.size() == sc.size());
      for (size_t i = 0; i < sa.size(); ++i) {
        INFO(sa[i].first);
        REQUIRE(sa[i].first == sc[i].first);
        REQUIRE(bit_equal(sa[i].second, sc[i].second));
      }
    }
  }
}

TEST_CASE("optimizer load_state rejects bad state, lists every problem, changes nothing", "[optim]") {
  NamedTensors ps = make_params(1);
  AdamW opt(ps, AdamWOptions{});
  fake_backward(ps, 0);
  opt.step();
  const NamedTensors before = clone_all(opt.state());
  NamedTensors bad = {{"conv.weight.exp_avg", Tensor::zeros({4, 3, 3, 2})},
                      {"nope.exp_avg", Tensor::zeros({1})},
                      {"bn.bias.exp_avg", Tensor::zeros({4})},
                      {"head.weight.step", Tensor::zeros({1})}};
  const std::string e = error_of([&] { opt.load_state(bad); });
  INFO(e);
  REQUIRE_THAT(e, Contains("3 problems") && Contains("state unchanged"));
  REQUIRE_THAT(e, Contains("mismatch: conv.weight.exp_avg: expected F32[4, 3, 3, 3], got F32[4, 3, 3, 2]"));
  REQUIRE_THAT(e, Contains("unexpected: nope.exp_avg"));
  REQUIRE_THAT(e, Contains("mismatch: head.weight.step: expected I32[1]"));
  REQUIRE_THAT(error_of([&] {
                 opt.load_state({{"bn.bias.exp_avg", Tensor::zeros({4})}});
               }),
               Contains("incomplete: bn.bias"));
  const NamedTensors after = opt.state();
  REQUIRE(after.size() == before.size());
  for (size_t i = 0; i < after.size(); ++i) REQUIRE(bit_equal(after[i].second, before[i].second));
  // Loading an empty state resets it.
  opt.load_state({});
  REQUIRE(opt.state().empty());
  SGD sgd(ps, SGDOptions{});
  REQUIRE_THAT(error_of([&] {
                 sgd.load_state({{"conv.weight.exp_avg", Tensor::zeros({1})}});
               }),
               Contains("unexpected: conv.weight.exp_avg"));
}

TEST_CASE("optimizer argument errors", "[optim]") {
  Tensor p = vec({1, 2});
  REQUIRE_THAT(error_of([&] { SGD({{"p", p}, {"p", p}}, SGDOptions{}); }), Contains("appears twice"));
  REQUIRE_THAT(error_of([&] {
                 SGD({{"i", Tensor::zeros({2}, DType::I32)}}, SGDOptions{});
               }),
               Contains("F32 required"));
  SGDOptions o;
  o.momentum = 0;
  o.nesterov = true;
  REQUIRE_THAT(error_of([&] { SGD({{"p", p}}, o); }), Contains("nesterov"));
  SGD opt({{"p", p}}, SGDOptions{});
  p.set_grad(vec({1, 2, 3}));
  REQUIRE_THAT(error_of([&] { opt.step(); }), Contains("gradient of 'p'"));
}
