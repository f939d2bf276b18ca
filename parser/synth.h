// Synthetic panoptic scenes: textured stuff (sky / wall above a horizon, ground below) and thing
// instances (discs, rectangles, triangles) whose class is carried by a colour family, drawn in a
// random depth order so that later things occlude earlier ones. Every scene is a pure function of
// (seed, split, index), so a dataset can be regenerated bit-exactly and scenes generated in any
// order or in parallel.
//
// On-disk layout written by write_synth_dataset (the "synth" layout of parser/data.h):
//   DIR/{split}.json          COCO panoptic JSON (images, annotations, categories)
//   DIR/{split}/NAME.png      panoptic PNGs (id = R + 256 G + 256^2 B)
//   DIR/images/{split}/NAME.png   RGB images
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "parser/panoptic.h"

namespace dl {

struct SynthOptions {
  int64_t height = 97, width = 97;
  int64_t num_train = 200, num_val = 50;
  uint64_t seed = 1;
  int min_things = 1, max_things = 5;  // thing instances per scene (before occlusion removes some)
  double min_size = 6, max_size = 40;  // thing extent in pixels (diameter / side), log-uniform
  double overlap = 0.5;                // probability that a thing may overlap those already drawn
  double crowd_prob = 0.1;             // probability of one crowd region per scene
  double void_prob = 0.3;              // probability of void scribbles in a scene
  double noise = 12;                   // per-pixel colour noise amplitude (0..255 scale)
  // "easy" (the demo / end-to-end preset: few moderate non-overlapping things, no crowd, less void)
  // or "full" (the defaults above).
  static SynthOptions preset(const std::string& name);
};

// Categories of every synthetic dataset: three thing classes (ids 1, 2, 3) and three stuff classes
// (ids 7, 8, 9); non-contiguous ids on purpose, to exercise the category -> train id mapping.
std::vector<Category> synth_categories();

struct SynthScene {
  std::vector<uint8_t> rgb;  // H x W x 3
  PanopticMap panoptic;      // segment ids, 0 = void; segments with area and bbox
};

// split_tag distinguishes the splits (0 train, 1 val) so they never share a scene.
SynthScene synth_scene(const SynthOptions& opt, int split_tag, int64_t index);

// Writes both splits into `dir` (created if missing). `progress(done, total)` is called after
// each scene when given.
void write_synth_dataset(const std::string& dir, const SynthOptions& opt,
                         const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace dl
