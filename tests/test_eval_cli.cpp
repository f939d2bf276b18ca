// `deeperlab eval` end to end on tiny datasets written into a temporary folder: the table, --json
// against the in-process evaluator and hand values, --threads and --no-normalize, every bad-input
// error (non-zero exit, the image named), and a cross-check against bench/numpy_eval.py (the
// numpy re-implementation of panopticapi's pq_compute, DeepLab's parsing covering and mIoU).
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "bench/eval_data.h"
#include "metrics/panoptic_eval.h"
#include "parser/panoptic.h"

namespace fs = std::filesystem;
using namespace dl;
using Catch::Matchers::Contains;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/dl_eval_cli_XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

struct Run {
  int rc = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

Run run(const std::string& cmd, const TempDir& d) {
  const std::string o = d / "stdout.txt", e = d / "stderr.txt";
  const int status = std::system((cmd + " > " + o + " 2> " + e).c_str());
  Run r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  r.out = slurp(o);
  r.err = slurp(e);
  return r;
}

std::string deeperlab_bin() {
  if (const char* b = std::getenv("DEEPERLAB_BIN")) return b;
  for (const char* c : {"build/deeperlab", "../build/deeperlab"})
    if (fs::exists(c)) return fs::absolute(c).string();
  return "";
}

std::string numpy_script() {
  for (const fs::path& c :
       {fs::path("bench/numpy_eval.py"), fs::path(__FILE__).parent_path() / "../bench/numpy_eval.py"})
    if (fs::exists(c)) return fs::absolute(c).string();
  return "";
}

#define REQUIRE_BIN(bin)                                                 \
  const std::string bin = deeperlab_bin();                               \
  if (bin.empty()) {                                                     \
    WARN("DEEPERLAB_BIN not set and no build/deeperlab found: skipped"); \
    return;                                                              \
  }

enum : int32_t { PERSON = 1, CAR = 2, SKY = 3, ROAD = 4 };

std::vector<Category> cats() {
  return {{PERSON, "person", true, {1, 2, 3}},
          {CAR, "car", true, {}},
          {SKY, "sky", false, {}},
          {ROAD, "road", false, {}}};
}

PanopticMap grid(const std::vector<std::string>& rows, const std::vector<std::pair<char, int32_t>>& segs,
                 int base) {
  PanopticMap m;
  m.height = static_cast<int64_t>(rows.size());
  m.width = static_cast<int64_t>(rows[0].size());
  for (const auto& r : rows)
    for (char ch : r) m.ids.push_back(ch == '.' ? 0 : base + ch);
  for (const auto& [ch, cat] : segs) {
    SegmentInfo s;
    s.id = base + ch;
    s.category_id = cat;
    for (int32_t v : m.ids) s.area += v == s.id;
    m.segments.push_back(s);
  }
  return m;
}

// Two images: 3x6 with person + sky predicted exactly; 4x4 with car + road where the car is
// missed (predicted as road).
struct Tiny {
  std::vector<std::pair<PanopticMap, PanopticMap>> maps;
  Tiny() {
    maps.push_back({grid({"AASSSS", "AASSSS", "SSSS.."}, {{'A', PERSON}, {'S', SKY}}, 100),
                    grid({"aassss", "aassss", "ssss.."}, {{'a', PERSON}, {'s', SKY}}, 7000)});
    maps.push_back({grid({"CCRR", "CCRR", "RRRR", "RRRR"}, {{'C', CAR}, {'R', ROAD}}, 300),
                    grid({"rrrr", "rrrr", "rrrr", "rrrr"}, {{'r', ROAD}}, 9000)});
  }
  // Writes gt.json + gt/, pred.json + pred/ under d.
  void write(const TempDir& d) const {
    fs::create_directories(d / "gt");
    fs::create_directories(d / "pred");
    PanopticJson g, p;
    g.categories = cats();
    for (size_t i = 0; i < maps.size(); ++i) {
      const auto& [gm, pm] = maps[i];
      const std::string name = "im" + std::to_string(i);
      g.images.push_back({int64_t(i + 1), name + ".jpg", gm.width, gm.height});
      g.annotations.push_back({int64_t(i + 1), name + ".png", gm.segments});
      p.annotations.push_back({int64_t(i + 1), name + ".png", pm.segments});
      write_panoptic_png(d / ("gt/" + name + ".png"), gm.ids, gm.height, gm.width);
      write_panoptic_png(d / ("pred/" + name + ".png"), pm.ids, pm.height, pm.width);
    }
    write_panoptic_json(d / "gt.json", g);
    write_panoptic_json(d / "pred.json", p);
  }
};

std::string args(const TempDir& d) {
  return " --gt-json " + (d / "gt.json") + " --pred-json " + (d / "pred.json");
}

nlohmann::json json_of(const Run& r) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.rc == 0);
  return nlohmann::json::parse(r.out);
}

}  // namespace

TEST_CASE("eval cli 2 images: table, --json, hand values, threads, normalisation", "[eval_cli]") {
  REQUIRE_BIN(bin);
  TempDir d;
  Tiny tiny;
  tiny.write(d);

  Run table = run(bin + " eval" + args(d), d);
  INFO(table.err);
  REQUIRE(table.rc == 0);
  CHECK_THAT(table.out, Contains("PQ") && Contains("SQ") && Contains("RQ") && Contains("All") &&
                            Contains("Things") && Contains("Stuff") && Contains("mIoU") && Contains("PC"));

  nlohmann::json j = json_of(run(bin + " eval --json --threads 1" + args(d), d));
  for (const char* k : {"pq", "sq", "rq", "pc", "miou", "things", "stuff", "per_class"}) CHECK(j.contains(k));
  // By hand: person, sky matched with IoU 1; car missed (FN); road IoU 12 / 16.
  CHECK(j["per_class"]["1"]["pq"].get<double>() == Approx(1.0));
  CHECK(j["per_class"]["2"]["fn"].get<int64_t>() == 1);
  CHECK(j["per_class"]["2"]["pq"].get<double>() == 0.0);
  CHECK(j["per_class"]["4"]["sq"].get<double>() == Approx(0.75));
  CHECK(j["pq"].get<double>() == Approx((1.0 + 0.0 + 1.0 + 0.75) / 4));
  CHECK(j["things"]["pq"].get<double>() == Approx(0.5));
  CHECK(j["stuff"]["pq"].get<double>() == Approx(0.875));
  CHECK(j["images"].get<int64_t>() == 2);

  // The same numbers as the in-process evaluator.
  PanopticEvaluator ev(cats());
  for (const auto& [g, p] : tiny.maps) ev.add(g, p);
  EvalResult r = ev.result();
  CHECK(j["pq"].get<double>() == Approx(r.all.pq).epsilon(1e-12));
  CHECK(j["pc"].get<double>() == Approx(r.all.pc).epsilon(1e-12));
  CHECK(j["miou"].get<double>() == Approx(r.miou).epsilon(1e-12));

  nlohmann::json j2 = json_of(run(bin + " eval --json --threads 2" + args(d), d));
  CHECK(j2["pq"].get<double>() == Approx(j["pq"].get<double>()).epsilon(1e-12));
  CHECK(j2["pc"].get<double>() == Approx(j["pc"].get<double>()).epsilon(1e-12));

  // Car (4 px of a 16 px image) is covered by nothing; road IoU 12/16 only in image 2; the two
  // images differ in size, so normalisation changes PC.
  nlohmann::json jn = json_of(run(bin + " eval --json --no-normalize" + args(d), d));
  PanopticEvaluator ev_raw(cats(), false);
  for (const auto& [g, p] : tiny.maps) ev_raw.add(g, p);
  CHECK(jn["pc"].get<double>() == Approx(ev_raw.result().all.pc).epsilon(1e-12));
  CHECK(jn["pc_normalized"].get<bool>() == false);

  // Explicit folders give the same result.
  nlohmann::json je = json_of(
      run(bin + " eval --json" + args(d) + " --gt-dir " + (d / "gt") + " --pred-dir " + (d / "pred"), d));
  CHECK(je["pq"].get<double>() == Approx(j["pq"].get<double>()));
}

TEST_CASE("eval cli bad inputs exit non-zero naming the image", "[eval_cli]") {
  REQUIRE_BIN(bin);
  Tiny tiny;
  auto expect_error = [&](const std::function<void(const TempDir&)>& damage,
                          const std::vector<std::string>& parts) {
    TempDir d;
    tiny.write(d);
    damage(d);
    Run r = run(bin + " eval" + args(d), d);
    INFO("stderr: " << r.err);
    CHECK(r.rc != 0);
    for (const auto& p : parts) CHECK_THAT(r.err, Contains(p));
  };
  auto edit_json = [](const std::string& path, const std::function<void(nlohmann::json&)>& fn) {
    nlohmann::json j = nlohmann::json::parse(slurp(path));
    fn(j);
    std::ofstream(path) << j.dump();
  };

  SECTION("an image without a prediction") {
    expect_error(
        [&](const TempDir& d) { edit_json(d / "pred.json", [](auto& j) { j["annotations"].erase(1); }); },
        {"no prediction for image_id 2", "im1.png"});
  }
  SECTION("prediction PNG with an id missing from its JSON") {
    expect_error(
        [&](const TempDir& d) {
          edit_json(d / "pred.json", [](auto& j) { j["annotations"][0]["segments_info"].erase(0); });
        },
        {"image_id 1", "prediction segment id", "not in segments_info"});
  }
  SECTION("duplicate segment ids") {
    expect_error(
        [&](const TempDir& d) {
          edit_json(d / "pred.json", [](auto& j) {
            auto& s = j["annotations"][1]["segments_info"];
            s.push_back(s[0]);
          });
        },
        {"pred.json", "image_id 2", "duplicate segment id"});
  }
  SECTION("unknown category") {
    expect_error(
        [&](const TempDir& d) {
          edit_json(d / "pred.json",
                    [](auto& j) { j["annotations"][0]["segments_info"][1]["category_id"] = 77; });
        },
        {"image_id 1", "unknown category_id 77"});
  }
  SECTION("missing prediction file") {
    expect_error([&](const TempDir& d) { fs::remove(d / "pred/im1.png"); },
                 {"image_id 2", "im1.png", "cannot open"});
  }
  SECTION("prediction of another size") {
    expect_error(
        [&](const TempDir& d) {
          std::vector<int32_t> ids(5 * 4, 9000 + 'r');
          write_panoptic_png(d / "pred/im1.png", ids, 4, 5);
        },
        {"image_id 2", "is 5x4", "the ground truth is 4x4"});
  }
  SECTION("listed prediction segment absent from the PNG") {
    expect_error(
        [&](const TempDir& d) {
          edit_json(d / "pred.json", [](auto& j) {
            j["annotations"][1]["segments_info"].push_back(
                {{"id", 4242}, {"category_id", 2}, {"iscrowd", 0}});
          });
        },
        {"image_id 2", "id 4242 is not present in the PNG"});
  }
  SECTION("ground-truth PNG that disagrees with its images entry") {
    expect_error(
        [&](const TempDir& d) { edit_json(d / "gt.json", [](auto& j) { j["images"][0]["width"] = 7; }); },
        {"image_id 1", "its 'images' entry is 7x3"});
  }
  SECTION("malformed prediction JSON") {
    expect_error([&](const TempDir& d) { std::ofstream(d / "pred.json") << "{\"annotations\": [1,"; },
                 {"pred.json", "malformed JSON"});
  }
  SECTION("corrupt prediction PNG") {
    expect_error([&](const TempDir& d) { std::ofstream(d / "pred/im0.png") << "not a png"; },
                 {"image_id 1", "im0.png", "cannot decode panoptic PNG"});
  }
}

TEST_CASE("eval cli agrees with the numpy reference on 6 random pairs 48x64..96x128", "[eval_cli][numpy]") {
  REQUIRE_BIN(bin);
  const std::string script = numpy_script();
  if (script.empty() || !fs::exists("/usr/bin/python3") ||
      std::system("/usr/bin/python3 -c 'import numpy' > /dev/null 2>&1") != 0) {
    WARN("/usr/bin/python3 with numpy or bench/numpy_eval.py not found: skipped");
    return;
  }
  TempDir d;
  fs::create_directories(d / "gt");
  fs::create_directories(d / "pred");
  std::vector<std::vector<SegmentInfo>> gs, ps;
  PanopticJson gj, pj;
  gj.categories = evaldata::categories();
  for (int i = 0; i < 6; ++i) {
    const int64_t h = i % 2 ? 48 : 96, w = i % 2 ? 64 : 128;
    evaldata::Pair pair = evaldata::random_pair(h, w, 99 + i);
    const std::string name = "r" + std::to_string(i);
    write_panoptic_png(d / ("gt/" + name + ".png"), pair.gt.ids, h, w);
    write_panoptic_png(d / ("pred/" + name + ".png"), pair.pred.ids, h, w);
    gj.images.push_back({10 + i, name + ".jpg", w, h});
    gj.annotations.push_back({10 + i, name + ".png", pair.gt.segments});
    pj.annotations.push_back({10 + i, name + ".png", pair.pred.segments});
  }
  write_panoptic_json(d / "gt.json", gj);
  write_panoptic_json(d / "pred.json", pj);

  for (const std::string extra : {"", " --no-normalize"}) {
    INFO("options:" << extra);
    nlohmann::json ours = json_of(run(bin + " eval --json" + args(d) + extra, d));
    // The numpy side reads the PNGs with its own decoder in one of the runs.
    const std::string np_extra = extra.empty() ? " --no-pil" : "";
    nlohmann::json ref =
        json_of(run("/usr/bin/python3 " + script + " --json" + args(d) + extra + np_extra, d));
    for (const char* k : {"pq", "sq", "rq", "pc", "miou", "pixel_accuracy"}) {
      INFO(k);
      CHECK(ours[k].get<double>() == Approx(ref[k].get<double>()).margin(1e-12));
    }
    for (const char* split : {"things", "stuff"})
      for (const char* k : {"pq", "sq", "rq", "n", "pc", "pc_n"}) {
        INFO(split << "." << k);
        CHECK(ours[split][k].get<double>() == Approx(ref[split][k].get<double>()).margin(1e-12));
      }
    int64_t tp = 0, fp = 0, fn = 0;
    for (auto& [id, c] : ours["per_class"].items()) {
      INFO("category " << id);
      const auto& rc = ref["per_class"][id];
      CHECK(c["tp"] == rc["tp"]);
      CHECK(c["fp"] == rc["fp"]);
      CHECK(c["fn"] == rc["fn"]);
      CHECK(c["iou_sum"].get<double>() == Approx(rc["iou_sum"].get<double>()).margin(1e-12));
      CHECK(c["pc"].is_null() == rc["pc"].is_null());
      if (!c["pc"].is_null()) CHECK(c["pc"].get<double>() == Approx(rc["pc"].get<double>()).margin(1e-12));
      tp += c["tp"].get<int64_t>();
      fp += c["fp"].get<int64_t>();
      fn += c["fn"].get<int64_t>();
    }
    // The random scenes exercise every outcome.
    CHECK(tp > 0);
    CHECK(fp > 0);
    CHECK(fn > 0);
  }
}
