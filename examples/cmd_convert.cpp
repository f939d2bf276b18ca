// `deeperlab convert IN OUT`: weights between JSON tensor dumps and safetensors, chosen by the
// file extensions. BF16/F16/F64 inputs become F32 on the way (the formats we write).
#include <iostream>

#include "core/error.h"
#include "examples/cli.h"
#include "weights/load.h"
#include "weights/safetensors.h"

namespace dl::cli {

int cmd_convert(int argc, char** argv) {
  ArgParser ap("convert",
               "Convert weights between JSON tensor dumps (.json) and safetensors (.safetensors).");
  ap.positional("IN", "input file (.json or .safetensors)")
      .positional("OUT", "output file (.json or .safetensors); written atomically")
      .flag("all", "keep a checkpoint's optimizer tensors (optim/...) instead of only the model tensors");
  if (!ap.parse(argc, argv)) return 0;
  const std::string in = ap.get("IN"), out = ap.get("OUT");
  for (const auto& p : {in, out})
    DL_CHECK(ends_with(p, ".json") || ends_with(p, ".safetensors"),
             "'" << p << "': unknown extension (expected .json or .safetensors)");
  const NamedTensors ts =
      ap.get_flag("all") && ends_with(in, ".safetensors") ? read_safetensors(in) : read_weights(in);
  write_weights(out, ts);
  size_t bytes = 0;
  for (const auto& kv : ts) bytes += kv.second.nbytes();
  std::cout << in << " -> " << out << ": " << ts.size() << " tensor" << (ts.size() == 1 ? "" : "s") << ", "
            << bytes << " bytes\n";
  return 0;
}

}  // namespace dl::cli
