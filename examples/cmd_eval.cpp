// `deeperlab eval`: ground truth vs predictions, both in COCO panoptic format -> PQ / SQ / RQ
// (All / Things / Stuff), Parsing Covering and mIoU, as a table or --json. Images are evaluated
// in parallel with one accumulator per thread, merged in thread order at the end (static
// interleaved schedule, so a given thread count always gives the same bits).
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/error.h"
#include "examples/cli.h"
#include "metrics/panoptic_eval.h"
#include "parser/panoptic.h"

namespace dl::cli {

namespace {

std::string default_dir(const std::string& json_path) {
  const std::string ext = ".json";
  if (json_path.size() > ext.size() && json_path.compare(json_path.size() - ext.size(), ext.size(), ext) == 0)
    return json_path.substr(0, json_path.size() - ext.size());
  return json_path + ".d";
}

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty() || name.empty() || name[0] == '/') return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

// The PNG of one annotation into a reused map (the ids are checked later, with the histogram).
void read_map(PanopticMap& m, const std::string& png, const PanopticAnnotation& ann, int64_t expect_h,
              int64_t expect_w, const char* expect_what, const std::string& what) {
  read_panoptic_png(png, m.ids, m.height, m.width);
  DL_CHECK(expect_h <= 0 || expect_w <= 0 || (m.height == expect_h && m.width == expect_w),
           what << ": " << png << " is " << m.width << "x" << m.height << " (w x h) but " << expect_what
                << " is " << expect_w << "x" << expect_h);
  m.segments = ann.segments;
}

nlohmann::json split_json(const SplitResult& s) {
  return {{"pq", s.pq}, {"sq", s.sq}, {"rq", s.rq}, {"n", s.n}, {"pc", s.pc}, {"pc_n", s.pc_n}};
}

}  // namespace

int cmd_eval(int argc, char** argv) {
  ArgParser ap(
      "eval",
      "Evaluate panoptic predictions against ground truth, both in COCO panoptic format (a JSON plus a\n"
      "folder of id PNGs): PQ / SQ / RQ as panopticapi, Parsing Covering as DeepLab, semantic mIoU.");
  ap.option("gt-json", "ground-truth JSON", "", true)
      .option("gt-dir", "folder of ground-truth PNGs (default: the JSON's path without .json)")
      .option("pred-json", "prediction JSON", "", true)
      .option("pred-dir", "folder of prediction PNGs (default: the JSON's path without .json)")
      .flag("json", "print the result as JSON on stdout instead of the table")
      .option("threads", "CPU threads (0 = all cores)", "0")
      .flag("no-normalize", "Parsing Covering without per-image normalisation of areas by image size");
  if (!ap.parse(argc, argv)) return 0;
  set_threads(ap.get_int("threads"));
  const std::string gt_json_path = ap.get("gt-json"), pred_json_path = ap.get("pred-json");
  const std::string gt_dir = ap.has("gt-dir") ? ap.get("gt-dir") : default_dir(gt_json_path);
  const std::string pred_dir = ap.has("pred-dir") ? ap.get("pred-dir") : default_dir(pred_json_path);
  const bool as_json = ap.get_flag("json");
  const bool normalize = !ap.get_flag("no-normalize");

  const PanopticJson gt = read_panoptic_json(gt_json_path);
  const PanopticJson pred = read_panoptic_json(pred_json_path);
  DL_CHECK(!gt.categories.empty(), gt_json_path << ": no 'categories' (the ground truth defines them)");
  DL_CHECK(!gt.annotations.empty(), gt_json_path << ": no annotations to evaluate");

  // Pair by image_id; every GT image needs a prediction.
  std::unordered_map<int64_t, size_t> pred_of;
  for (size_t i = 0; i < pred.annotations.size(); ++i) pred_of[pred.annotations[i].image_id] = i;
  std::vector<std::pair<size_t, size_t>> pairs;
  std::unordered_map<int64_t, bool> in_gt;
  for (size_t i = 0; i < gt.annotations.size(); ++i) {
    const auto& a = gt.annotations[i];
    auto it = pred_of.find(a.image_id);
    DL_CHECK(it != pred_of.end(), pred_json_path << ": no prediction for image_id " << a.image_id << " ("
                                                 << a.file_name << ", annotations[" << i << "] of "
                                                 << gt_json_path << ")");
    pairs.emplace_back(i, it->second);
    in_gt[a.image_id] = true;
  }
  int64_t extra = 0;
  std::string extra_ids;
  for (const auto& a : pred.annotations)
    if (!in_gt.count(a.image_id)) {
      if (extra < 5) extra_ids += (extra ? ", " : "") + std::to_string(a.image_id);
      ++extra;
    }
  if (extra)
    std::fprintf(
        stderr,
        "deeperlab eval: warning: %lld prediction(s) for images not in the ground truth, not evaluated "
        "(image_id %s%s)\n",
        static_cast<long long>(extra), extra_ids.c_str(), extra > 5 ? ", ..." : "");

  const int64_t n = static_cast<int64_t>(pairs.size());
  const int nthreads = std::max(1, omp_get_max_threads());
  std::vector<PanopticEvaluator> evals(static_cast<size_t>(nthreads),
                                       PanopticEvaluator(gt.categories, normalize));
  std::atomic<int64_t> done{0};
  std::atomic<bool> failed{false};
  int64_t first_bad = n;
  std::string first_error;
  Progress progress("eval", n, "img");

#pragma omp parallel num_threads(nthreads)
  {
    const int t = omp_get_thread_num();
    PanopticEvaluator& ev = evals[static_cast<size_t>(t)];
    PanopticMap g, p;  // reused across images: no fresh multi-megabyte buffers per image
#pragma omp for schedule(static, 1)
    for (int64_t i = 0; i < n; ++i) {
      if (failed.load(std::memory_order_relaxed)) continue;
      const PanopticAnnotation& ga = gt.annotations[pairs[static_cast<size_t>(i)].first];
      const PanopticAnnotation& pa = pred.annotations[pairs[static_cast<size_t>(i)].second];
      try {
        const std::string gt_png = join(gt_dir, ga.file_name), pred_png = join(pred_dir, pa.file_name);
        const std::string what =
            "image_id " + std::to_string(ga.image_id) + " (" + gt_png + " vs " + pred_png + ")";
        const ImageInfo* info = gt.image(ga.image_id);
        read_map(g, gt_png, ga, info ? info->height : 0, info ? info->width : 0, "its 'images' entry", what);
        read_map(p, pred_png, pa, g.height, g.width, "the ground truth", what);
        // The histogram checks ids, duplicates and categories (one pass over the pixels for all).
        const PairHistogram h = build_pair_histogram(g, p, ev.categories(), what);
        // As panopticapi: a predicted segment listed in the JSON must have pixels in the PNG.
        for (int64_t k = 1; k < h.n_pred; ++k)
          DL_CHECK(h.pred_area[static_cast<size_t>(k)] > 0,
                   what << ": prediction segments_info[" << k - 1 << "] id "
                        << p.segments[static_cast<size_t>(k - 1)].id << " is not present in the PNG");
        ev.add(h);
      } catch (const std::exception& e) {
#pragma omp critical(dl_eval_error)
        {
          if (i < first_bad) {
            first_bad = i;
            first_error = e.what();
            // Every message names the image (file errors name only the file otherwise).
            if (first_error.find("image_id ") == std::string::npos)
              first_error = "image_id " + std::to_string(ga.image_id) + ": " + first_error;
          }
        }
        failed = true;
      }
      const int64_t d = ++done;
      if (t == 0 && d < n) progress.update(d);
    }
  }
  if (failed) throw Error(first_error);  // the first failing image in input order
  progress.finish();
  for (int t = 1; t < nthreads; ++t) evals[0].merge(evals[static_cast<size_t>(t)]);
  const EvalResult r = evals[0].result();

  if (as_json) {
    nlohmann::json out = split_json(r.all);
    out["things"] = split_json(r.things);
    out["stuff"] = split_json(r.stuff);
    out["miou"] = r.miou;
    out["miou_n"] = r.miou_n;
    out["pixel_accuracy"] = r.pixel_accuracy;
    out["images"] = r.images;
    out["pc_normalized"] = normalize;
    nlohmann::json per = nlohmann::json::object();
    for (const auto& c : r.per_class) {
      nlohmann::json j = {{"name", c.name},
                          {"isthing", c.isthing},
                          {"pq", c.pq},
                          {"sq", c.sq},
                          {"rq", c.rq},
                          {"tp", c.counts.tp},
                          {"fp", c.counts.fp},
                          {"fn", c.counts.fn},
                          {"iou_sum", c.counts.iou},
                          {"pq_valid", c.pq_valid}};
      j["pc"] = c.pc_valid ? nlohmann::json(c.pc) : nlohmann::json(nullptr);
      j["iou"] = c.iou_valid ? nlohmann::json(c.iou) : nlohmann::json(nullptr);
      per[std::to_string(c.category_id)] = std::move(j);
    }
    out["per_class"] = std::move(per);
    std::cout << out.dump(1) << "\n";
    return 0;
  }
  std::printf("%-10s| %5s  %5s  %5s %5s | %5s %5s\n", "", "PQ", "SQ", "RQ", "N", "PC", "N");
  std::printf("%s\n", std::string(10 + 7 * 4 + 14, '-').c_str());
  const std::pair<const char*, const SplitResult*> rows[] = {
      {"All", &r.all}, {"Things", &r.things}, {"Stuff", &r.stuff}};
  for (const auto& [name, s] : rows)
    std::printf("%-10s| %5.1f  %5.1f  %5.1f %5lld | %5.1f %5lld\n", name, 100 * s->pq, 100 * s->sq,
                100 * s->rq, static_cast<long long>(s->n), 100 * s->pc, static_cast<long long>(s->pc_n));
  std::printf("mIoU %.1f (%lld classes), pixel accuracy %.1f, %lld images, PC %s\n", 100 * r.miou,
              static_cast<long long>(r.miou_n), 100 * r.pixel_accuracy, static_cast<long long>(r.images),
              normalize ? "normalised by image size" : "on raw pixel areas");
  return 0;
}

}  // namespace dl::cli
