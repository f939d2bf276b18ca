// Datasets in COCO panoptic format (COCO, Cityscapes after its panoptic conversion, Mapillary Vistas,
// and our synthetic scenes), training augmentation, and a prefetching batch loader.
//
// The non-obvious decision: every random choice of a sample (its place in the epoch order and its
// augmentation) is derived from (seed, epoch, index) alone, never from a shared generator, so the
// batches of step s are the same whatever the number of loader threads and their timing, and a
// resumed run sees exactly the data an uninterrupted one would have seen.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"
#include "parser/panoptic.h"
#include "parser/targets.h"

namespace dl {

// Where one split of a dataset lives.
struct DatasetPaths {
  std::string layout;             // "synth", "coco", "cityscapes", "vistas" or "custom"
  std::string json;               // the COCO panoptic JSON
  std::string panoptic_dir;       // folder of the panoptic PNGs named in annotations[].file_name
  std::string image_dir;          // folder of the RGB images named in images[].file_name
  bool recursive_images = false;  // images are found by base name anywhere below image_dir (Cityscapes)
};

// Finds the files of `split` ("train", "val", ...) below `root`. layout "auto" tries, in order:
//   synth:      ROOT/{split}.json, ROOT/{split}/, ROOT/images/{split}/
//   coco:       ROOT/annotations/panoptic_{split}2017.json, ROOT/annotations/panoptic_{split}2017/,
//   ROOT/{split}2017/
//               (a split already ending in a year, e.g. "val2017", is used as is)
//   cityscapes: ROOT/gtFine/cityscapes_panoptic_{split}.json, ROOT/gtFine/cityscapes_panoptic_{split}/,
//               ROOT/leftImg8bit/{split}/ searched recursively by file name
//   vistas:     ROOT/{training|validation}/v2.0/panoptic/panoptic_2020.json, .../v2.0/panoptic/,
//               ROOT/{training|validation}/images/ ("train" -> training, "val" -> validation;
//               ROOT may also be the split folder itself)
// and fails with a message listing what it looked for.
DatasetPaths resolve_dataset(const std::string& root, const std::string& split,
                             const std::string& layout = "auto");

// One image with its ground truth, as read from disk or after augmentation.
struct Sample {
  int64_t image_id = 0;
  std::string name;  // the image's file name (for messages and outputs)
  int64_t height = 0, width = 0;
  std::vector<float> image;  // normalised CHW, 3 x H x W, x * 2/255 - 1 (0 = the padding value)
  PanopticMap gt;            // empty ids when the dataset has no annotation for the image
};

class PanopticDataset {
 public:
  explicit PanopticDataset(const DatasetPaths& paths);
  int64_t size() const { return static_cast<int64_t>(json_.images.size()); }
  const PanopticJson& json() const { return json_; }
  const DatasetPaths& paths() const { return paths_; }
  const std::vector<Category>& categories() const { return json_.categories; }
  // The resolved paths of image i and of its panoptic PNG (errors name the missing file).
  std::string image_path(int64_t i) const;
  std::string panoptic_path(int64_t i) const;
  const PanopticAnnotation* annotation(int64_t i) const;  // nullptr when image i has none
  // Reads image i (and its ground truth when `with_gt`); thread-safe.
  Sample load(int64_t i, bool with_gt = true) const;

 private:
  DatasetPaths paths_;
  PanopticJson json_;
  std::map<int64_t, size_t> ann_by_image_;
  std::map<std::string, std::string> image_index_;  // base name -> path (recursive layouts), built once
};

// RGB HWC uint8 -> normalised CHW float (x * 2/255 - 1).
std::vector<float> normalise_image(const std::vector<uint8_t>& rgb, int64_t height, int64_t width);

struct AugmentOptions {
  bool enabled = true;
  int64_t crop_height = 0, crop_width = 0;  // 0 = keep the (scaled) size, no crop or pad
  double min_scale = 0.5, max_scale = 2.0;
  double scale_step = 0;  // > 0: scales min, min + step, ..., max (DeepLab's discrete scales)
  bool flip = true;
};

// Random scale (bilinear for the image, nearest for labels), random crop to the crop size with
// padding (image 0 = the mean after normalisation, labels void), random horizontal flip.
// Segments' area and bbox are recomputed; segments that vanish are dropped.
Sample augment(const Sample& s, const AugmentOptions& opt, Rng& rng);
// Without randomness: pads/crops (top-left anchored) to the crop size, for evaluation batches.
Sample fit_to_size(const Sample& s, int64_t height, int64_t width);

struct LoaderOptions {
  int64_t batch_size = 2;
  uint64_t seed = 1;
  bool shuffle = true;
  AugmentOptions augment;
  int threads = 2;         // background workers (0 = load on the caller's thread)
  int queue_capacity = 4;  // batches prepared ahead
};

struct Batch {
  int64_t step = 0;              // the batch's number in the stream
  Tensor images;                 // F32 [N, 3, H, W]
  Targets targets;               // stacked, N images
  std::vector<int64_t> indices;  // dataset indices of the images
};

// An endless stream of training batches. Batch b holds the samples k = b*N .. b*N+N-1 of the stream
// that concatenates epochs: sample k is image perm_e[k mod size] of epoch e = k / size, where perm_e
// is a shuffle seeded by (seed, e), augmented with an Rng seeded by (seed, e, k mod size).
class Loader {
 public:
  Loader(const PanopticDataset& data, const ClassMap& classes, const TargetConfig& target_cfg,
         const LoaderOptions& opt, int64_t first_step = 0);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;
  Batch next();  // the next batch in order; rethrows a worker's error
  // Builds batch `step` synchronously (what next() returns for that step).
  Batch make_batch(int64_t step) const;

 private:
  const PanopticDataset& data_;
  ClassMap classes_;
  TargetConfig target_cfg_;
  LoaderOptions opt_;
  int64_t next_step_;      // the batch next() returns next
  int64_t next_to_build_;  // the batch the next idle worker takes
  std::map<int64_t, std::pair<std::shared_ptr<Batch>, std::exception_ptr>> ready_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
  void worker();
  std::vector<int64_t> epoch_order(int64_t epoch) const;
};

// A seed for one purpose derived from a few numbers (splitmix64 over them).
uint64_t derive_seed(uint64_t a, uint64_t b, uint64_t c = 0, uint64_t d = 0);

}  // namespace dl
