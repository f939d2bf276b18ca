// Subcommands that are not built yet answer with a clear message; each moves to its own
// examples/cmd_<name>.cpp when implemented (delete its line here then).
#include "core/error.h"
#include "examples/cli.h"

namespace dl::cli {
#define DL_STUB(NAME) \
  int cmd_##NAME(int, char**) { DL_FAIL("'" #NAME "' is not available in this build yet"); }
#undef DL_STUB
}  // namespace dl::cli
