// The training loop, validation and single-image inference (see trainer.h for the resume rule).
#include "parser/trainer.h"

#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/optim.h"
#include "parser/instance.h"
#include "parser/losses.h"
#include "weights/checkpoint.h"
#include "weights/load.h"

namespace dl {
namespace fs = std::filesystem;

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::CPU;
  if (s == "cuda") return Device::CUDA;
  DL_FAIL("unknown device '" << s << "' (expected cpu or cuda)");
}

DatasetPaths dataset_paths(const Config& cfg, const std::string& data_root, const std::string& split) {
  const bool train = split == "train";
  const std::string& json = train ? cfg.data.train_json : cfg.data.val_json;
  if (!json.empty()) {
    DatasetPaths p;
    p.layout = "custom";
    p.json = json;
    p.image_dir = train ? cfg.data.train_images : cfg.data.val_images;
    p.panoptic_dir = train ? cfg.data.train_panoptic : cfg.data.val_panoptic;
    p.recursive_images = true;
    DL_CHECK(!p.image_dir.empty() && !p.panoptic_dir.empty(),
             "config: data." << split << "_json is set, so data." << split << "_images and data." << split
                             << "_panoptic must be set too");
    return p;
  }
  DL_CHECK(!data_root.empty(), "no dataset: give --data DIR or set data." << split << "_json in the config");
  return resolve_dataset(data_root, split, cfg.data.layout);
}

// ---------------------------------------------------------------- inference

static int64_t next_16k1(int64_t n) {
  return ((std::max<int64_t>(n, 1) - 1 + 15) / 16) * 16 + 1;
}

HeadOutputs run_model(const DeeperLab& model, const std::vector<float>& image, int64_t h, int64_t w,
                      Device device) {
  NoGradGuard ng;
  const int64_t ph = next_16k1(h), pw = next_16k1(w);
  Tensor x = Tensor::zeros({1, 3, ph, pw});
  float* d = x.data<float>();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < h; ++y)
      std::copy(&image[(c * h + y) * w], &image[(c * h + y) * w] + w, d + (c * ph + y) * pw);
  HeadOutputs o = model.forward(x.to(device));
  if (ph != h || pw != w) {
    o.semantic = crop2d(o.semantic, 0, 0, h, w);
    o.heatmap = crop2d(o.heatmap, 0, 0, h, w);
    o.long_offsets = crop2d(o.long_offsets, 0, 0, h, w);
    o.short_offsets = crop2d(o.short_offsets, 0, 0, h, w);
    o.mid_offsets = crop2d(o.mid_offsets, 0, 0, h, w);
  }
  return o;
}

TargetConfig target_config(const Config& cfg) {
  TargetConfig t;
  t.radius = cfg.loss.keypoint_radius;
  t.small_area = cfg.loss.small_instance_area;
  t.small_weight = cfg.loss.small_instance_weight;
  return t;
}

LossConfig loss_config(const Config& cfg) {
  LossConfig l;
  l.semantic_weight = cfg.loss.semantic_weight;
  l.heatmap_weight = cfg.loss.heatmap_weight;
  l.short_weight = cfg.loss.short_offset_weight;
  l.mid_weight = cfg.loss.mid_offset_weight;
  l.long_weight = cfg.loss.long_offset_weight;
  l.keep_fraction = cfg.loss.hard_pixel_fraction;
  l.warmup_steps = cfg.loss.hard_pixel_warmup_steps;
  l.radius = cfg.loss.keypoint_radius;
  return l;
}

InferenceConfig inference_config(const Config& cfg) {
  InferenceConfig p;
  p.radius = cfg.loss.keypoint_radius;
  p.refine_steps = static_cast<int>(cfg.inference.refine_iterations);
  p.short_weight = cfg.inference.short_score_weight;
  p.long_weight = cfg.inference.long_score_weight;
  p.keypoint_threshold = cfg.inference.keypoint_threshold;
  p.nms_radius = cfg.inference.nms_radius;
  p.box_nms_iou = cfg.inference.box_nms_iou;
  p.min_area = cfg.inference.min_area;
  return p;
}

PanopticMap predict(const HeadOutputs& out, const ClassMap& classes, const Config& cfg) {
  return predict_panoptic(out, classes, inference_config(cfg));
}

std::string format_eval(const EvalResult& r) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(3);
  os << "class                  PQ     SQ     RQ     PC     IoU\n";
  auto cell = [&](bool valid, double v) {
    if (valid)
      os << std::setw(7) << v;
    else
      os << "      -";
  };
  for (const auto& c : r.per_class) {
    std::string n = c.name + (c.isthing ? " (thing)" : " (stuff)");
    n.resize(20, ' ');
    os << n;
    cell(c.pq_valid, c.pq), cell(c.pq_valid, c.sq), cell(c.pq_valid, c.rq), cell(c.pc_valid, c.pc);
    cell(c.iou_valid, c.iou);
    os << "\n";
  }
  os << "all                 ";
  cell(true, r.all.pq), cell(true, r.all.sq), cell(true, r.all.rq), cell(true, r.all.pc), cell(true, r.miou);
  os << "\nthings              ";
  cell(true, r.things.pq), cell(true, r.things.sq), cell(true, r.things.rq), cell(true, r.things.pc);
  os << "\nstuff               ";
  cell(true, r.stuff.pq), cell(true, r.stuff.sq), cell(true, r.stuff.rq), cell(true, r.stuff.pc);
  os << "\n" << r.images << " images\n";
  return os.str();
}

EvalResult evaluate(const DeeperLab& model, const PanopticDataset& data, const Config& cfg, Device device,
                    int64_t max_images, const std::function<void(int64_t, int64_t)>& progress) {
  const ClassMap classes(data.categories());
  PanopticEvaluator ev(data.categories());
  const int64_t n = max_images > 0 ? std::min(max_images, data.size()) : data.size();
  for (int64_t i = 0; i < n; ++i) {
    Sample s = data.load(i, true);
    HeadOutputs out = run_model(model, s.image, s.height, s.width, device);
    PanopticMap pred = predict(out, classes, cfg);
    ev.add(s.gt, pred, s.name);
    if (progress) progress(i + 1, n);
  }
  return ev.result();
}

void load_model_weights(DeeperLab& model, const std::string& path) {
  load_state(model.state_dict(), read_weights(path), path, true);
}

void save_train_checkpoint(const std::string& path, const DeeperLab& model, const Optimizer& optim, int64_t step,
                           const std::string& config_json) {
  try {
    save_checkpoint(path, model.state_dict(), &optim, step, nullptr,
                    nlohmann::json{{"config", nlohmann::json::parse(config_json)}});
  } catch (const std::exception& e) {
    DL_FAIL("train: could not write checkpoint " << path
                                                 << " (the previous one, if any, is intact): " << e.what());
  }
}

int64_t load_train_checkpoint(const std::string& path, DeeperLab& model, Optimizer& optim) {
  return load_checkpoint(path, model.state_dict(), &optim, nullptr).step;
}

static int64_t g_nan_step = 0;
void set_nan_loss_at_step_for_testing(int64_t step) {
  g_nan_step = step;
}

// ---------------------------------------------------------------- training

namespace {

double learning_rate(const TrainConfig& t, int64_t step) {
  if (t.lr_policy == "poly") return poly_lr(t.learning_rate, step, t.steps, t.poly_power, t.warmup_steps);
  DL_CHECK(t.lr_policy == "constant",
           "config: train.lr_policy must be poly or constant, got '" << t.lr_policy << "'");
  return poly_lr(t.learning_rate, step, t.steps, 0.0, t.warmup_steps);  // power 0: constant after warm-up
}

std::unique_ptr<Optimizer> make_optimizer(const TrainConfig& t, const NamedTensors& params) {
  if (t.optimizer == "sgd") {
    SGDOptions o;
    o.lr = t.learning_rate;
    o.momentum = t.momentum;
    o.weight_decay = t.weight_decay;
    o.decay = decay_except_1d;
    return std::make_unique<SGD>(params, o);
  }
  DL_CHECK(t.optimizer == "adam" || t.optimizer == "adamw",
           "config: train.optimizer must be sgd or adamw, got '" << t.optimizer << "'");
  AdamWOptions o;
  o.lr = t.learning_rate;
  o.weight_decay = t.weight_decay;
  o.decay = decay_except_1d;
  return std::make_unique<AdamW>(params, o);
}

std::string fmt(double v, int prec = 4) {
  std::ostringstream os;
  os << std::setprecision(prec) << v;
  return os.str();
}

}  // namespace

TrainResult train(const TrainOptions& opt) {
  const Config& cfg = opt.config;
  const TrainConfig& tc = cfg.train;
  const Device device = parse_device(opt.device);
  DL_CHECK(tc.batch_size >= 2, "config " << opt.config_path
                                         << ": train.batch_size must be >= 2 (BatchNorm in training "
                                            "mode needs more than one value per channel), got "
                                         << tc.batch_size);
  DL_CHECK(tc.steps > 0, "train: the number of steps must be positive, got " << tc.steps);
  const std::string out_dir = opt.out_dir.empty() ? tc.output_dir : opt.out_dir;

  // ---- data ----
  PanopticDataset train_data(dataset_paths(cfg, opt.data_root, "train"));
  const ClassMap classes(train_data.categories());
  DL_CHECK(classes.num_classes() == cfg.model.num_classes,
           "config " << opt.config_path << ": model.num_classes is " << cfg.model.num_classes
                     << " but the dataset " << train_data.paths().json << " has " << classes.num_classes()
                     << " categories");
  std::unique_ptr<PanopticDataset> val_data;
  if (tc.val_every > 0)
    val_data = std::make_unique<PanopticDataset>(dataset_paths(cfg, opt.data_root, "val"));

  const TargetConfig target_cfg = target_config(cfg);

  LoaderOptions lo;
  lo.batch_size = tc.batch_size;
  lo.seed = static_cast<uint64_t>(tc.seed);
  lo.shuffle = cfg.data.shuffle;
  lo.threads = static_cast<int>(cfg.data.loader_threads);
  lo.augment.enabled = true;
  lo.augment.crop_height = cfg.data.crop_height;
  lo.augment.crop_width = cfg.data.crop_width;
  lo.augment.min_scale = cfg.data.min_scale;
  lo.augment.max_scale = cfg.data.max_scale;
  lo.augment.scale_step = cfg.data.scale_step;
  lo.augment.flip = cfg.data.hflip;

  // ---- model and optimizer ----
  DeeperLab model(cfg.model);
  model.to(device);
  const NamedTensors params = model.named_parameters();
  std::unique_ptr<Optimizer> optim = make_optimizer(tc, params);
  const LossConfig lp = loss_config(cfg);
  if (const char* e = std::getenv("DEEPERLAB_TEST_NAN_AT_STEP")) g_nan_step = std::atoll(e);

  const HostCacheScope host_cache;  // every step reuses the previous step's big host buffers
  int64_t step = 0;
  if (!opt.init.empty()) {
    DL_CHECK(opt.resume.empty(),
             "train: --init and --resume exclude each other (a checkpoint holds every weight)");
    NamedTensors src = read_weights(opt.init);
    NamedTensors bb = model.backbone->state_dict();
    // Accept names with or without the "backbone." prefix.
    NamedTensors renamed;
    for (auto& kv : src) {
      std::string n = kv.first;
      if (n.rfind("backbone.", 0) == 0) n = n.substr(9);
      renamed.emplace_back(n, kv.second);
    }
    load_state(bb, renamed, opt.init, false);
    int64_t loaded = 0;
    for (const auto& kv : bb)
      if (find_tensor(renamed, kv.first).defined()) ++loaded;
    if (!opt.quiet)
      std::printf("init: loaded %lld of %zu backbone tensors from %s (%zu tensors in the file)\n",
                  static_cast<long long>(loaded), bb.size(), opt.init.c_str(), src.size());
  }
  if (!opt.resume.empty()) {
    step = load_train_checkpoint(opt.resume, model, *optim);
    DL_CHECK(step <= tc.steps, "train: checkpoint " << opt.resume << " is at step " << step
                                                    << ", past train.steps = " << tc.steps);
    if (!opt.quiet)
      std::printf("resumed from %s at step %lld\n", opt.resume.c_str(), static_cast<long long>(step));
  }

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  DL_CHECK(!ec, "train: cannot create output folder " << out_dir << ": " << ec.message());
  const std::string log_path = (fs::path(out_dir) / "train_log.jsonl").string();
  if (!opt.resume.empty() && fs::exists(log_path)) {
    // A run interrupted after its last checkpoint logged steps that the resumed run repeats: drop them.
    std::ifstream in(log_path);
    std::string line, kept;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.contains("step") && j["step"].is_number_integer() &&
          j["step"].get<int64_t>() <= step)
        kept += line + "\n";
    }
    in.close();
    write_file_atomic(log_path, kept);
  }
  std::ofstream log(log_path, opt.resume.empty() ? std::ios::trunc : std::ios::app);
  DL_CHECK(log, "train: cannot write the log " << log_path);
  {
    // The categories the model predicts, for `deeperlab infer` on plain images.
    PanopticJson cats;
    cats.categories = train_data.categories();
    write_panoptic_json((fs::path(out_dir) / "categories.json").string(), cats);
  }
  const std::string ckpt_path = (fs::path(out_dir) / "checkpoint.safetensors").string();

  TrainResult result;
  result.step = step;
  auto save = [&](int64_t at) {
    save_train_checkpoint(ckpt_path, model, *optim, at, config_to_json(cfg));
    result.checkpoint = ckpt_path;
  };

  Loader loader(train_data, classes, target_cfg, lo, step);
  const int64_t last = opt.stop_after > 0 ? std::min(opt.stop_after, tc.steps) : tc.steps;
  const int64_t first_step = step;
  std::string last_extra;
  const std::string label = first_step ? "train (resumed at " + std::to_string(first_step) + ")" : "train";
  const auto t_start = std::chrono::steady_clock::now();
  int64_t images_done = 0;
  model.train();
  while (step < last) {
    const auto t0 = std::chrono::steady_clock::now();
    Batch b = loader.next();
    const double lr = learning_rate(tc, step);
    optim->set_lr(lr);
    Tensor images = b.images.to(device);
    Targets targets = device == Device::CPU ? b.targets : b.targets.to(device);
    HeadOutputs out = model.forward(images);
    LossTerms loss = deeperlab_loss(out, targets, lp, step);
    double total = loss.total.item();
    if (g_nan_step > 0 && step + 1 == g_nan_step) total = std::nan("");
    if (!std::isfinite(total)) {
      if (opt.progress) opt.progress(step - first_step, last - first_step, label, last_extra, true);
      DL_FAIL("train: the loss became "
              << total << " at step " << step + 1 << " (lr " << lr
              << "); stopping. Lower train.learning_rate or enable train.grad_clip_norm"
              << (result.checkpoint.empty() && opt.resume.empty()
                      ? std::string(" (no checkpoint was written yet)")
                      : "; the last good checkpoint is " +
                            (result.checkpoint.empty() ? opt.resume : result.checkpoint)));
    }
    model.zero_grad();
    loss.total.backward();
    const double gnorm = clip_grad_norm(params, tc.grad_clip_norm > 0 ? tc.grad_clip_norm : 1e300);
    DL_CHECK(std::isfinite(gnorm), "train: the gradient norm became "
                                       << gnorm << " at step " << step + 1
                                       << "; stopping (the last good checkpoint is kept)");
    optim->step();
    ++step;
    images_done += tc.batch_size;
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double ips = tc.batch_size / std::max(dt, 1e-9);

    std::map<std::string, double> terms{{"loss", total},
                                        {"semantic", loss.semantic.item()},
                                        {"heatmap", loss.heatmap.item()},
                                        {"short_offsets", loss.short_offsets.item()},
                                        {"mid_offsets", loss.mid_offsets.item()},
                                        {"long_offsets", loss.long_offsets.item()}};
    result.last_losses = terms;
    nlohmann::ordered_json line;
    line["step"] = step;
    line["lr"] = lr;
    for (const auto& kv : terms) line[kv.first] = kv.second;
    line["grad_norm"] = gnorm;
    line["images_per_s"] = ips;
    log << line.dump() << "\n";
    log.flush();
    if (opt.progress) {
      std::string extra = "loss " + fmt(total) + " (sem " + fmt(terms["semantic"], 3) + " hm " +
                          fmt(terms["heatmap"], 3) + " s " + fmt(terms["short_offsets"], 3) + " m " +
                          fmt(terms["mid_offsets"], 3) + " l " + fmt(terms["long_offsets"], 3) + ") " +
                          fmt(ips, 3) + " img/s";
      last_extra = extra;
      if (step < last) opt.progress(step - first_step, last - first_step, label, extra, false);
    }

    if (tc.checkpoint_every > 0 && step % tc.checkpoint_every == 0 && step < last) save(step);
    if (val_data && step % tc.val_every == 0) {
      model.eval();
      EvalResult r = evaluate(model, *val_data, cfg, device, tc.val_images);
      model.train();
      result.validated = true;
      result.val = r;
      nlohmann::ordered_json v;
      v["step"] = step;
      v["val"] = {{"pq", r.all.pq},         {"sq", r.all.sq}, {"rq", r.all.rq}, {"pq_things", r.things.pq},
                  {"pq_stuff", r.stuff.pq}, {"pc", r.all.pc}, {"miou", r.miou}, {"images", r.images}};
      log << v.dump() << "\n";
      log.flush();
      if (!opt.quiet) {
        if (opt.progress && isatty(2)) std::fprintf(stderr, "\n");
        std::printf("step %lld: val PQ %.3f (things %.3f, stuff %.3f) PC %.3f mIoU %.3f on %lld images\n",
                    static_cast<long long>(step), r.all.pq, r.things.pq, r.stuff.pq, r.all.pc, r.miou,
                    static_cast<long long>(r.images));
        std::fflush(stdout);
      }
    }
  }
  if (opt.progress) opt.progress(step - first_step, last - first_step, label, last_extra, true);
  save(step);
  result.step = step;
  const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  if (!opt.quiet)
    std::printf("trained to step %lld (%.1f images/s); checkpoint %s; log %s\n", static_cast<long long>(step),
                el > 0 ? images_done / el : 0.0, ckpt_path.c_str(), log_path.c_str());
  return result;
}

}  // namespace dl
