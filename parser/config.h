// Run configuration read from JSON: sections model, data, train, inference, loss. Every field has a
// default; unknown fields (and fields of the wrong type) are errors naming the field and the file.
// Each section is an X-macro list, so adding a field is one line: X(type, name, default, help).
// Supported types: bool, int64_t, double, std::string, std::vector<int64_t>, std::vector<double>.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dl {

using IntList = std::vector<int64_t>;
using DoubleList = std::vector<double>;

#define DL_MODEL_FIELDS(X)                                                                                      \
  X(std::string, backbone, "mobilenet_v2", "xception71 | mobilenet_v2")                                        \
  X(double, width_multiplier, 1.0, "backbone channel multiplier (torchvision's _make_divisible(c * w, 8))")     \
  X(int64_t, backbone_kernel_size, 5, "MobileNetV2 depthwise kernel (3: torchvision's, 5: wider)")             \
  X(int64_t, output_stride, 16, "backbone output stride: 8, 16 or 32 (decoder s2d block = output_stride / 4)")            \
  X(int64_t, xception_middle_units, 16, "units in Xception's middle flow (16 for Xception-71)")                 \
  X(int64_t, aspp_channels, 256, "ASPP width")                                                                 \
  X(IntList, aspp_rates, (IntList{6, 12, 18}), "dilation rates of ASPP's separable 3x3 branches")              \
  X(int64_t, low_level_channels, 32, "decoder's 1x1 projection of the low-level feature")                      \
  X(IntList, decoder_widths, (IntList{4096, 4096}), "decoder separable conv widths (last % (os/4)^2 == 0)") \
  X(int64_t, decoder_kernel_size, 7, "decoder separable conv kernel")                                          \
  X(int64_t, head_kernel_size, 7, "prediction head separable conv kernel")                                     \
  X(int64_t, semantic_head_width, 256, "semantic head width")                                                  \
  X(int64_t, instance_head_width, 64, "width of the heatmap and offset heads")                                 \
  X(int64_t, num_classes, 19, "semantic classes (things and stuff)")                                           \
  X(double, bn_eps, 1e-3, "BatchNorm epsilon")                                                                 \
  X(double, bn_momentum, 0.1, "BatchNorm momentum, PyTorch convention (DeepLab's decay 0.9997 is 3e-4)")       \
  X(bool, bn_track_num_batches, false, "add num_batches_tracked buffers")                                      \
  X(int64_t, init_seed, 0, "seed of the deterministic initialisation")

#define DL_DATA_FIELDS(X)                                                                      \
  X(std::string, train_json, "", "COCO panoptic annotation JSON of the training split")       \
  X(std::string, train_images, "", "folder of training images")                              \
  X(std::string, train_panoptic, "", "folder of training panoptic PNGs")                     \
  X(std::string, val_json, "", "COCO panoptic annotation JSON of the validation split")      \
  X(std::string, val_images, "", "folder of validation images")                              \
  X(std::string, val_panoptic, "", "folder of validation panoptic PNGs")                     \
  X(int64_t, crop_height, 513, "training crop height (16k+1 gives exact strides)")           \
  X(int64_t, crop_width, 513, "training crop width")                                         \
  X(double, min_scale, 0.5, "random scale augmentation: smallest factor")                    \
  X(double, max_scale, 2.0, "random scale augmentation: largest factor")                     \
  X(double, scale_step, 0.25, "random scale augmentation: step (0 = continuous)")            \
  X(bool, hflip, true, "random horizontal flip")                                             \
  X(bool, shuffle, true, "shuffle the training images every epoch")                         \
  X(std::string, layout, "auto", "dataset layout below --data: auto | synth | coco | cityscapes | vistas") \
  X(int64_t, loader_threads, 2, "background threads preparing training batches")

#define DL_TRAIN_FIELDS(X)                                                          \
  X(int64_t, batch_size, 8, "images per step (>= 2: BatchNorm in train mode)")      \
  X(int64_t, steps, 100000, "optimisation steps")                                   \
  X(std::string, optimizer, "sgd", "sgd | adam")                                    \
  X(double, learning_rate, 0.01, "base learning rate")                              \
  X(std::string, lr_policy, "poly", "poly | constant")                              \
  X(double, poly_power, 0.9, "poly policy: lr = base * (1 - step / steps)^power")   \
  X(int64_t, warmup_steps, 0, "linear learning-rate warm-up")                       \
  X(double, momentum, 0.9, "SGD momentum")                                          \
  X(double, weight_decay, 4e-5, "L2 weight decay")                                  \
  X(int64_t, seed, 0, "seed of data order and augmentation")                        \
  X(std::string, device, "cpu", "cpu | cuda")                                       \
  X(int64_t, threads, 0, "CPU threads (0 = all cores)")                             \
  X(int64_t, log_every, 10, "steps between log lines")                              \
  X(int64_t, checkpoint_every, 1000, "steps between checkpoints (0 = only at the end)") \
  X(std::string, output_dir, "runs", "checkpoints and logs go here")                \
  X(double, grad_clip_norm, 0.0, "clip the global gradient norm to this (0 = off)")  \
  X(int64_t, val_every, 0, "validate on the val split every N steps (0 = never)")    \
  X(int64_t, val_images, 0, "validate on at most N images (0 = all)")

#define DL_INFERENCE_FIELDS(X)                                                                         \
  X(int64_t, refine_iterations, 2, "offset refinement passes with the short-range offsets")            \
  X(double, short_score_weight, 1.0, "weight of the short-range Hough score map")                      \
  X(double, long_score_weight, 1.0, "weight of the long-range Hough score map")                        \
  X(double, keypoint_threshold, 0.01, "keypoint candidates: minimum fused score")                      \
  X(double, nms_radius, 10.0, "reject a keypoint this close to the same keypoint of a kept instance")  \
  X(double, box_nms_iou, 0.5, "box NMS IoU over the instances' keypoint boxes")                        \
  X(int64_t, min_area, 0, "drop segments smaller than this (0 = keep all)")

#define DL_LOSS_FIELDS(X)                                                                        \
  X(double, semantic_weight, 1.0, "weight of the semantic loss")                                 \
  X(double, heatmap_weight, 1.0, "weight of the keypoint heatmap loss")                          \
  X(double, short_offset_weight, 1.0, "weight of the short-range offset loss")                   \
  X(double, mid_offset_weight, 1.0, "weight of the middle-range offset loss")                    \
  X(double, long_offset_weight, 1.0, "weight of the long-range offset loss")                     \
  X(double, hard_pixel_fraction, 0.15, "bootstrapped CE: fraction of pixels kept per image")     \
  X(int64_t, hard_pixel_warmup_steps, 0, "anneal the kept fraction from 1.0 over these steps")   \
  X(int64_t, small_instance_area, 4096, "instances smaller than this get small_instance_weight") \
  X(double, small_instance_weight, 3.0, "semantic weight of pixels of small instances")          \
  X(double, keypoint_radius, 25.0, "disk radius R of heatmap and short/middle offset targets")

#define DL_CONFIG_DECLARE_FIELD(type, name, def, help) type name = def;
struct ModelConfig {
  DL_MODEL_FIELDS(DL_CONFIG_DECLARE_FIELD)
};
struct DataConfig {
  DL_DATA_FIELDS(DL_CONFIG_DECLARE_FIELD)
};
struct TrainConfig {
  DL_TRAIN_FIELDS(DL_CONFIG_DECLARE_FIELD)
};
struct InferenceSection {
  DL_INFERENCE_FIELDS(DL_CONFIG_DECLARE_FIELD)
};
struct LossSection {
  DL_LOSS_FIELDS(DL_CONFIG_DECLARE_FIELD)
};
#undef DL_CONFIG_DECLARE_FIELD

struct Config {
  std::string description;  // free text, optional
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  InferenceSection inference;
  LossSection loss;
};

// Reads a config file; `source` (the path) is named in every error.
Config load_config(const std::string& path);
// Parses JSON text; `source` names it in errors.
Config parse_config(const std::string& json_text, const std::string& source);
// Every field with its value (defaults included), pretty-printed JSON; parse_config reads it back.
std::string config_to_json(const Config& c);
// Lines "section.field (type, default D): help" for --help texts and docs.
std::string config_reference();

}  // namespace dl
