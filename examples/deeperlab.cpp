// The deeperlab binary: one subcommand per job. Every error ends in a one-line reason on stderr
// and a non-zero exit.
#include <cstring>
#include <exception>
#include <iostream>

#include "core/error.h"
#include "examples/cli.h"

namespace {
struct Command {
  const char* name;
  int (*fn)(int, char**);
  const char* help;
};
const Command kCommands[] = {
    {"synth", dl::cli::cmd_synth, "generate a COCO-panoptic dataset of simple scenes"},
    {"train", dl::cli::cmd_train, "train a model"},
    {"infer", dl::cli::cmd_infer, "image / folder / dataset -> panoptic PNG + JSON + overlay"},
    {"eval", dl::cli::cmd_eval, "PQ / SQ / RQ, Parsing Covering and mIoU of predictions in COCO panoptic format"},
    {"grad", dl::cli::cmd_grad, "one image + ground truth -> every loss term and parameter gradient"},
    {"params", dl::cli::cmd_params, "list parameters, count and multiply-adds of a config"},
    {"convert", dl::cli::cmd_convert, "convert weights between JSON dumps and safetensors"},
    {"bench", dl::cli::cmd_bench, "time the network and its ops"},
};

void usage() {
  std::cout << "usage: deeperlab <command> [options]   (deeperlab <command> --help for details)\n\ncommands:\n";
  for (const auto& c : kCommands) std::printf("  %-9s %s\n", c.name, c.help);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  for (const auto& c : kCommands) {
    if (std::strcmp(argv[1], c.name) != 0) continue;
    try {
      return c.fn(argc - 2, argv + 2);
    } catch (const std::exception& e) {
      std::cerr << "deeperlab " << c.name << ": error: " << e.what() << "\n";
      return 1;
    }
  }
  std::cerr << "deeperlab: unknown command '" << argv[1] << "'\n";
  usage();
  return 2;
}
