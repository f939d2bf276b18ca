// `deeperlab params`: every parameter's name and shape, the parameter count and the multiply-adds
// of the convolutions at a given input size (counted without running them).
#include <cstdio>
#include <iostream>

#include "examples/cli.h"
#include "parser/model.h"

namespace dl::cli {

namespace {
void parse_size(const std::string& s, int64_t& h, int64_t& w) {
  const auto x = s.find('x');
  DL_CHECK(x != std::string::npos, "--size must look like HxW (e.g. 513x513), got '" << s << "'");
  try {
    h = std::stoll(s.substr(0, x));
    w = std::stoll(s.substr(x + 1));
  } catch (const std::exception&) {
    DL_FAIL("--size must look like HxW (e.g. 513x513), got '" << s << "'");
  }
  DL_CHECK(h >= 16 && w >= 16, "--size must be at least 16x16, got " << s);
}
}  // namespace

int cmd_params(int argc, char** argv) {
  ArgParser ap("params",
               "List every parameter (name, shape), the total count and the multiply-adds of a config.");
  ap.option("config", "config JSON (e.g. examples/configs/wider_mnv2.json)", "", true)
      .option("size", "input size HxW for the multiply-add count", "513x513")
      .flag("buffers", "also list the buffers (BatchNorm running statistics)")
      .option("threads", "CPU threads (0 = all cores)", "0");
  if (!ap.parse(argc, argv)) return 0;
  set_threads(ap.get_int("threads"));
  int64_t h = 0, w = 0;
  parse_size(ap.get("size"), h, w);
  const Config cfg = load_config(ap.get("config"));
  DeeperLab model(cfg.model);
  for (const auto& [name, t] : model.named_parameters())
    std::printf("%-60s %-20s %lld\n", name.c_str(), t.shape_str().c_str(), (long long)t.numel());
  if (ap.get_flag("buffers"))
    for (const auto& [name, t] : model.named_buffers())
      std::printf("%-60s %-20s (buffer)\n", name.c_str(), t.shape_str().c_str());
  const double macs = count_macs(model, h, w);
  std::printf("parameters: %lld (%.2f M) in %zu tensors\n", (long long)model.num_parameters(),
              model.num_parameters() / 1e6, model.named_parameters().size());
  std::printf("multiply-adds at %lldx%lld: %.0f (%.2f G)\n", (long long)h, (long long)w, macs, macs / 1e9);
  return 0;
}

}  // namespace dl::cli
