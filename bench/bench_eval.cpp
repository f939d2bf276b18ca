// Evaluation throughput: N random 1024x2048 GT/prediction pairs are generated and written as
// COCO panoptic PNG + JSON into a temporary folder (not timed); then, on the same files in the
// same run, we time (1) the full `deeperlab eval` command (JSON, PNG decoding, validation,
// metrics), (2) the in-process parts: decoding + validation alone and the metric core alone on
// maps already in memory, and (3) bench/numpy_eval.py (panopticapi's numpy method) with as many
// processes as we use threads. Prints images/s, the ratios, peak memory and the largest metric
// difference between the two implementations.
//
// usage: bench_eval [--images N] [--height H] [--width W] [--threads T] [--gen-threads G]
//                   [--core-images K] [--dir D] [--keep] [--no-numpy] [--python P] [--numpy-script S]
#include <omp.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "bench/eval_data.h"
#include "core/error.h"
#include "metrics/panoptic_eval.h"
#include "parser/panoptic.h"

namespace fs = std::filesystem;
using namespace dl;
using namespace dl::bench;

namespace {

struct RunResult {
  int rc = -1;
  double seconds = 0;
  double peak_mib = 0;  // max RSS of the command and its waited-for children
};

RunResult run_command(const std::string& cmd) {
  RunResult r;
  const double t0 = now_s();
  pid_t pid = fork();
  DL_CHECK(pid >= 0, "bench_eval: fork failed");
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  struct rusage ru {};
  wait4(pid, &status, 0, &ru);
  r.seconds = now_s() - t0;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  r.peak_mib = ru.ru_maxrss / 1024.0;
  return r;
}

std::string self_dir() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : p.parent_path().string();
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  DL_CHECK(f.good(), "bench_eval: cannot open " << path);
  return nlohmann::json::parse(f);
}

}  // namespace

int main(int argc, char** argv) try {
  int64_t images = 500, height = 1024, width = 2048, core_images = 16;
  int threads = 2, gen_threads = 0;
  std::string dir, python = "/usr/bin/python3", script;
  bool keep = false, numpy = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      DL_CHECK(i + 1 < argc, "bench_eval: " << a << " needs a value");
      return argv[++i];
    };
    if (a == "--images")
      images = std::stoll(next());
    else if (a == "--height")
      height = std::stoll(next());
    else if (a == "--width")
      width = std::stoll(next());
    else if (a == "--threads")
      threads = std::stoi(next());
    else if (a == "--gen-threads")
      gen_threads = std::stoi(next());
    else if (a == "--numpy-script")
      script = next();
    else if (a == "--core-images")
      core_images = std::stoll(next());
    else if (a == "--dir")
      dir = next();
    else if (a == "--python")
      python = next();
    else if (a == "--keep")
      keep = true;
    else if (a == "--no-numpy")
      numpy = false;
    else {
      std::printf(
          "usage: bench_eval [--images N] [--height H] [--width W] [--threads T] [--gen-threads G] "
          "[--core-images K] [--dir D] [--keep] [--no-numpy] [--python P] [--numpy-script S]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  DL_CHECK(images > 0 && height > 0 && width > 0 && threads > 0, "bench_eval: bad sizes");
  core_images = std::max<int64_t>(1, std::min(core_images, images));
  const bool own_dir = dir.empty();
  if (own_dir) {
    char tmpl[] = "/tmp/dl_bench_eval_XXXXXX";
    DL_CHECK(mkdtemp(tmpl), "bench_eval: cannot create a temporary folder");
    dir = tmpl;
  }
  fs::create_directories(dir + "/gt");
  fs::create_directories(dir + "/pred");
  const char* env_bin = std::getenv("DEEPERLAB_BIN");
  const std::string bin = env_bin ? env_bin : self_dir() + "/deeperlab";
  if (script.empty())  // run from the repository root, else next to this source file
    script = fs::exists("bench/numpy_eval.py")
                 ? std::string("bench/numpy_eval.py")
                 : (fs::path(__FILE__).parent_path() / "numpy_eval.py").string();
  if (gen_threads <= 0) gen_threads = threads;

  std::printf("bench_eval: %lld pairs of %lldx%lld, %d threads, folder %s\n", static_cast<long long>(images),
              static_cast<long long>(height), static_cast<long long>(width), threads, dir.c_str());

  // ---- generation (not timed)
  const double tg = now_s();
  std::vector<std::vector<SegmentInfo>> gt_segs(static_cast<size_t>(images)),
      pred_segs(static_cast<size_t>(images));
  int64_t segs_total = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(gen_threads) reduction(+ : segs_total)
  for (int64_t i = 0; i < images; ++i) {
    evaldata::Pair p = evaldata::random_pair(height, width, 1234567 + static_cast<uint64_t>(i));
    evaldata::write_pair(dir, "img" + std::to_string(i), p);
    gt_segs[static_cast<size_t>(i)] = p.gt.segments;
    pred_segs[static_cast<size_t>(i)] = p.pred.segments;
    segs_total += static_cast<int64_t>(p.gt.segments.size() + p.pred.segments.size());
  }
  evaldata::write_jsons(dir, gt_segs, pred_segs, height, width);
  int64_t bytes = 0;
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) bytes += static_cast<int64_t>(e.file_size());
  std::printf("generated in %.1f s: %.1f segments per image pair, %.1f MiB on disk\n", now_s() - tg,
              double(segs_total) / images, bytes / 1048576.0);

  // ---- (1) the full command
  const std::string args = " --gt-json " + dir + "/gt.json --pred-json " + dir +
                           "/pred.json --json --threads " + std::to_string(threads);
  RunResult ours = run_command(bin + " eval" + args + " > " + dir + "/ours.json");
  DL_CHECK(ours.rc == 0, "bench_eval: '" << bin << " eval' failed with exit code " << ours.rc);
  const nlohmann::json ours_json = read_json(dir + "/ours.json");

  // ---- (2a) decode + validation in process, (2b) metric core on maps in memory
  PanopticJson gj = read_panoptic_json(dir + "/gt.json"), pj = read_panoptic_json(dir + "/pred.json");
  omp_set_num_threads(threads);
  double t0 = now_s();
#pragma omp parallel
  {
    PanopticMap g, p;
#pragma omp for schedule(static, 1)
    for (int64_t i = 0; i < images; ++i) {
      const auto& ga = gj.annotations[static_cast<size_t>(i)];
      const auto& pa = pj.annotations[static_cast<size_t>(i)];
      load_panoptic_into(g, dir + "/gt/" + ga.file_name, ga, gj.categories, height, width);
      load_panoptic_into(p, dir + "/pred/" + pa.file_name, pa, gj.categories, height, width);
    }
  }
  const double decode_s = now_s() - t0;

  std::vector<std::pair<PanopticMap, PanopticMap>> maps(static_cast<size_t>(core_images));
#pragma omp parallel for schedule(static, 1)
  for (int64_t i = 0; i < core_images; ++i) {
    const auto& ga = gj.annotations[static_cast<size_t>(i)];
    const auto& pa = pj.annotations[static_cast<size_t>(i)];
    maps[static_cast<size_t>(i)] = {load_panoptic(dir + "/gt/" + ga.file_name, ga, gj.categories),
                                    load_panoptic(dir + "/pred/" + pa.file_name, pa, gj.categories)};
  }
  std::vector<PanopticEvaluator> evs(static_cast<size_t>(threads), PanopticEvaluator(gj.categories));
  t0 = now_s();
#pragma omp parallel for schedule(static, 1)
  for (int64_t i = 0; i < images; ++i) {
    const auto& m = maps[static_cast<size_t>(i % core_images)];
    evs[static_cast<size_t>(omp_get_thread_num())].add(m.first, m.second);
  }
  for (int t = 1; t < threads; ++t) evs[0].merge(evs[static_cast<size_t>(t)]);
  const double core_s = now_s() - t0;
  maps.clear();

  // ---- (3) numpy
  RunResult np;
  nlohmann::json np_json;
  if (numpy) {
    np = run_command(python + " " + script + args.substr(0, args.find(" --threads")) + " --procs " +
                     std::to_string(threads) + " > " + dir + "/numpy.json");
    if (np.rc == 0)
      np_json = read_json(dir + "/numpy.json");
    else
      std::printf("numpy_eval.py failed (exit %d); is numpy installed for %s?\n", np.rc, python.c_str());
  }

  struct rusage self_ru {};
  getrusage(RUSAGE_SELF, &self_ru);
  const double n = static_cast<double>(images);
  std::printf("\n%-44s %9s %10s %10s\n", "", "seconds", "images/s", "peak MiB");
  std::printf("%-44s %9.2f %10.2f %10.0f\n", "deeperlab eval (JSON+PNG decode+metrics)", ours.seconds,
              n / ours.seconds, ours.peak_mib);
  std::printf("%-44s %9.2f %10.2f %10s\n", "  in process: PNG decode + validation", decode_s, n / decode_s,
              "-");
  std::printf("%-44s %9.2f %10.2f %10s\n", "  in process: metric core on maps in memory", core_s, n / core_s,
              "-");
  if (!np_json.is_null()) {
    std::printf("%-44s %9.2f %10.2f %10.0f\n",
                ("numpy_eval.py (" + np_json.value("png_reader", std::string("?")) + ", " +
                 std::to_string(threads) + " procs)")
                    .c_str(),
                np.seconds, n / np.seconds, np.peak_mib);
    std::printf("\nratio full command / numpy: %.1fx; metric core / numpy: %.1fx\n",
                np.seconds / ours.seconds, np.seconds / core_s);
    double worst = 0;
    std::string worst_key;
    for (const char* k : {"pq", "sq", "rq", "pc", "miou", "pixel_accuracy"}) {
      const double d = std::fabs(ours_json[k].get<double>() - np_json[k].get<double>());
      if (d >= worst) {
        worst = d;
        worst_key = k;
      }
    }
    std::printf("agreement: largest |ours - numpy| over pq sq rq pc miou pixel_accuracy = %.3g (%s)\n", worst,
                worst_key.c_str());
  }
  std::printf(
      "result: PQ %.4f SQ %.4f RQ %.4f PC %.4f mIoU %.4f (%lld images); bench process peak %.0f MiB\n",
      ours_json["pq"].get<double>(), ours_json["sq"].get<double>(), ours_json["rq"].get<double>(),
      ours_json["pc"].get<double>(), ours_json["miou"].get<double>(),
      static_cast<long long>(ours_json["images"].get<int64_t>()), self_ru.ru_maxrss / 1024.0);
  if (own_dir && !keep) fs::remove_all(dir);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_eval: error: %s\n", e.what());
  return 1;
}
