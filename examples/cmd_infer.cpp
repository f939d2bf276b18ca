// `deeperlab infer`: image, folder or dataset split -> panoptic PNG + COCO panoptic JSON + colour
// overlay per image; --dump writes the named intermediate features and raw head outputs of the
// first image to safetensors.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>

#include "core/autograd.h"
#include "core/error.h"
#include "examples/cli.h"
#include "parser/config.h"
#include "parser/data.h"
#include "parser/panoptic_output.h"
#include "parser/trainer.h"
#include "weights/load.h"

namespace dl::cli {
namespace fs = std::filesystem;

namespace {
struct Input {
  std::string name, path;
  int64_t image_id = 0;
};

// Writes OUT/panoptic/NAME.png, OUT/overlay/NAME.png and, at finish(), OUT/panoptic.json
// (parser/panoptic_output.h).
class OutputWriter {
 public:
  OutputWriter(std::string dir, std::vector<Category> cats) : dir_(std::move(dir)), cats_(std::move(cats)) {
    std::error_code ec;
    for (const char* sub : {"panoptic", "overlay"}) {
      fs::create_directories(fs::path(dir_) / sub, ec);
      DL_CHECK(!ec, "infer: cannot create " << (fs::path(dir_) / sub).string() << ": " << ec.message());
    }
  }
  void add(const std::string& name, int64_t image_id, const std::vector<uint8_t>& rgb, const PanopticMap& p) {
    const std::string png = fs::path(name).replace_extension(".png").string();
    const fs::path pp = fs::path(dir_) / "panoptic" / png, op = fs::path(dir_) / "overlay" / png;
    std::error_code ec;
    fs::create_directories(pp.parent_path(), ec);
    fs::create_directories(op.parent_path(), ec);
    PanopticAnnotation a = write_panoptic_prediction(pp.string(), p, image_id);
    a.file_name = png;  // keep sub-folders of folder inputs
    anns_.push_back(std::move(a));
    write_panoptic_overlay(op.string(), rgb, p, cats_);
    images_.push_back({image_id, name, p.width, p.height});
  }
  void finish() {
    write_predictions_json((fs::path(dir_) / "panoptic.json").string(), anns_, cats_, images_);
  }

 private:
  std::string dir_;
  std::vector<Category> cats_;
  std::vector<PanopticAnnotation> anns_;
  std::vector<ImageInfo> images_;
};

bool is_image_file(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), ::tolower);
  return e == ".png" || e == ".jpg" || e == ".jpeg" || e == ".bmp";
}
}  // namespace

int cmd_infer(int argc, char** argv) {
  ArgParser ap(
      "infer",
      "Run a trained model on an image, a folder of images (recursively) or a dataset split and write,\n"
      "per image, OUT/panoptic/NAME.png (id = R + 256 G + 256^2 B), OUT/overlay/NAME.png, and one\n"
      "OUT/panoptic.json (COCO panoptic predictions; `deeperlab eval` reads it).");
  ap.positional("input", "an image file or a folder of images", false)
      .option("config", "config JSON the model was trained with", "", true)
      .option("weights", "checkpoint or weights file (.safetensors / .json)", "", true)
      .option("out", "output folder", "", true)
      .option("data", "dataset root (instead of input): infer on --split")
      .option("split", "dataset split with --data", "val")
      .option("device", "cpu | cuda", "cpu")
      .option("threads", "CPU threads (0 = all cores)", "0")
      .option("limit", "at most N images (0 = all)", "0")
      .option("categories",
              "COCO panoptic JSON whose categories the model predicts (default: categories.json next to "
              "the weights, written by train)")
      .option("dump",
              "write the intermediate features and raw head outputs of the first image here (.safetensors)")
      .flag("no-progress", "no progress bar");
  if (!ap.parse(argc, argv)) return 0;
  set_threads(ap.get_int("threads"));
  const Config cfg = load_config(ap.get("config"));
  const Device device = parse_device(ap.get("device"));

  // ---- inputs ----
  std::vector<Input> inputs;
  std::vector<Category> categories;
  std::unique_ptr<PanopticDataset> ds;
  DL_CHECK(ap.has("input") != ap.has("data"),
           "infer: give either an image / folder or --data DIR (not both)");
  if (ap.has("data")) {
    ds = std::make_unique<PanopticDataset>(dataset_paths(cfg, ap.get("data"), ap.get("split")));
    categories = ds->categories();
    for (int64_t i = 0; i < ds->size(); ++i)
      inputs.push_back({ds->json().images[i].file_name, ds->image_path(i), ds->json().images[i].id});
  } else {
    const fs::path in = ap.get("input");
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      for (auto it = fs::recursive_directory_iterator(in, ec); !ec && it != fs::end(it); it.increment(ec))
        if (it->is_regular_file() && is_image_file(it->path()))
          inputs.push_back({fs::relative(it->path(), in).string(), it->path().string(), 0});
      std::sort(inputs.begin(), inputs.end(), [](const Input& a, const Input& b) { return a.name < b.name; });
      DL_CHECK(!inputs.empty(), "infer: no images (.png, .jpg, .jpeg, .bmp) below " << in.string());
    } else {
      DL_CHECK(fs::is_regular_file(in, ec), "infer: input " << in.string() << " does not exist");
      inputs.push_back({in.filename().string(), in.string(), 0});
    }
    for (size_t i = 0; i < inputs.size(); ++i) inputs[i].image_id = static_cast<int64_t>(i) + 1;
    // Categories (names, colours, isthing): --categories, else the categories.json that training
    // wrote next to the weights.
    std::string cat_path = ap.get("categories");
    if (cat_path.empty()) cat_path = (fs::path(ap.get("weights")).parent_path() / "categories.json").string();
    DL_CHECK(fs::exists(cat_path),
             "infer: no categories for the model: give --categories FILE (a COCO panoptic JSON, "
             "e.g. the training split's) or keep categories.json next to the weights ("
                 << cat_path << " is missing)");
    categories = read_panoptic_json(cat_path).categories;
  }
  const int64_t limit = ap.get_int("limit");
  if (limit > 0 && static_cast<int64_t>(inputs.size()) > limit) inputs.resize(limit);
  const ClassMap classes(categories);
  DL_CHECK(classes.num_classes() == cfg.model.num_classes, "infer: model.num_classes is "
                                                               << cfg.model.num_classes << " but there are "
                                                               << classes.num_classes() << " categories");

  // ---- model ----
  DeeperLab model(cfg.model);
  load_model_weights(model, ap.get("weights"));
  model.to(device);
  model.eval();

  OutputWriter writer(ap.get("out"), categories);
  std::unique_ptr<Progress> bar;
  if (!ap.get_flag("no-progress")) bar = std::make_unique<Progress>("infer", inputs.size(), "img");
  for (size_t i = 0; i < inputs.size(); ++i) {
    int64_t h = 0, w = 0;
    std::vector<uint8_t> rgb = read_rgb(inputs[i].path, h, w);
    std::vector<float> img = normalise_image(rgb, h, w);
    if (i == 0 && ap.has("dump")) {
      Tensor x = Tensor::from_vector(img, {1, 3, h, w}).to(device);
      NamedTensors named = dump_features(model, x);
      named.emplace_back("input", x);
      for (auto& kv : named) kv.second = kv.second.to(Device::CPU);
      write_weights(ap.get("dump"), named);
    }
    HeadOutputs out = run_model(model, img, h, w, device);
    PanopticMap pred = predict(out, classes, cfg);
    writer.add(inputs[i].name, inputs[i].image_id, rgb, pred);
    if (bar && i + 1 < inputs.size()) bar->update(static_cast<int64_t>(i) + 1);
  }
  writer.finish();
  if (bar) bar->finish();
  std::printf("wrote %zu predictions to %s (panoptic/, overlay/, panoptic.json)\n", inputs.size(),
              ap.get("out").c_str());
  return 0;
}

}  // namespace dl::cli
