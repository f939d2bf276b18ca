// `deeperlab train`: trains DeeperLab on a COCO-panoptic dataset (parser/trainer.h).
#include <cstdio>
#include <iostream>
#include <memory>

#include "core/error.h"
#include "examples/cli.h"
#include "parser/config.h"
#include "parser/trainer.h"

namespace dl::cli {

int cmd_train(int argc, char** argv) {
  ArgParser ap(
      "train",
      "Train DeeperLab. Data: --data DIR with a train split (and a val split for --val-every) in one of\n"
      "the layouts synth, coco, cityscapes, vistas (docs/TRAINING.md), or data.train_json etc. in the\n"
      "config. Writes OUT/checkpoint.safetensors (every --ckpt-every steps and at the end, atomically)\n"
      "and OUT/train_log.jsonl (one JSON line per step, one per validation).");
  ap.option("config", "config JSON (examples/configs/*.json)", "", true)
      .option("data", "dataset root folder")
      .option("out", "output folder (default: the config's train.output_dir)")
      .option("steps", "total optimisation steps (overrides train.steps)")
      .option("device", "cpu | cuda (overrides train.device)")
      .option("threads", "CPU threads, 0 = all cores (overrides train.threads)")
      .option("resume", "continue from this checkpoint (bit-exact on the CPU with the same thread count)")
      .option("init", "backbone weights (safetensors / JSON), loaded non-strictly into the backbone")
      .option("val-every", "validate on the val split every N steps (overrides train.val_every; 0 = never)")
      .option("val-images", "validate on at most N images (overrides train.val_images; 0 = all)")
      .option("ckpt-every",
              "checkpoint every N steps (overrides train.checkpoint_every; 0 = only at the end)")
      .option("batch", "images per step (overrides train.batch_size)")
      .option("lr", "base learning rate (overrides train.learning_rate)")
      .option("seed", "data order and augmentation seed (overrides train.seed)")
      .option("stop-after",
              "stop after this step with a checkpoint, as if interrupted (the LR schedule still "
              "follows --steps; continue with --resume)")
      .flag("no-progress", "no progress bar");
  if (!ap.parse(argc, argv)) return 0;
  TrainOptions opt;
  opt.config_path = ap.get("config");
  opt.config = load_config(opt.config_path);
  TrainConfig& t = opt.config.train;
  if (ap.has("steps")) t.steps = ap.get_int("steps");
  if (ap.has("device")) t.device = ap.get("device");
  if (ap.has("threads")) t.threads = ap.get_int("threads");
  if (ap.has("val-every")) t.val_every = ap.get_int("val-every");
  if (ap.has("val-images")) t.val_images = ap.get_int("val-images");
  if (ap.has("ckpt-every")) t.checkpoint_every = ap.get_int("ckpt-every");
  if (ap.has("batch")) t.batch_size = ap.get_int("batch");
  if (ap.has("lr")) t.learning_rate = ap.get_double("lr");
  if (ap.has("seed")) t.seed = ap.get_int("seed");
  set_threads(static_cast<int>(t.threads));
  opt.data_root = ap.get("data");
  opt.out_dir = ap.get("out");
  opt.device = t.device;
  opt.resume = ap.get("resume");
  opt.init = ap.get("init");
  std::unique_ptr<Progress> bar;
  if (!ap.get_flag("no-progress"))
    opt.progress = [&bar](int64_t done, int64_t total, const std::string& label, const std::string& extra,
                          bool finished) {
      if (!bar) bar = std::make_unique<Progress>(label, total, "step");
      if (finished)
        bar->finish(extra);
      else
        bar->update(done, extra);
    };
  if (ap.has("stop-after")) opt.stop_after = ap.get_int("stop-after");
  TrainResult r = train(opt);
  if (r.validated) std::cout << "validation at step " << r.step << ":\n" << format_eval(r.val);
  return 0;
}

}  // namespace dl::cli
