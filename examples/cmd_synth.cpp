// `deeperlab synth`: writes a COCO-panoptic dataset of generated scenes (layout in parser/synth.h).
#include <cstdio>
#include <sstream>

#include "core/error.h"
#include "examples/cli.h"
#include "parser/synth.h"

namespace dl::cli {

int cmd_synth(int argc, char** argv) {
  ArgParser ap("synth",
               "Generate a COCO-panoptic dataset of simple scenes (textured stuff, discs, rectangles and\n"
               "triangles whose class is their colour family). Layout: DIR/{split}.json, DIR/{split}/*.png\n"
               "(panoptic), DIR/images/{split}/*.png (RGB) for split = train, val.");
  ap.option("out", "output folder", "", true)
      .option("train", "number of training images", "")
      .option("val", "number of validation images", "")
      .option("size", "image size HxW", "")
      .option("seed", "random seed (the same seed gives the same files)", "1")
      .option("preset",
              "scene difficulty: easy (few moderate, non-overlapping things) or full "
              "(tiny to large, overlapping, crowd, void)",
              "full")
      .option("max-things", "most things per scene", "");
  if (!ap.parse(argc, argv)) return 0;
  SynthOptions opt = SynthOptions::preset(ap.get("preset"));
  if (ap.has("train")) opt.num_train = ap.get_int("train");
  if (ap.has("val")) opt.num_val = ap.get_int("val");
  if (ap.has("max-things")) opt.max_things = ap.get_int("max-things");
  opt.seed = static_cast<uint64_t>(std::stoull(ap.get("seed")));
  if (ap.has("size")) {
    std::string s = ap.get("size");
    long long h = 0, w = 0;
    char x = 0, rest = 0;
    DL_CHECK(std::sscanf(s.c_str(), "%lld%c%lld%c", &h, &x, &w, &rest) == 3 && (x == 'x' || x == 'X') &&
                 h > 0 && w > 0,
             "synth: --size expects HxW (e.g. 97x97), got '" << s << "'");
    opt.height = h, opt.width = w;
  }
  Progress bar("synth", opt.num_train + opt.num_val, "img");
  write_synth_dataset(ap.get("out"), opt, [&](int64_t done, int64_t total) {
    if (done < total) bar.update(done);
  });
  bar.finish();
  std::printf("wrote %lld train + %lld val images of %lldx%lld to %s\n", (long long)opt.num_train,
              (long long)opt.num_val, (long long)opt.height, (long long)opt.width, ap.get("out").c_str());
  return 0;
}

}  // namespace dl::cli
