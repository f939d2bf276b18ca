// End to end through the deeperlab binary (env DEEPERLAB_BIN): synth -> train -> infer -> eval
// reaches PQ >= 0.5 on the held-out split; an interrupted and resumed run gives bit-identical
// weights to an uninterrupted one; bad input (missing / corrupt image, annotation naming a missing
// PNG, unknown config field, NaN loss, failed checkpoint write) gives a clear message and a
// non-zero exit. The failed-write case also runs in-process (the write-failure test hook), since
// file permissions do not stop root.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "tests/temp_dir.h"
#include "parser/config.h"
#include "parser/trainer.h"
#include "weights/safetensors.h"

namespace fs = std::filesystem;
using namespace dl;

namespace {

using dl::testing::TempDir;

std::string bin() {
  const char* b = std::getenv("DEEPERLAB_BIN");
  if (b && *b) return b;
  return "build/deeperlab";
}

struct RunResult {
  int code = -1;
  std::string output;
};

// Runs `deeperlab ARGS` with stdout + stderr captured.
RunResult run(const std::string& args, const std::string& env = "") {
  // Sleeping OpenMP workers: spinning ones make a loaded 2-core machine crawl.
  static const std::string out_file = "/tmp/dl_train_e2e_out_" + std::to_string(::getpid()) + ".txt";
  const std::string cmd =
      "OMP_WAIT_POLICY=passive " + env + " " + bin() + " " + args + " --no-progress > " + out_file + " 2>&1";
  RunResult r;
  const int st = std::system(cmd.c_str());
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream f(out_file);
  r.output.assign(std::istreambuf_iterator<char>(f), {});
  fs::remove(out_file);
  return r;
}
// Same without the trailing --no-progress (for subcommands without it).
RunResult run_plain(const std::string& args) {
  static const std::string out_file = "/tmp/dl_train_e2e_plain_" + std::to_string(::getpid()) + ".txt";
  const std::string cmd = "OMP_WAIT_POLICY=passive " + bin() + " " + args + " > " + out_file + " 2>&1";
  RunResult r;
  const int st = std::system(cmd.c_str());
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream f(out_file);
  r.output.assign(std::istreambuf_iterator<char>(f), {});
  fs::remove(out_file);
  return r;
}

void synth(const std::string& dir, int train, int val, const std::string& extra = "") {
  RunResult r = run_plain("synth --out " + dir + " --preset easy --train " + std::to_string(train) +
                          " --val " + std::to_string(val) + " --size 65x65 --seed 3 " + extra);
  INFO(r.output);
  REQUIRE(r.code == 0);
}

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

const char* kConfig = "examples/configs/demo.json";

}  // namespace

TEST_CASE("e2e demo config 800 steps on 65x65 easy scenes: held-out PQ >= 0.5", "[e2e]") {
  TempDir tmp;
  synth(tmp / "data", 300, 40);
  RunResult t = run(std::string("train --config ") + kConfig + " --data " + (tmp / "data") + " --out " +
                    (tmp / "run") + " --steps 800 --ckpt-every 0");
  INFO(t.output);
  REQUIRE(t.code == 0);
  REQUIRE(fs::exists(tmp / "run/checkpoint.safetensors"));
  REQUIRE(fs::exists(tmp / "run/train_log.jsonl"));
  RunResult i =
      run(std::string("infer --config ") + kConfig + " --weights " + (tmp / "run/checkpoint.safetensors") +
          " --data " + (tmp / "data") + " --split val --out " + (tmp / "pred"));
  INFO(i.output);
  REQUIRE(i.code == 0);
  REQUIRE(fs::exists(tmp / "pred/overlay/val_000000.png"));
  RunResult e = run_plain("eval --gt-json " + (tmp / "data/val.json") + " --pred-json " +
                          (tmp / "pred/panoptic.json") + " --json");
  INFO(e.output);
  REQUIRE(e.code == 0);
  auto j = nlohmann::json::parse(e.output.substr(e.output.find('{')), nullptr, false);
  REQUIRE(!j.is_discarded());
  const double pq = j.at("pq").get<double>(), pc = j.at("pc").get<double>();
  WARN("held-out PQ " << pq << " PC " << pc);
  REQUIRE(pq >= 0.5);
  // The log has one line per step with every loss term.
  std::istringstream log(slurp(tmp / "run/train_log.jsonl"));
  std::string line;
  int64_t steps = 0;
  while (std::getline(log, line)) {
    auto l = nlohmann::json::parse(line);
    if (l.contains("val")) continue;
    ++steps;
    for (const char* k : {"step", "lr", "loss", "semantic", "heatmap", "short_offsets", "mid_offsets",
                          "long_offsets", "images_per_s"})
      REQUIRE(l.contains(k));
  }
  REQUIRE(steps == 800);
}

TEST_CASE("e2e resume: 3 steps + resume to 6 == 6 steps, bit for bit", "[e2e]") {
  TempDir tmp;
  synth(tmp / "data", 12, 2);
  const std::string base =
      std::string("train --config ") + kConfig + " --data " + (tmp / "data") + " --steps 6";
  RunResult a = run(base + " --out " + (tmp / "a"));
  INFO(a.output);
  REQUIRE(a.code == 0);
  RunResult b1 = run(base + " --out " + (tmp / "b") + " --stop-after 3");
  INFO(b1.output);
  REQUIRE(b1.code == 0);
  // As if the interrupted run had logged a step after its last checkpoint: the resumed run drops it.
  std::ofstream(tmp / "b/train_log.jsonl", std::ios::app) << "{\"step\":4,\"loss\":1.0}\n";
  RunResult b2 = run(base + " --out " + (tmp / "b") + " --resume " + (tmp / "b/checkpoint.safetensors"));
  INFO(b2.output);
  REQUIRE(b2.code == 0);
  REQUIRE(b2.output.find("resumed") != std::string::npos);
  NamedTensors wa = read_safetensors(tmp / "a/checkpoint.safetensors");
  NamedTensors wb = read_safetensors(tmp / "b/checkpoint.safetensors");
  REQUIRE(wa.size() == wb.size());
  int64_t compared = 0;
  for (size_t k = 0; k < wa.size(); ++k) {
    INFO(wa[k].first);
    REQUIRE(wa[k].first == wb[k].first);
    REQUIRE(wa[k].second.shape() == wb[k].second.shape());
    REQUIRE(wa[k].second.dtype() == wb[k].second.dtype());
    REQUIRE(std::memcmp(wa[k].second.raw_data(), wb[k].second.raw_data(), wa[k].second.nbytes()) == 0);
    ++compared;
  }
  REQUIRE(compared > 100);  // model and optimizer state
  // The interrupted run also logs steps 1..6 once each.
  std::istringstream log(slurp(tmp / "b/train_log.jsonl"));
  std::string line;
  int64_t expect = 1;
  while (std::getline(log, line)) REQUIRE(nlohmann::json::parse(line).at("step").get<int64_t>() == expect++);
  REQUIRE(expect == 7);
}

TEST_CASE("e2e bad data: missing image, corrupt image, annotation naming a missing PNG", "[e2e]") {
  TempDir tmp;
  synth(tmp / "data", 4, 1);
  const std::string base = std::string("train --config ") + kConfig + " --data " + (tmp / "data") +
                           " --steps 4 --out " + (tmp / "run");
  SECTION("missing image") {
    fs::remove(tmp / "data/images/train/train_000002.png");
    RunResult r = run(base);
    INFO(r.output);
    REQUIRE(r.code != 0);
    REQUIRE(r.output.find("train_000002.png") != std::string::npos);
  }
  SECTION("corrupt image") {
    std::ofstream(tmp / "data/images/train/train_000001.png") << "not a PNG at all";
    RunResult r = run(base);
    INFO(r.output);
    REQUIRE(r.code != 0);
    REQUIRE(r.output.find("train_000001.png") != std::string::npos);
  }
  SECTION("annotation naming a missing panoptic PNG") {
    fs::remove(tmp / "data/train/train_000003.png");
    RunResult r = run(base);
    INFO(r.output);
    REQUIRE(r.code != 0);
    REQUIRE(r.output.find("train_000003.png") != std::string::npos);
  }
  SECTION("no dataset at all") {
    RunResult r =
        run(std::string("train --config ") + kConfig + " --data " + (tmp / "nothing") + " --steps 4");
    INFO(r.output);
    REQUIRE(r.code != 0);
    REQUIRE(r.output.find("nothing") != std::string::npos);
  }
}

TEST_CASE("e2e unknown config field is an error naming it", "[e2e]") {
  TempDir tmp;
  synth(tmp / "data", 2, 1);
  auto j = nlohmann::json::parse(slurp(kConfig));
  j["train"]["learnig_rate"] = 0.1;
  std::ofstream(tmp / "bad.json") << j.dump(2);
  RunResult r = run("train --config " + (tmp / "bad.json") + " --data " + (tmp / "data") + " --steps 2");
  INFO(r.output);
  REQUIRE(r.code != 0);
  REQUIRE(r.output.find("learnig_rate") != std::string::npos);
}

TEST_CASE("e2e NaN loss stops with a message and keeps the last good checkpoint", "[e2e]") {
  TempDir tmp;
  synth(tmp / "data", 8, 1);
  const std::string base = std::string("train --config ") + kConfig + " --data " + (tmp / "data") +
                           " --out " + (tmp / "run") + " --steps 6 --ckpt-every 2";
  SECTION("test hook: NaN at step 5") {
    RunResult r = run(base, "DEEPERLAB_TEST_NAN_AT_STEP=5");
    INFO(r.output);
    REQUIRE(r.code != 0);
    REQUIRE(r.output.find("nan") != std::string::npos);
    REQUIRE(r.output.find("step 5") != std::string::npos);
    REQUIRE(r.output.find("checkpoint.safetensors") != std::string::npos);
    std::map<std::string, std::string> meta;
    read_safetensors(tmp / "run/checkpoint.safetensors", &meta);
    REQUIRE(r.output.find("last good checkpoint") != std::string::npos);
    REQUIRE(meta.count("deeperlab.step"));
    REQUIRE(meta["deeperlab.step"] == "4");
  }
  SECTION("absurd learning rate 1e30") {
    RunResult r = run(base + " --lr 1e30");
    INFO(r.output);
    REQUIRE(r.code != 0);
    const bool says = r.output.find("nan") != std::string::npos || r.output.find("inf") != std::string::npos;
    REQUIRE(says);
  }
}

TEST_CASE("e2e failed checkpoint write: clear message, previous checkpoint intact", "[e2e]") {
  TempDir tmp;
  synth(tmp / "data", 8, 1);
  const std::string base =
      std::string("train --config ") + kConfig + " --data " + (tmp / "data") + " --out " + (tmp / "run");
  RunResult first = run(base + " --steps 2");
  INFO(first.output);
  REQUIRE(first.code == 0);
  const std::string ckpt = tmp / "run/checkpoint.safetensors";
  const std::string before = slurp(ckpt);
  SECTION("in-process, the write fails half way") {
    TrainOptions opt;
    opt.config_path = kConfig;
    opt.config = load_config(kConfig);
    opt.config.train.steps = 4;
    opt.config.data.loader_threads = 0;
    opt.data_root = tmp / "data";
    opt.out_dir = tmp / "run";
    opt.resume = ckpt;
    opt.quiet = true;
    detail::fail_next_write_after(100);
    REQUIRE_THROWS_WITH(train(opt), Catch::Contains("could not write checkpoint") && Catch::Contains(ckpt) &&
                                        Catch::Contains("intact"));
    detail::fail_next_write_after(-1);
    REQUIRE(slurp(ckpt) == before);
  }
  SECTION("through the binary, an unwritable output folder") {
    if (::geteuid() == 0) {
      WARN("running as root: permissions do not stop writes; covered by the in-process section");
      return;
    }
    ::chmod((tmp / "run").c_str(), 0555);
    RunResult r = run(base + " --steps 4 --resume " + ckpt);
    ::chmod((tmp / "run").c_str(), 0755);
    INFO(r.output);
    REQUIRE(r.code != 0);
    REQUIRE(r.output.find("run") != std::string::npos);
    REQUIRE(slurp(ckpt) == before);
  }
}
