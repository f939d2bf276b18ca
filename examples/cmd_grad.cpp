// `deeperlab grad`: one image and its panoptic ground truth -> every loss term and every parameter
// gradient of one forward/backward pass, written to a safetensors file (for checking a model
// against another implementation, or a training setup before a long run). BatchNorm runs in eval
// mode by default (running statistics), so the result does not depend on a batch.
#include <cstdio>
#include <string>

#include "core/storage.h"
#include "examples/cli.h"
#include "parser/config.h"
#include "parser/model.h"
#include "parser/trainer.h"
#include "parser/panoptic.h"
#include "weights/load.h"
#include "weights/safetensors.h"

namespace dl::cli {

namespace {
std::string basename_of(const std::string& p) {
  const auto s = p.find_last_of('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}
}  // namespace

int cmd_grad(int argc, char** argv) {
  ArgParser ap("grad",
               "One image + its panoptic ground truth -> every loss term and every parameter gradient "
               "(safetensors: loss.<term> scalars and grad.<parameter name>).");
  ap.option("config", "config JSON (model and loss sections are used)", "", true)
      .option("image", "the RGB image (JPEG/PNG)", "", true)
      .option("gt-json", "COCO panoptic JSON holding the image's annotation and the categories", "", true)
      .option("gt-png", "the image's panoptic PNG (its annotation is found by file name)", "", true)
      .option("weights",
              "initial weights (.safetensors or .json); default: the config's seeded initialisation")
      .option("out", "output safetensors file", "grads.safetensors")
      .option("device", "cpu | cuda", "cpu")
      .option("step", "training step (for the hard-pixel warm-up of the semantic loss)", "0")
      .flag("train-bn", "BatchNorm in training mode (batch statistics; needs the model to accept batch 1)")
      .option("threads", "CPU threads (0 = all cores)", "0");
  if (!ap.parse(argc, argv)) return 0;
  set_threads(ap.get_int("threads"));
  const std::string dev = ap.get("device");
  DL_CHECK(dev == "cpu" || dev == "cuda", "--device must be cpu or cuda, got '" << dev << "'");
  const Device device = dev == "cuda" ? Device::CUDA : Device::CPU;
  if (device == Device::CUDA)
    DL_CHECK(cuda_available(), "--device cuda: no usable CUDA device (or a build without CUDA)");
  const int64_t step = ap.get_int("step");
  DL_CHECK(step >= 0, "--step must be >= 0, got " << step);

  const Config cfg = load_config(ap.get("config"));
  const PanopticJson gt_json = read_panoptic_json(ap.get("gt-json"));
  const std::string png = ap.get("gt-png");
  const PanopticAnnotation* ann = nullptr;
  for (const auto& a : gt_json.annotations)
    if (basename_of(a.file_name) == basename_of(png)) ann = &a;
  DL_CHECK(ann != nullptr, "grad: " << ap.get("gt-json") << " has no annotation with file_name '"
                                    << basename_of(png) << "' (" << gt_json.annotations.size()
                                    << " annotations)");
  const PanopticMap gt = load_panoptic(png, *ann, gt_json.categories);

  int64_t h = 0, w = 0;
  const std::vector<uint8_t> rgb = read_rgb(ap.get("image"), h, w);
  DL_CHECK(h == gt.height && w == gt.width, "grad: image " << ap.get("image") << " is " << h << "x" << w
                                                           << " but its panoptic PNG " << png << " is "
                                                           << gt.height << "x" << gt.width);
  Tensor img = Tensor::empty({1, 3, h, w}, DType::U8);
  uint8_t* q = img.data<uint8_t>();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < h * w; ++i) q[c * h * w + i] = rgb[i * 3 + c];

  DeeperLab model(cfg.model);
  if (ap.has("weights")) load_state(model.state_dict(), read_weights(ap.get("weights")), ap.get("weights"));
  model.train(ap.get_flag("train-bn"));
  model.to(device);
  model.zero_grad();

  const HeadOutputs out = model.forward(normalize_image(img).to(device));
  const ClassMap classes(gt_json.categories);
  DL_CHECK(out.semantic.size(1) == classes.num_classes(),
           "grad: the model predicts " << out.semantic.size(1) << " semantic classes but the dataset has "
                                       << classes.num_classes() << " categories (set model.num_classes in the config)");
  const Targets targets = build_targets_on(gt, classes, target_config(cfg), device, png);
  const LossTerms loss = deeperlab_loss(out, targets, loss_config(cfg), step);
  DL_CHECK(all_finite(loss), "grad: the loss is not finite (NaN or Inf)");
  const std::vector<std::pair<std::string, Tensor>> terms{
      {"loss.semantic", loss.semantic},           {"loss.heatmap", loss.heatmap},
      {"loss.short_offsets", loss.short_offsets}, {"loss.mid_offsets", loss.mid_offsets},
      {"loss.long_offsets", loss.long_offsets},   {"loss.total", loss.total}};
  loss.total.backward();

  NamedTensors dump;
  for (const auto& [name, t] : terms) {
    std::printf("%-20s %.9g\n", name.c_str(), t.item());
    dump.emplace_back(name, t.to(Device::CPU).view({1}));
  }
  int64_t with_grad = 0;
  for (const auto& [name, prm] : model.named_parameters()) {
    Tensor g = prm.grad();
    if (g.defined())
      ++with_grad;
    else
      g = Tensor::zeros(prm.shape(), prm.dtype(), prm.device());
    dump.emplace_back("grad." + name, g.to(Device::CPU));
  }
  write_safetensors(ap.get("out"), dump,
                    {{"config", ap.get("config")},
                     {"image", ap.get("image")},
                     {"gt_png", png},
                     {"step", std::to_string(step)},
                     {"device", dev},
                     {"batch_norm", ap.get_flag("train-bn") ? "train" : "eval"}});
  std::printf("instances %lld, parameters with a gradient %lld of %zu, written to %s\n",
              (long long)targets.instances[0].size(), (long long)with_grad, model.named_parameters().size(),
              ap.get("out").c_str());
  return 0;
}

}  // namespace dl::cli
