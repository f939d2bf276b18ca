// PQ / Parsing Covering / mIoU accumulators. One pass over the pixels of an image builds the
// joint (GT segment, predicted segment) histogram; the pass works on runs of equal id pairs, so
// its cost is one compare per pixel and one hash lookup per run boundary. Everything after that
// touches only the (few) non-empty pairs.
#include "metrics/panoptic_eval.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace dl {

CategoryIndex::CategoryIndex(std::vector<Category> categories) : cats_(std::move(categories)) {
  for (size_t i = 0; i < cats_.size(); ++i)
    DL_CHECK(index_.emplace(cats_[i].id, static_cast<int64_t>(i)).second,
             "evaluation: duplicate category id " << cats_[i].id << " (categories[" << i << "])");
}

int64_t CategoryIndex::index_of(int32_t category_id) const {
  auto it = index_.find(category_id);
  return it == index_.end() ? -1 : it->second;
}

namespace {

// id -> slot (segment index + 1) of one side, with duplicate and category checks.
std::unordered_map<int32_t, int32_t> slot_map(const PanopticMap& m, const CategoryIndex& cats,
                                              const char* side, const std::string& what,
                                              std::vector<int64_t>& cat_of, std::vector<uint8_t>* crowd) {
  std::unordered_map<int32_t, int32_t> map;
  map.reserve(m.segments.size() * 2 + 1);
  cat_of.assign(m.segments.size() + 1, -1);
  if (crowd) crowd->assign(m.segments.size() + 1, 0);
  for (size_t k = 0; k < m.segments.size(); ++k) {
    const SegmentInfo& s = m.segments[k];
    DL_CHECK(s.id != 0, what << ": " << side << " segments_info[" << k << "] has id 0 (reserved for void)");
    DL_CHECK(map.emplace(s.id, static_cast<int32_t>(k + 1)).second,
             what << ": " << side << " segments_info[" << k << "]: duplicate segment id " << s.id);
    const int64_t c = cats.index_of(s.category_id);
    DL_CHECK(c >= 0, what << ": " << side << " segments_info[" << k << "] (id " << s.id
                          << "): unknown category_id " << s.category_id);
    cat_of[k + 1] = c;
    if (crowd) (*crowd)[k + 1] = s.iscrowd ? 1 : 0;
  }
  return map;
}

}  // namespace

PairHistogram build_pair_histogram(const PanopticMap& gt, const PanopticMap& pred, const CategoryIndex& cats,
                                   const std::string& what) {
  DL_CHECK(gt.height == pred.height && gt.width == pred.width,
           what << ": prediction is " << pred.width << "x" << pred.height
                << " (w x h) but the ground truth is " << gt.width << "x" << gt.height);
  const int64_t n = gt.height * gt.width;
  DL_CHECK(gt.height >= 0 && gt.width >= 0 && static_cast<int64_t>(gt.ids.size()) == n &&
               static_cast<int64_t>(pred.ids.size()) == n,
           what << ": label maps hold " << gt.ids.size() << " (GT) and " << pred.ids.size()
                << " (prediction) ids for " << gt.height << "x" << gt.width);
  PairHistogram h;
  h.height = gt.height;
  h.width = gt.width;
  auto gmap = slot_map(gt, cats, "ground truth", what, h.gt_cat, &h.gt_crowd);
  auto pmap = slot_map(pred, cats, "prediction", what, h.pred_cat, nullptr);
  h.n_gt = static_cast<int64_t>(gt.segments.size()) + 1;
  h.n_pred = static_cast<int64_t>(pred.segments.size()) + 1;

  auto lookup = [&](const std::unordered_map<int32_t, int32_t>& map, int32_t id, int64_t i,
                    const char* side) {
    if (id == 0) return 0;
    auto it = map.find(id);
    DL_CHECK(it != map.end(), what << ": " << side << " segment id " << id << " at pixel (row "
                                   << i / gt.width << ", col " << i % gt.width
                                   << ") is not in segments_info");
    return it->second;
  };

  // Dense pair table when small (the usual case), hash otherwise.
  const bool dense = h.n_gt * h.n_pred <= (int64_t(1) << 20);
  std::vector<int64_t> table;
  std::unordered_map<uint64_t, int64_t> sparse;
  if (dense) table.assign(static_cast<size_t>(h.n_gt * h.n_pred), 0);
  auto flush = [&](int32_t gs, int32_t ps, int64_t run) {
    if (dense)
      table[static_cast<size_t>(gs * h.n_pred + ps)] += run;
    else
      sparse[(uint64_t(uint32_t(gs)) << 32) | uint32_t(ps)] += run;
  };
  if (n > 0) {
    const int32_t* g = gt.ids.data();
    const int32_t* p = pred.ids.data();
    int32_t lg = g[0], lp = p[0];
    int32_t gs = lookup(gmap, lg, 0, "ground truth"), ps = lookup(pmap, lp, 0, "prediction");
    int64_t start = 0;
    for (int64_t i = 1; i < n; ++i) {
      // Skip whole blocks of 16 pixels of the current pair (vectorised), then single pixels.
      while (i + 16 <= n) {
        uint32_t diff = 0;
        for (int64_t k = 0; k < 16; ++k) diff |= uint32_t(g[i + k] ^ lg) | uint32_t(p[i + k] ^ lp);
        if (diff) break;
        i += 16;
      }
      while (i < n && g[i] == lg && p[i] == lp) ++i;
      if (i >= n) break;
      flush(gs, ps, i - start);
      start = i;
      if (g[i] != lg) {
        lg = g[i];
        gs = lookup(gmap, lg, i, "ground truth");
      }
      if (p[i] != lp) {
        lp = p[i];
        ps = lookup(pmap, lp, i, "prediction");
      }
    }
    flush(gs, ps, n - start);
  }
  if (dense) {
    for (int64_t a = 0; a < h.n_gt; ++a)
      for (int64_t b = 0; b < h.n_pred; ++b)
        if (int64_t c = table[static_cast<size_t>(a * h.n_pred + b)])
          h.cells.push_back({static_cast<int32_t>(a), static_cast<int32_t>(b), c});
  } else {
    for (const auto& [key, c] : sparse)
      h.cells.push_back({static_cast<int32_t>(key >> 32), static_cast<int32_t>(key & 0xffffffffu), c});
    std::sort(h.cells.begin(), h.cells.end(), [](const PairHistogram::Cell& x, const PairHistogram::Cell& y) {
      return x.gt != y.gt ? x.gt < y.gt : x.pred < y.pred;
    });
  }
  h.gt_area.assign(static_cast<size_t>(h.n_gt), 0);
  h.pred_area.assign(static_cast<size_t>(h.n_pred), 0);
  for (const auto& c : h.cells) {
    h.gt_area[static_cast<size_t>(c.gt)] += c.count;
    h.pred_area[static_cast<size_t>(c.pred)] += c.count;
  }
  return h;
}

// ---------------------------------------------------------------------------------------------
// PQ: panopticapi pq_compute_single_core, on the histogram.

void PQAccumulator::add(const PairHistogram& h) {
  const size_t ng = static_cast<size_t>(h.n_gt), np = static_cast<size_t>(h.n_pred);
  std::vector<int64_t> void_overlap(np, 0);  // prediction pixels on GT void
  for (const auto& c : h.cells)
    if (c.gt == 0) void_overlap[static_cast<size_t>(c.pred)] += c.count;

  std::vector<uint8_t> gt_matched(ng, 0), pred_matched(np, 0);
  for (const auto& c : h.cells) {
    if (c.gt == 0 || c.pred == 0) continue;
    const size_t g = static_cast<size_t>(c.gt), p = static_cast<size_t>(c.pred);
    if (h.gt_crowd[g]) continue;
    if (h.gt_cat[g] != h.pred_cat[p]) continue;
    const int64_t uni = h.pred_area[p] + h.gt_area[g] - c.count - void_overlap[p];
    const double iou = static_cast<double>(c.count) / static_cast<double>(uni);
    if (iou > 0.5) {  // IoU > 0.5 makes the match unique on both sides
      PQCounts& s = stats_[static_cast<size_t>(h.gt_cat[g])];
      s.tp += 1;
      s.iou += iou;
      gt_matched[g] = 1;
      pred_matched[p] = 1;
    }
  }

  // As panopticapi: one crowd region per category, the last listed one of that category.
  std::unordered_map<int64_t, int32_t> crowd_of_cat;
  for (size_t g = 1; g < ng; ++g) {
    if (gt_matched[g]) continue;
    if (h.gt_crowd[g]) {
      crowd_of_cat[h.gt_cat[g]] = static_cast<int32_t>(g);
      continue;
    }
    stats_[static_cast<size_t>(h.gt_cat[g])].fn += 1;
  }
  std::vector<int64_t> crowd_overlap(np, 0);  // prediction pixels on the crowd region of its category
  if (!crowd_of_cat.empty())
    for (const auto& c : h.cells) {
      if (c.gt == 0 || c.pred == 0 || !h.gt_crowd[static_cast<size_t>(c.gt)]) continue;
      auto it = crowd_of_cat.find(h.pred_cat[static_cast<size_t>(c.pred)]);
      if (it != crowd_of_cat.end() && it->second == c.gt)
        crowd_overlap[static_cast<size_t>(c.pred)] += c.count;
    }
  for (size_t p = 1; p < np; ++p) {
    if (pred_matched[p] || h.pred_area[p] == 0) continue;
    const double ignored = static_cast<double>(void_overlap[p] + crowd_overlap[p]);
    if (ignored / static_cast<double>(h.pred_area[p]) > 0.5) continue;
    stats_[static_cast<size_t>(h.pred_cat[p])].fp += 1;
  }
}

void PQAccumulator::merge(const PQAccumulator& other) {
  DL_CHECK(other.stats_.size() == stats_.size(),
           "PQAccumulator::merge: " << other.stats_.size() << " vs " << stats_.size() << " categories");
  for (size_t i = 0; i < stats_.size(); ++i) {
    stats_[i].iou += other.stats_[i].iou;
    stats_[i].tp += other.stats_[i].tp;
    stats_[i].fp += other.stats_[i].fp;
    stats_[i].fn += other.stats_[i].fn;
  }
}

// ---------------------------------------------------------------------------------------------
// Parsing Covering: deeplab ParsingCovering.compare_and_accumulate, on the histogram.

void PCAccumulator::add(const PairHistogram& h) {
  const size_t ng = static_cast<size_t>(h.n_gt), np = static_cast<size_t>(h.n_pred);
  // GT void and crowd pixels are ignored: they count neither for GT nor for predicted areas.
  auto valid_gt = [&](int32_t g) { return g != 0 && !h.gt_crowd[static_cast<size_t>(g)]; };
  std::vector<int64_t> pred_area(np, 0);
  for (const auto& c : h.cells)
    if (valid_gt(c.gt)) pred_area[static_cast<size_t>(c.pred)] += c.count;
  std::vector<double> max_iou(ng, 0.0);
  for (const auto& c : h.cells) {
    if (!valid_gt(c.gt) || c.pred == 0) continue;
    const size_t g = static_cast<size_t>(c.gt), p = static_cast<size_t>(c.pred);
    if (h.gt_cat[g] != h.pred_cat[p]) continue;
    const double uni = static_cast<double>(h.gt_area[g] + pred_area[p] - c.count);
    max_iou[g] = std::max(max_iou[g], static_cast<double>(c.count) / uni);
  }
  const double norm = normalize_ ? static_cast<double>(h.height * h.width) : 1.0;
  for (size_t g = 1; g < ng; ++g) {
    if (h.gt_crowd[g] || h.gt_area[g] == 0) continue;
    const double area = static_cast<double>(h.gt_area[g]) / norm;
    const size_t c = static_cast<size_t>(h.gt_cat[g]);
    weighted_iou_[c] += max_iou[g] * area;
    gt_area_[c] += area;
  }
}

void PCAccumulator::merge(const PCAccumulator& other) {
  DL_CHECK(other.gt_area_.size() == gt_area_.size() && other.normalize_ == normalize_,
           "PCAccumulator::merge: accumulators of different shape or normalisation");
  for (size_t i = 0; i < gt_area_.size(); ++i) {
    weighted_iou_[i] += other.weighted_iou_[i];
    gt_area_[i] += other.gt_area_[i];
  }
}

// ---------------------------------------------------------------------------------------------
// Semantic confusion matrix.

void ConfusionAccumulator::add(const PairHistogram& h) {
  for (const auto& c : h.cells) {
    if (c.gt == 0) continue;
    const int64_t row = h.gt_cat[static_cast<size_t>(c.gt)];
    const int64_t col = c.pred == 0 ? c_ : h.pred_cat[static_cast<size_t>(c.pred)];
    m_[static_cast<size_t>(row * (c_ + 1) + col)] += c.count;
  }
}

void ConfusionAccumulator::merge(const ConfusionAccumulator& other) {
  DL_CHECK(other.c_ == c_, "ConfusionAccumulator::merge: " << other.c_ << " vs " << c_ << " categories");
  for (size_t i = 0; i < m_.size(); ++i) m_[i] += other.m_[i];
}

// ---------------------------------------------------------------------------------------------

PanopticEvaluator::PanopticEvaluator(std::vector<Category> categories, bool normalize_pc)
    : cats_(std::move(categories)), pq_(cats_.size()), pc_(cats_.size(), normalize_pc), conf_(cats_.size()) {}

void PanopticEvaluator::add(const PanopticMap& gt, const PanopticMap& pred, const std::string& what) {
  add(build_pair_histogram(gt, pred, cats_, what));
}

void PanopticEvaluator::add(const PairHistogram& h) {
  pq_.add(h);
  pc_.add(h);
  conf_.add(h);
  ++images_;
}

void PanopticEvaluator::merge(const PanopticEvaluator& other) {
  DL_CHECK(other.cats_.size() == cats_.size(), "PanopticEvaluator::merge: different category sets");
  for (int64_t i = 0; i < cats_.size(); ++i)
    DL_CHECK(other.cats_.at(i).id == cats_.at(i).id, "PanopticEvaluator::merge: different category sets");
  pq_.merge(other.pq_);
  pc_.merge(other.pc_);
  conf_.merge(other.conf_);
  images_ += other.images_;
}

EvalResult PanopticEvaluator::result() const {
  EvalResult r;
  r.images = images_;
  const int64_t C = cats_.size();
  int64_t diag = 0, total = 0;
  double iou_sum = 0;
  for (int64_t c = 0; c < C; ++c) {
    ClassResult cr;
    const Category& cat = cats_.at(c);
    cr.category_id = cat.id;
    cr.name = cat.name;
    cr.isthing = cat.isthing;
    cr.counts = pq_.stats()[static_cast<size_t>(c)];
    const PQCounts& s = cr.counts;
    if (s.tp + s.fp + s.fn > 0) {
      cr.pq_valid = true;
      const double den = s.tp + 0.5 * s.fp + 0.5 * s.fn;
      cr.pq = s.iou / den;
      cr.sq = s.tp ? s.iou / s.tp : 0.0;
      cr.rq = s.tp / den;
    }
    const double area = pc_.gt_area()[static_cast<size_t>(c)];
    if (area != 0) {
      cr.pc_valid = true;
      cr.pc = pc_.weighted_iou()[static_cast<size_t>(c)] / area;
    }
    int64_t row = 0, col = 0;
    for (int64_t k = 0; k <= C; ++k) row += conf_.at(c, k);
    for (int64_t k = 0; k < C; ++k) col += conf_.at(k, c);
    const int64_t tp = conf_.at(c, c);
    const int64_t den = row + col - tp;
    if (den > 0) {
      cr.iou_valid = true;
      cr.iou = static_cast<double>(tp) / static_cast<double>(den);
      iou_sum += cr.iou;
      ++r.miou_n;
    }
    diag += tp;
    total += row;
    for (SplitResult* split : {&r.all, cat.isthing ? &r.things : &r.stuff}) {
      if (cr.pq_valid) {
        split->pq += cr.pq;
        split->sq += cr.sq;
        split->rq += cr.rq;
        ++split->n;
      }
      if (cr.pc_valid) {
        split->pc += cr.pc;
        ++split->pc_n;
      }
    }
    r.per_class.push_back(std::move(cr));
  }
  for (SplitResult* split : {&r.all, &r.things, &r.stuff}) {
    if (split->n) {
      split->pq /= split->n;
      split->sq /= split->n;
      split->rq /= split->n;
    }
    if (split->pc_n) split->pc /= split->pc_n;
  }
  r.miou = r.miou_n ? iou_sum / r.miou_n : 0.0;
  r.pixel_accuracy = total ? static_cast<double>(diag) / static_cast<double>(total) : 0.0;
  return r;
}

}  // namespace dl
