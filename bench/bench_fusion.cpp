// Post-processing (instance prediction + panoptic fusion) time per stage on generated scenes:
// ~50 instances at 1025x2049 and 1441x1441, K = 19 classes, head outputs that are "perfect"
// (decoded from the scene's own targets) and "noisy" (perfect + Gaussian noise on the heatmap
// logits and every offset, so far more keypoint candidates survive), on the CPU with 1 and 2
// threads, on CUDA when available, and the same work done by a PyTorch port (bench/fusion_ref.py)
// in the same run when /usr/bin/python3 has torch.
// Usage: bench_fusion [runs=5] [--cuda | --cuda-only] [--torch cpu|cpu1|cuda,... | --no-torch] [--size HxW]... [--hash]
// (cpu1: the PyTorch port on one thread only; --cuda-only: the CUDA rows without any CPU row,
// ours or PyTorch's, for a short GPU run; --hash: no timing, instead hashes of every CPU stage's
// output on each scene with 1, 2 and 8 threads, to show that an optimisation changed no bit)
#include <omp.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "bench/bench_util.h"
#include "core/ops.h"
#include "core/rng.h"
#include "core/storage.h"
#include "parser/instance.h"
#include "tests/fusion_scenes.h"
#ifdef DEEPERLAB_WITH_CUDA
#include "cuda/runtime.h"
#endif

using namespace dl;
using namespace dl::bench;

namespace {

// Cityscapes-like: 19 classes, ids 1..19, things 10..17 (the scenes use 1, 2, 10, 11).
std::vector<Category> bench_categories() {
  std::vector<Category> c;
  for (int32_t id = 1; id <= 19; ++id) c.push_back({id, "c" + std::to_string(id), id >= 10 && id <= 17, {}});
  return c;
}

InferenceTimings median_timings(const std::vector<InferenceTimings>& all) {
  auto pick = [&](double InferenceTimings::*f) {
    std::vector<double> v;
    for (const auto& t : all) v.push_back(t.*f);
    return median(v);
  };
  InferenceTimings m;
  for (auto f : {&InferenceTimings::check, &InferenceTimings::argmax, &InferenceTimings::refine_vote,
                 &InferenceTimings::candidates, &InferenceTimings::grouping, &InferenceTimings::assign,
                 &InferenceTimings::fusion, &InferenceTimings::total})
    m.*f = pick(f);
  return m;
}

void row(const char* scene, const char* variant, const std::string& where, const InferenceTimings& t, size_t segs,
         const std::string& extra) {
  std::printf("| %s | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | **%.2f** | %zu | %s |\n", scene,
              variant, where.c_str(), t.check, t.argmax, t.refine_vote, t.candidates, t.grouping, t.assign, t.fusion,
              t.total, segs, extra.c_str());
  std::fflush(stdout);
}

// FNV-1a over raw bytes.
struct Hash {
  uint64_t h = 1469598103934665603ull;
  void bytes(const void* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
  }
  template <class T>
  void vec(const std::vector<T>& v) {
    bytes(v.data(), v.size() * sizeof(T));
  }
  template <class... T>
  void pod(const T&... v) {  // field by field: no padding bytes
    (bytes(&v, sizeof v), ...);
  }
};

// One line per stage: argmax, the three vote maps (short only, long only, fused) with the refined
// long offsets, candidates, instances, assignment and the whole predict_panoptic result.
void print_hashes(const std::string& scene, const char* variant, int threads, const HeadOutputs& o,
                  const ClassMap& cm, const InferenceConfig& cfg) {
  const std::vector<int32_t> labels = semantic_argmax(o.semantic);
  std::vector<float> refined;
  Hash hl, hs, hg, hf, hr, hc, hi, ha, hp;
  hl.vec(labels);
  hs.vec(vote_scores(o, labels, cm, cfg, cfg.short_weight, 0.0).acc);
  hg.vec(vote_scores(o, labels, cm, cfg, 0.0, cfg.long_weight).acc);
  const VoteMaps votes = vote_scores(o, labels, cm, cfg, cfg.short_weight, cfg.long_weight, &refined);
  hf.vec(votes.acc);
  hr.vec(refined);
  const auto cands = find_candidates(votes, cfg.keypoint_threshold);
  for (const auto& c : cands) hc.pod(c.keypoint, c.y, c.x, c.acc, c.score);
  const auto inst = group_instances(cands, votes, o, cfg);
  for (const auto& d : inst) hi.pod(d.keypoints, d.score, d.seed_keypoint);
  ha.vec(assign_pixels(labels, refined, inst, cm, votes.height, votes.width));
  const PanopticMap pm = predict_panoptic(o, cm, cfg);
  hp.vec(pm.ids);
  for (const auto& g : pm.segments) hp.pod(g.id, g.category_id, g.iscrowd, g.area, g.bbox);
  std::printf("%s %s %d thr: argmax %016llx short %016llx long %016llx votes %016llx refined %016llx "
              "candidates %016llx (%zu) instances %016llx (%zu) assign %016llx panoptic %016llx\n",
              scene.c_str(), variant, threads, (unsigned long long)hl.h, (unsigned long long)hs.h,
              (unsigned long long)hg.h, (unsigned long long)hf.h, (unsigned long long)hr.h,
              (unsigned long long)hc.h, cands.size(), (unsigned long long)hi.h, inst.size(),
              (unsigned long long)ha.h, (unsigned long long)hp.h);
  std::fflush(stdout);
}

void write_raw(const std::string& path, const HeadOutputs& o) {
  std::ofstream f(path, std::ios::binary);
  for (const Tensor* t : {&o.semantic, &o.heatmap, &o.long_offsets, &o.short_offsets, &o.mid_offsets})
    f.write(static_cast<const char*>(t->raw_data()), std::streamsize(t->nbytes()));
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 5;
  bool use_cuda = false, cuda_only = false, hash = false;
  std::string torch_devices = "cpu";
  std::vector<std::pair<int64_t, int64_t>> sizes;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--cuda"))
      use_cuda = true;
    else if (!std::strcmp(argv[i], "--cuda-only"))
      use_cuda = cuda_only = true;
    else if (!std::strcmp(argv[i], "--hash"))
      hash = true;
    else if (!std::strcmp(argv[i], "--no-torch"))
      torch_devices.clear();
    else if (!std::strcmp(argv[i], "--torch") && i + 1 < argc)
      torch_devices = argv[++i];
    else if (!std::strcmp(argv[i], "--size") && i + 1 < argc) {
      long long h = 0, w = 0;
      std::sscanf(argv[++i], "%lldx%lld", &h, &w);
      sizes.push_back({h, w});
    } else
      runs = std::max(1, std::atoi(argv[i]));
  }
  if (sizes.empty()) sizes = {{1025, 2049}, {1441, 1441}};
  if (cuda_only && torch_devices.find("cuda") == std::string::npos) torch_devices.clear();  // no raw dump either
  (void)use_cuda;  // used only in CUDA builds
  try {
    const ClassMap cm(bench_categories());
    InferenceConfig cfg;  // defaults: R = 25
    if (!hash)
      std::printf("| scene | outputs | device | check | argmax | refine+vote | candidates | grouping | assign | fusion | "
                "total ms | segments | notes |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (auto [h, w] : sizes) {
      const std::string scene = std::to_string(h) + "x" + std::to_string(w);
      testing::FusionScene s = testing::random_fusion_scene(h, w, 50, 7);
      TargetConfig tc;
      Targets t = build_targets(s.map, cm, tc, scene);
      const int64_t instances = int64_t(s.map.segments.size()) - 2;
      for (const char* variant : {"perfect", "noisy"}) {
        HeadOutputs o = testing::perfect_outputs(t, cm);
        if (!std::strcmp(variant, "noisy")) {
          Rng rng(5);
          o.semantic = add(o.semantic, Tensor::randn(o.semantic.shape(), rng, 2.0));
          o.heatmap = add(o.heatmap, Tensor::randn(o.heatmap.shape(), rng, 4.0));
          for (Tensor* x : {&o.short_offsets, &o.mid_offsets, &o.long_offsets})
            *x = add(*x, Tensor::randn(x->shape(), rng, 2.0));
        }
        const std::string note = std::to_string(instances) + " GT instances";
        if (hash) {
          for (int threads : {1, 2, 8}) {  // 8: more threads than keypoints, the atomic vote path
            omp_set_num_threads(threads);
            print_hashes(scene, variant, threads, o, cm, cfg);
          }
          continue;
        }
        for (int threads : {1, 2}) {
          if (cuda_only) break;
          omp_set_num_threads(threads);
          std::vector<InferenceTimings> all;
          std::vector<double> cpu_ms;
          PanopticMap pm;
          for (int r = 0; r < runs; ++r) {
            InferenceTimings tm;
            timespec c0, c1;
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
            pm = predict_panoptic(o, cm, cfg, &tm);
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
            cpu_ms.push_back((c1.tv_sec - c0.tv_sec) * 1e3 + (c1.tv_nsec - c0.tv_nsec) * 1e-6);
            all.push_back(tm);
          }
          char extra[160];
          std::snprintf(extra, sizeof extra, "%s; CPU time %.1f ms", note.c_str(), median(cpu_ms));
          row(scene.c_str(), variant, "CPU " + std::to_string(threads) + " thr", median_timings(all),
              pm.segments.size(), extra);
        }
#ifdef DEEPERLAB_WITH_CUDA
        if (use_cuda && cuda_available()) {
          HeadOutputs d{o.semantic.to(Device::CUDA), o.heatmap.to(Device::CUDA), o.long_offsets.to(Device::CUDA),
                        o.short_offsets.to(Device::CUDA), o.mid_offsets.to(Device::CUDA)};
          PanopticMap pm = predict_panoptic(d, cm, cfg);  // warm-up
          cuda::reset_peak_bytes();
          std::vector<InferenceTimings> staged;
          std::vector<double> plain;
          for (int r = 0; r < std::max(runs, 20); ++r) {
            InferenceTimings tm;
            pm = predict_panoptic(d, cm, cfg, &tm);  // synchronises per stage
            staged.push_back(tm);
            const auto t0 = std::chrono::steady_clock::now();
            pm = predict_panoptic(d, cm, cfg);
            plain.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
          }
          InferenceTimings m = median_timings(staged);
          char extra[160];
          std::snprintf(extra, sizeof extra, "%s; unstaged total %.2f ms; peak device %.0f MiB (incl. inputs)",
                        note.c_str(), median(plain), double(cuda::peak_bytes()) / (1 << 20));
          row(scene.c_str(), variant, cuda::device_name(), m, pm.segments.size(), extra);
        }
#endif
        if (!torch_devices.empty()) {
          const std::string raw = "/tmp/bench_fusion_" + scene + "_" + variant + ".bin";
          write_raw(raw, o);
          std::string things;
          for (int32_t c = 0; c < cm.num_classes(); ++c)
            if (cm.isthing(c)) things += (things.empty() ? "" : ",") + std::to_string(c);
          const char* py = std::getenv("DEEPERLAB_PYTHON");
          const std::string cmd = std::string(py ? py : "/usr/bin/python3") + " bench/fusion_ref.py " + raw + " " +
                                  std::to_string(h) + " " + std::to_string(w) + " " +
                                  std::to_string(cm.num_classes()) + " " + things + " " + std::to_string(runs);
          std::vector<std::pair<std::string, std::string>> variants;
          if (!cuda_only && torch_devices.find("cpu") != std::string::npos) {
            variants.push_back({"PyTorch CPU 1 thr", "OMP_NUM_THREADS=1 " + cmd + " cpu"});
            if (torch_devices.find("cpu1") == std::string::npos)
              variants.push_back({"PyTorch CPU 2 thr", "OMP_NUM_THREADS=2 " + cmd + " cpu"});
          }
          if (torch_devices.find("cuda") != std::string::npos) variants.push_back({"PyTorch CUDA", cmd + " cuda"});
          for (const auto& [label, c] : variants) {
            FILE* p = popen((c + " 2>&1").c_str(), "r");
            char buf[512] = {0};
            std::string outp;
            while (p && std::fgets(buf, sizeof buf, p)) outp = buf;  // the last line
            if (p) pclose(p);
            while (!outp.empty() && outp.back() == '\n') outp.pop_back();
            std::printf("| %s | %s | %s | %s |\n", scene.c_str(), variant, label.c_str(),
                        outp.empty() ? "(no output)" : outp.c_str());
            std::fflush(stdout);
          }
          std::remove(raw.c_str());
        }
      }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    std::printf("\npeak host RSS of the benchmark process: %.0f MiB (scene, targets, outputs and decoder together)\n",
                ru.ru_maxrss / 1024.0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_fusion: %s\n", e.what());
    return 1;
  }
  return 0;
}
