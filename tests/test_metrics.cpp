// PQ / SQ / RQ, Parsing Covering and mIoU on hand-computed scenes. Label maps are drawn as
// character grids: '.' is void, every other character is the segment listed for it.
#include <catch2/catch.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "metrics/panoptic_eval.h"

using namespace dl;
using Catch::Matchers::Contains;

namespace {

enum : int32_t { PERSON = 1, CAR = 2, SKY = 3, ROAD = 4 };

std::vector<Category> cats() {
  return {{PERSON, "person", true, {}},
          {CAR, "car", true, {}},
          {SKY, "sky", false, {}},
          {ROAD, "road", false, {}}};
}

struct Seg {
  char key;
  int32_t cat;
  bool crowd = false;
};

// Segment ids are derived from the character so that GT and prediction ids differ in general.
PanopticMap grid(const std::vector<std::string>& rows, const std::vector<Seg>& segs) {
  PanopticMap m;
  m.height = static_cast<int64_t>(rows.size());
  m.width = static_cast<int64_t>(rows[0].size());
  for (const auto& r : rows) {
    REQUIRE(static_cast<int64_t>(r.size()) == m.width);
    for (char ch : r) m.ids.push_back(ch == '.' ? 0 : 1000 + ch);
  }
  for (const auto& s : segs) {
    SegmentInfo si;
    si.id = 1000 + s.key;
    si.category_id = s.cat;
    si.iscrowd = s.crowd;
    m.segments.push_back(si);
  }
  return m;
}

const ClassResult& cls(const EvalResult& r, int32_t id) {
  for (const auto& c : r.per_class)
    if (c.category_id == id) return c;
  FAIL("no category " << id);
  return r.per_class[0];
}

EvalResult eval1(const PanopticMap& gt, const PanopticMap& pred, bool normalize = true) {
  PanopticEvaluator ev(cats(), normalize);
  ev.add(gt, pred);
  return ev.result();
}

}  // namespace

TEST_CASE("perfect prediction 4x5 things stuff crowd void -> all 1", "[metrics]") {
  auto gt = grid({"AAB.S", "AAB.S", "CCSSS", "RRRRR"},
                 {{'A', PERSON}, {'B', PERSON}, {'C', CAR, true}, {'S', SKY}, {'R', ROAD}});
  // The prediction has the same pixels under other ids; the crowd region is predicted as a car.
  auto pred = grid({"aab.s", "aab.s", "ccsss", "rrrrr"},
                   {{'a', PERSON}, {'b', PERSON}, {'c', CAR}, {'s', SKY}, {'r', ROAD}});
  EvalResult r = eval1(gt, pred);
  CHECK(r.all.pq == Approx(1.0));
  CHECK(r.all.sq == Approx(1.0));
  CHECK(r.all.rq == Approx(1.0));
  CHECK(r.all.n == 3);  // person, sky, road (car is crowd only: no TP/FP/FN)
  CHECK(r.things.n == 1);
  CHECK(r.stuff.n == 2);
  CHECK(cls(r, PERSON).counts.tp == 2);
  CHECK(cls(r, CAR).counts.fp == 0);  // lies entirely on the car crowd region
  CHECK(!cls(r, CAR).pq_valid);
  CHECK(r.all.pc == Approx(1.0));
  CHECK(r.all.pc_n == 3);  // crowd pixels are not GT regions for PC
  CHECK(r.miou == Approx(1.0));
  CHECK(r.miou_n == 4);  // the crowd pixels are car pixels for the semantic confusion
  CHECK(r.pixel_accuracy == Approx(1.0));
}

TEST_CASE("missed person segment 4x4 -> FN, PQ 0.375", "[metrics]") {
  auto gt = grid({"AASS", "AASS", "SSSS", "SSSS"}, {{'A', PERSON}, {'S', SKY}});
  auto pred = grid({"tttt", "tttt", "tttt", "tttt"}, {{'t', SKY}});
  EvalResult r = eval1(gt, pred);
  const auto& person = cls(r, PERSON);
  CHECK(person.counts.fn == 1);
  CHECK(person.counts.tp == 0);
  CHECK(person.pq == 0.0);
  const auto& sky = cls(r, SKY);
  CHECK(sky.counts.tp == 1);
  CHECK(sky.counts.iou == Approx(0.75));  // 12 / (16 + 12 - 12)
  CHECK(r.all.pq == Approx(0.375));
  CHECK(r.all.sq == Approx(0.375));
  CHECK(r.all.rq == Approx(0.5));
  CHECK(r.things.pq == 0.0);
  CHECK(r.stuff.pq == Approx(0.75));
  // PC: person covered by nothing of its class, sky IoU 0.75.
  CHECK(person.pc == 0.0);
  CHECK(sky.pc == Approx(0.75));
  CHECK(r.all.pc == Approx(0.375));
  // mIoU: person 0 / 4, sky 12 / 16.
  CHECK(person.iou == 0.0);
  CHECK(sky.iou == Approx(0.75));
  CHECK(r.miou == Approx(0.375));
  CHECK(r.pixel_accuracy == Approx(0.75));
}

TEST_CASE("false positive half on void counted, 3/4 on void forgiven 3x5", "[metrics]") {
  auto gt = grid({"SSS..", "SSS..", "SSS.."}, {{'S', SKY}});
  SECTION("half on void -> FP") {
    auto pred = grid({"ttpp.", "ttpp.", "ttt.."}, {{'t', SKY}, {'p', PERSON}});
    EvalResult r = eval1(gt, pred);
    CHECK(cls(r, PERSON).counts.fp == 1);
    CHECK(cls(r, SKY).counts.tp == 1);
    CHECK(cls(r, SKY).counts.iou == Approx(7.0 / 9.0));
    CHECK(r.all.n == 2);
    CHECK(r.all.pq == Approx((0.0 + 7.0 / 9.0) / 2));
  }
  SECTION("3 of 4 pixels on void -> forgiven") {
    auto pred = grid({"ttpp.", "tttp.", "tttp."}, {{'t', SKY}, {'p', PERSON}});
    EvalResult r = eval1(gt, pred);
    CHECK(cls(r, PERSON).counts.fp == 0);
    CHECK(!cls(r, PERSON).pq_valid);
    CHECK(r.all.n == 1);
    CHECK(r.all.pq == Approx(8.0 / 9.0));
  }
  SECTION("union excludes the prediction's overlap with void") {
    auto pred = grid({"ttttt", "ttttt", "ttttt"}, {{'t', SKY}});
    EvalResult r = eval1(gt, pred);
    CHECK(cls(r, SKY).counts.iou == Approx(1.0));
    CHECK(r.all.pq == Approx(1.0));
    CHECK(r.all.pc == Approx(1.0));  // PC ignores predicted pixels on GT void as well
    // mIoU ignores GT void pixels entirely.
    CHECK(r.miou == Approx(1.0));
  }
}

TEST_CASE("false positive on crowd: own category forgiven, other category counted 2x4", "[metrics]") {
  auto pred = grid({"ppp.", "tttt"}, {{'p', PERSON}, {'t', SKY}});
  SECTION("crowd of its own category") {
    auto gt = grid({"CCCC", "SSSS"}, {{'C', PERSON, true}, {'S', SKY}});
    EvalResult r = eval1(gt, pred);
    const auto& person = cls(r, PERSON);
    CHECK(person.counts.tp == 0);
    CHECK(person.counts.fp == 0);
    CHECK(person.counts.fn == 0);  // crowd GT is never a false negative
    CHECK(r.all.n == 1);
    CHECK(r.all.pq == Approx(1.0));
    CHECK(!person.pc_valid);            // crowd pixels are no GT area for PC
    CHECK(person.iou == Approx(0.75));  // but they are person pixels for mIoU: 3 / (4 + 3 - 3)
  }
  SECTION("crowd of another category") {
    auto gt = grid({"CCCC", "SSSS"}, {{'C', CAR, true}, {'S', SKY}});
    EvalResult r = eval1(gt, pred);
    CHECK(cls(r, PERSON).counts.fp == 1);
    CHECK(!cls(r, CAR).pq_valid);
    CHECK(r.all.n == 2);
    CHECK(r.all.pq == Approx(0.5));
  }
  SECTION("a prediction equal to a crowd region is never matched") {
    auto gt = grid({"CCCC", "SSSS"}, {{'C', PERSON, true}, {'S', SKY}});
    auto exact = grid({"pppp", "tttt"}, {{'p', PERSON}, {'t', SKY}});
    EvalResult r = eval1(gt, exact);
    CHECK(cls(r, PERSON).counts.tp == 0);
    CHECK(cls(r, PERSON).counts.fp == 0);
  }
  SECTION("void plus own crowd together over half -> forgiven") {
    // p: 1 px on void, 1 on person crowd, 1 on sky -> 2/3 ignored.
    auto gt = grid({"C.SS", "SSSS"}, {{'C', PERSON, true}, {'S', SKY}});
    auto p2 = grid({"ppp.", "tttt"}, {{'p', PERSON}, {'t', SKY}});
    EvalResult r = eval1(gt, p2);
    CHECK(cls(r, PERSON).counts.fp == 0);
  }
}

TEST_CASE("IoU exactly 0.5 is no match, 0.75 is 1x4", "[metrics]") {
  auto gt = grid({"AAAA"}, {{'A', PERSON}});
  SECTION("IoU 2/4") {
    EvalResult r = eval1(gt, grid({"pp.."}, {{'p', PERSON}}));
    const auto& c = cls(r, PERSON).counts;
    CHECK(c.tp == 0);
    CHECK(c.fn == 1);
    CHECK(c.fp == 1);
    CHECK(r.all.pq == 0.0);
    CHECK(cls(r, PERSON).pc == Approx(0.5));  // PC has no threshold
  }
  SECTION("IoU 3/4") {
    EvalResult r = eval1(gt, grid({"ppp."}, {{'p', PERSON}}));
    CHECK(cls(r, PERSON).counts.tp == 1);
    CHECK(r.all.pq == Approx(0.75));
    CHECK(r.all.sq == Approx(0.75));
    CHECK(r.all.rq == Approx(1.0));
  }
}

TEST_CASE("classes absent from both sides are excluded from every mean", "[metrics]") {
  auto gt = grid({"AA", "SS"}, {{'A', PERSON}, {'S', SKY}});
  auto pred = grid({"aa", "ss"}, {{'a', PERSON}, {'s', SKY}});
  EvalResult r = eval1(gt, pred);
  CHECK(r.all.n == 2);
  CHECK(r.things.n == 1);
  CHECK(r.stuff.n == 1);
  CHECK(r.all.pc_n == 2);
  CHECK(r.miou_n == 2);
  CHECK(!cls(r, CAR).pq_valid);
  CHECK(!cls(r, CAR).pc_valid);
  CHECK(!cls(r, CAR).iou_valid);
  CHECK(!cls(r, ROAD).pq_valid);
  CHECK(r.all.pq == Approx(1.0));
  // No images at all: everything 0 with n = 0, no division by zero.
  PanopticEvaluator empty(cats());
  EvalResult e = empty.result();
  CHECK(e.all.n == 0);
  CHECK(e.all.pq == 0.0);
  CHECK(e.miou == 0.0);
}

TEST_CASE("parsing covering partial stuff overlap, images 2x2 and 4x4, normalisation on/off", "[metrics]") {
  // Image 1 (4 px): sky covered half by sky, half by road -> sky IoU 2 / (4 + 2 - 2) = 0.5.
  auto gt1 = grid({"SS", "SS"}, {{'S', SKY}});
  auto pred1 = grid({"ss", "rr"}, {{'s', SKY}, {'r', ROAD}});
  // Image 2 (16 px): sky and road, each 8 px, predicted exactly.
  auto gt2 = grid({"SSSS", "SSSS", "RRRR", "RRRR"}, {{'S', SKY}, {'R', ROAD}});
  auto pred2 = grid({"ssss", "ssss", "rrrr", "rrrr"}, {{'s', SKY}, {'r', ROAD}});
  SECTION("normalised by image size (default)") {
    PanopticEvaluator ev(cats());
    ev.add(gt1, pred1);
    ev.add(gt2, pred2);
    EvalResult r = ev.result();
    // sky: (0.5 * 4/4 + 1 * 8/16) / (4/4 + 8/16) = 2/3; road: 1.
    CHECK(cls(r, SKY).pc == Approx(2.0 / 3.0));
    CHECK(cls(r, ROAD).pc == Approx(1.0));
    CHECK(r.all.pc == Approx(5.0 / 6.0));
    CHECK(r.stuff.pc == Approx(5.0 / 6.0));
    CHECK(r.things.pc_n == 0);
  }
  SECTION("raw pixel areas") {
    PanopticEvaluator ev(cats(), false);
    ev.add(gt1, pred1);
    ev.add(gt2, pred2);
    EvalResult r = ev.result();
    // sky: (0.5 * 4 + 1 * 8) / (4 + 8) = 5/6.
    CHECK(cls(r, SKY).pc == Approx(5.0 / 6.0));
    CHECK(r.all.pc == Approx(11.0 / 12.0));
  }
  SECTION("best of two predicted regions, void and crowd pixels ignored") {
    // GT person A: 6 px; predictions a (4 px on A) and b (2 px on A, 2 on crowd, 1 on void).
    auto gt = grid({"AAAAAA", "CC.SSS"}, {{'A', PERSON}, {'C', PERSON, true}, {'S', SKY}});
    auto pred = grid({"aaaabb", "bbbsss"}, {{'a', PERSON}, {'b', PERSON}, {'s', SKY}});
    EvalResult r = eval1(gt, pred, false);
    // a: 4 / 6; b counts 2 px only (crowd and void ignored): 2 / (6 + 2 - 2).
    CHECK(cls(r, PERSON).pc == Approx(4.0 / 6.0));
    CHECK(cls(r, SKY).pc == Approx(1.0));
  }
}

TEST_CASE("mIoU and pixel accuracy by hand 2x3 with void", "[metrics]") {
  auto gt = grid({"SSR", "S.R"}, {{'S', SKY}, {'R', ROAD}});
  auto pred = grid({"suu", "suu"}, {{'s', SKY}, {'u', ROAD}});
  EvalResult r = eval1(gt, pred);
  // sky: tp 2, GT 3, predicted 2 -> 2/3; road: tp 2, GT 2, predicted 3 (void pixel excluded) -> 2/3.
  CHECK(cls(r, SKY).iou == Approx(2.0 / 3.0));
  CHECK(cls(r, ROAD).iou == Approx(2.0 / 3.0));
  CHECK(r.miou == Approx(2.0 / 3.0));
  CHECK(r.miou_n == 2);
  CHECK(r.pixel_accuracy == Approx(0.8));
  SECTION("predicted void on a GT pixel is a miss") {
    auto pv = grid({"s.u", "suu"}, {{'s', SKY}, {'u', ROAD}});
    EvalResult q = eval1(gt, pv);
    CHECK(cls(q, SKY).iou == Approx(2.0 / 3.0));  // 2 / (3 + 2 - 2)
    CHECK(cls(q, ROAD).iou == Approx(1.0));       // 2 / (2 + 2 - 2)
    CHECK(q.pixel_accuracy == Approx(0.8));
  }
  SECTION("a class only predicted counts with IoU 0") {
    auto pc = grid({"scu", "suu"}, {{'s', SKY}, {'c', CAR}, {'u', ROAD}});
    EvalResult q = eval1(gt, pc);
    CHECK(cls(q, CAR).iou_valid);
    CHECK(cls(q, CAR).iou == 0.0);
    CHECK(q.miou_n == 3);
  }
}

TEST_CASE("bad label maps are rejected naming the image", "[metrics]") {
  auto gt = grid({"AA", "SS"}, {{'A', PERSON}, {'S', SKY}});
  PanopticEvaluator ev(cats());
  auto small = grid({"aa"}, {{'a', PERSON}});
  auto err = [&](const PanopticMap& p) {
    try {
      ev.add(gt, p, "image 7");
    } catch (const dl::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK_THAT(err(small), Contains("image 7") && Contains("prediction is 2x1"));
  auto unlisted = grid({"aa", "ss"}, {{'a', PERSON}});
  CHECK_THAT(err(unlisted), Contains("image 7") && Contains("prediction segment id 1115") &&
                                Contains("not in segments_info"));
  auto unknown = grid({"aa", "ss"}, {{'a', PERSON}, {'s', 99}});
  CHECK_THAT(err(unknown), Contains("unknown category_id 99"));
  auto dup = grid({"aa", "ss"}, {{'a', PERSON}, {'s', SKY}, {'s', SKY}});
  CHECK_THAT(err(dup), Contains("duplicate segment id"));
}

TEST_CASE("merged accumulators equal one accumulator, 12 random 23x31 images in 3 parts", "[metrics]") {
  std::mt19937 rng(7);
  auto random_map = [&](bool is_gt) {
    PanopticMap m;
    m.height = 23;
    m.width = 31;
    m.ids.assign(23 * 31, 0);
    const int nseg = 6;
    for (int k = 1; k <= nseg; ++k) {
      SegmentInfo s;
      s.id = k * 7 + (is_gt ? 0 : 3);
      s.category_id = 1 + static_cast<int32_t>(rng() % 4);
      s.iscrowd = is_gt && rng() % 5 == 0;
      m.segments.push_back(s);
      const int y0 = rng() % 23, x0 = rng() % 31, h = 1 + rng() % 15, w = 1 + rng() % 20;
      for (int y = y0; y < std::min(23, y0 + h); ++y)
        for (int x = x0; x < std::min(31, x0 + w); ++x) m.ids[y * 31 + x] = s.id;
    }
    return m;
  };
  std::vector<std::pair<PanopticMap, PanopticMap>> data;
  for (int i = 0; i < 12; ++i) {
    auto g = random_map(true);
    auto p = random_map(false);
    // Predictions close to the GT now and then, so that some segments match.
    if (i % 2 == 0)
      for (size_t k = 0; k < g.ids.size(); ++k)
        if (g.ids[k] && rng() % 10) p.ids[k] = g.ids[k] + 3;
    // Prediction segment k has the class of GT segment k (some may end up without pixels:
    // area 0 is never a false positive).
    for (size_t k = 0; k < p.segments.size(); ++k) p.segments[k].category_id = g.segments[k].category_id;
    data.emplace_back(std::move(g), std::move(p));
  }
  PanopticEvaluator one(cats());
  for (auto& [g, p] : data) one.add(g, p);
  PanopticEvaluator parts[3] = {PanopticEvaluator(cats()), PanopticEvaluator(cats()),
                                PanopticEvaluator(cats())};
  for (size_t i = 0; i < data.size(); ++i) parts[i % 3].add(data[i].first, data[i].second);
  parts[0].merge(parts[1]);
  parts[0].merge(parts[2]);
  EvalResult a = one.result(), b = parts[0].result();
  CHECK(a.images == 12);
  CHECK(b.images == 12);
  int64_t tp_total = 0;
  for (size_t c = 0; c < a.per_class.size(); ++c) {
    INFO("category " << a.per_class[c].category_id);
    CHECK(a.per_class[c].counts.tp == b.per_class[c].counts.tp);
    CHECK(a.per_class[c].counts.fp == b.per_class[c].counts.fp);
    CHECK(a.per_class[c].counts.fn == b.per_class[c].counts.fn);
    CHECK(a.per_class[c].counts.iou == Approx(b.per_class[c].counts.iou).epsilon(1e-12));
    CHECK(a.per_class[c].pc == Approx(b.per_class[c].pc).epsilon(1e-12));
    CHECK(a.per_class[c].iou == b.per_class[c].iou);
    tp_total += a.per_class[c].counts.tp;
  }
  CHECK(tp_total > 0);
  CHECK(a.all.pq == Approx(b.all.pq).epsilon(1e-12));
  CHECK(a.all.pc == Approx(b.all.pc).epsilon(1e-12));
  CHECK(a.miou == b.miou);
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 5; ++j) CHECK(one.confusion().at(i, j) == parts[0].confusion().at(i, j));
}
