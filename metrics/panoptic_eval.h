// Panoptic evaluation on in-memory label maps: PQ / SQ / RQ (as cocodataset/panopticapi
// pq_compute), Parsing Covering (as tensorflow/models deeplab parsing_covering.py) and semantic
// mIoU / pixel accuracy. Every metric is an accumulator over images that can be merged (one per
// thread, then merged); all three are derived from one joint (GT segment, predicted segment)
// pixel histogram per image, so the pixels are read once. No file I/O here.
// Exact definitions and the choices made where the references are silent: docs/METRICS.md.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "parser/panoptic.h"

namespace dl {

// The categories of a dataset with a dense index 0..C-1 (in the given order).
class CategoryIndex {
 public:
  CategoryIndex() = default;
  explicit CategoryIndex(std::vector<Category> categories);  // throws on duplicate ids
  int64_t size() const { return static_cast<int64_t>(cats_.size()); }
  const std::vector<Category>& categories() const { return cats_; }
  const Category& at(int64_t idx) const { return cats_[static_cast<size_t>(idx)]; }
  int64_t index_of(int32_t category_id) const;  // -1 when unknown

 private:
  std::vector<Category> cats_;
  std::unordered_map<int32_t, int64_t> index_;
};

// Pixel counts of every (GT segment, predicted segment) pair of one image. Segment index 0 is
// void (id 0) on both sides; GT index k+1 is gt.segments[k], predicted index k+1 is
// pred.segments[k]. Built in one pass over the pixels.
struct PairHistogram {
  int64_t height = 0, width = 0;
  int64_t n_gt = 0, n_pred = 0;           // including the void slot
  std::vector<int64_t> gt_cat, pred_cat;  // dense category index per slot (-1 for void)
  std::vector<uint8_t> gt_crowd;          // per GT slot
  // Sparse list of non-zero pairs (gt_slot, pred_slot, pixels), sorted by (gt, pred).
  struct Cell {
    int32_t gt, pred;
    int64_t count;
  };
  std::vector<Cell> cells;
  std::vector<int64_t> gt_area, pred_area;  // pixel counts per slot
};

// Checks gt and pred (sizes equal, ids listed, categories known) and builds their histogram.
// `what` names the image in error messages.
PairHistogram build_pair_histogram(const PanopticMap& gt, const PanopticMap& pred, const CategoryIndex& cats,
                                   const std::string& what = "image");

struct PQCounts {
  double iou = 0;  // sum of the IoUs of the matched pairs
  int64_t tp = 0, fp = 0, fn = 0;
};

// PQ / SQ / RQ accumulated per category over a dataset.
class PQAccumulator {
 public:
  explicit PQAccumulator(int64_t num_categories = 0) : stats_(static_cast<size_t>(num_categories)) {}
  void add(const PairHistogram& h);
  void merge(const PQAccumulator& other);
  const std::vector<PQCounts>& stats() const { return stats_; }

 private:
  std::vector<PQCounts> stats_;
};

// Parsing Covering: per category, sum over GT regions of |R| * max IoU with a predicted region of
// the same category, and sum of |R| (areas divided by the image size when normalising).
class PCAccumulator {
 public:
  explicit PCAccumulator(int64_t num_categories = 0, bool normalize_by_image_size = true)
      : weighted_iou_(static_cast<size_t>(num_categories), 0.0),
        gt_area_(static_cast<size_t>(num_categories), 0.0),
        normalize_(normalize_by_image_size) {}
  void add(const PairHistogram& h);
  void merge(const PCAccumulator& other);
  const std::vector<double>& weighted_iou() const { return weighted_iou_; }
  const std::vector<double>& gt_area() const { return gt_area_; }
  bool normalize() const { return normalize_; }

 private:
  std::vector<double> weighted_iou_, gt_area_;
  bool normalize_ = true;
};

// Semantic confusion matrix over pixels whose GT is not void: rows GT category, columns
// predicted category plus a last column for predicted void.
class ConfusionAccumulator {
 public:
  explicit ConfusionAccumulator(int64_t num_categories = 0)
      : c_(num_categories), m_(static_cast<size_t>(num_categories * (num_categories + 1)), 0) {}
  void add(const PairHistogram& h);
  void merge(const ConfusionAccumulator& other);
  int64_t at(int64_t gt, int64_t pred) const { return m_[static_cast<size_t>(gt * (c_ + 1) + pred)]; }
  int64_t num_categories() const { return c_; }

 private:
  int64_t c_ = 0;
  std::vector<int64_t> m_;
};

struct SplitResult {
  double pq = 0, sq = 0, rq = 0;
  int64_t n = 0;  // categories counted in the PQ mean
  double pc = 0;
  int64_t pc_n = 0;  // categories counted in the PC mean
};

struct ClassResult {
  int32_t category_id = 0;
  std::string name;
  bool isthing = false;
  PQCounts counts;
  bool pq_valid = false;  // TP + FP + FN > 0
  double pq = 0, sq = 0, rq = 0;
  bool pc_valid = false;  // GT area > 0
  double pc = 0;
  bool iou_valid = false;  // non-zero mIoU denominator
  double iou = 0;
};

struct EvalResult {
  SplitResult all, things, stuff;
  double miou = 0;
  int64_t miou_n = 0;
  double pixel_accuracy = 0;
  int64_t images = 0;
  std::vector<ClassResult> per_class;  // in category order
};

// The three accumulators together; add() one image pair at a time, merge() across threads.
class PanopticEvaluator {
 public:
  explicit PanopticEvaluator(std::vector<Category> categories, bool normalize_pc = true);
  void add(const PanopticMap& gt, const PanopticMap& pred, const std::string& what = "image");
  void add(const PairHistogram& h);
  void merge(const PanopticEvaluator& other);
  EvalResult result() const;
  const CategoryIndex& categories() const { return cats_; }
  const PQAccumulator& pq() const { return pq_; }
  const PCAccumulator& pc() const { return pc_; }
  const ConfusionAccumulator& confusion() const { return conf_; }

 private:
  CategoryIndex cats_;
  PQAccumulator pq_;
  PCAccumulator pc_;
  ConfusionAccumulator conf_;
  int64_t images_ = 0;
};

}  // namespace dl
