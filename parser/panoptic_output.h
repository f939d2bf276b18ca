// Writing a predicted panoptic segmentation: the COCO panoptic PNG plus its segments_info (for
// the predictions JSON), and a colour overlay for people to look at.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "parser/panoptic.h"

namespace dl {

// Writes `pred` as a COCO panoptic PNG (atomic) and returns its annotation: image_id, the PNG's
// file name (without folders) and the segments.
PanopticAnnotation write_panoptic_prediction(const std::string& png_path, const PanopticMap& pred, int64_t image_id);

// The predictions JSON (annotations + categories, images when given), atomic.
void write_predictions_json(const std::string& path, const std::vector<PanopticAnnotation>& annotations,
                            const std::vector<Category>& categories, const std::vector<ImageInfo>& images = {});

// The overlay: every pixel of a segment blended 50/50 with its colour (stuff: the category colour;
// things: the category colour jittered per instance), instance boundaries in white, void pixels
// left as they are. `rgb` is the image (HWC uint8, same size). Unknown category ids are an error.
std::vector<uint8_t> panoptic_overlay(const std::vector<uint8_t>& rgb, const PanopticMap& pred,
                                      const std::vector<Category>& categories);
void write_panoptic_overlay(const std::string& png_path, const std::vector<uint8_t>& rgb, const PanopticMap& pred,
                            const std::vector<Category>& categories);

}  // namespace dl
