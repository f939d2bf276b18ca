// Training and evaluation of DeeperLab: the optimisation loop (SGD with momentum or AdamW, poly LR
// with linear warm-up, global-norm gradient clipping), checkpoints, JSON-lines logs, periodic
// validation (PQ / PC / mIoU) and the single-image inference used by `deeperlab infer`.
//
// The non-obvious decision: the whole training state is (weights, BatchNorm buffers, optimizer
// state, step). The data stream is a pure function of (seed, step) (parser/data.h) and nothing else
// in a step is random, so a checkpoint at step k resumed to step N gives bit-identical weights to an
// uninterrupted N-step run on the CPU with the same thread count.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "metrics/panoptic_eval.h"
#include "parser/config.h"
#include "parser/data.h"
#include "parser/heads.h"
#include "parser/instance.h"
#include "parser/losses.h"
#include "parser/model.h"
#include "parser/panoptic.h"
#include "parser/targets.h"

namespace dl {

struct TrainOptions {
  std::string config_path;  // named in messages
  Config config;
  std::string data_root;       // --data: dataset root (train / val splits found by resolve_dataset)
  std::string out_dir;         // checkpoints, log
  std::string device = "cpu";  // cpu | cuda
  std::string resume;          // checkpoint to continue from
  std::string init;            // backbone weights loaded non-strictly
  int64_t stop_after = 0;      // > 0: stop (with a checkpoint) after this step, as if interrupted
  // Progress reports (the CLI draws a bar): steps done since the start of this run, steps this
  // run will do, and a text with the loss terms and rate; `finished` on the last call.
  std::function<void(int64_t done, int64_t total, const std::string& label, const std::string& extra,
                     bool finished)>
      progress;
  bool quiet = false;  // no summary lines on stdout
};

struct TrainResult {
  int64_t step = 0;  // steps done in total
  std::map<std::string, double> last_losses;
  std::string checkpoint;  // the last checkpoint written
  bool validated = false;
  EvalResult val;  // the last validation
};

// Runs training; throws dl::Error (with a one-line reason) on bad input, a non-finite loss or a
// failed checkpoint write; the last good checkpoint stays in place.
TrainResult train(const TrainOptions& opt);

// Inference on one normalised image (CHW, 3 x H x W): pads to the next 16k+1 size with the mean,
// runs the model (eval mode, no autograd) and crops the head outputs back to H x W.
HeadOutputs run_model(const DeeperLab& model, const std::vector<float>& image, int64_t height, int64_t width,
                      Device device);

// The option structs of the targets, the losses and the decoder, from a config's sections.
TargetConfig target_config(const Config& cfg);
LossConfig loss_config(const Config& cfg);
InferenceConfig inference_config(const Config& cfg);

// Panoptic prediction (dataset category ids, ids 1..n) for head outputs of one image.
PanopticMap predict(const HeadOutputs& out, const ClassMap& classes, const Config& cfg);

// A short text table of PQ / SQ / RQ / PC / IoU per class and the totals.
std::string format_eval(const EvalResult& r);

// PQ / PC / mIoU of the model on (up to max_images of) a dataset split.
EvalResult evaluate(const DeeperLab& model, const PanopticDataset& data, const Config& cfg, Device device,
                    int64_t max_images = 0,
                    const std::function<void(int64_t done, int64_t total)>& progress = {});

// Resolves the train or val split named by the config (data.{split}_json / _images / _panoptic when
// set) or else found below `data_root`.
DatasetPaths dataset_paths(const Config& cfg, const std::string& data_root, const std::string& split);

// Sets the model's weights from a checkpoint or a weights file (strict).
void load_model_weights(DeeperLab& model, const std::string& path);

// Checkpoints (weights/checkpoint.h): model state, optimizer state, step and the config in one
// atomically written safetensors file; read_weights() on it gives the model state alone.
class Optimizer;
void save_train_checkpoint(const std::string& path, const DeeperLab& model, const Optimizer& optim, int64_t step,
                           const std::string& config_json);
// Loads model and optimizer state (strict: every name and shape must match) and returns the step.
int64_t load_train_checkpoint(const std::string& path, DeeperLab& model, Optimizer& optim);

// Test hook: when > 0, the loss of that step (1-based) is replaced by NaN (exercises the NaN stop).
void set_nan_loss_at_step_for_testing(int64_t step);

Device parse_device(const std::string& s);

}  // namespace dl
