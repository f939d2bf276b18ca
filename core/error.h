// The one family of check macros: every failed check throws dl::Error carrying file:line,
// the failed expression and a message built with stream syntax, so test runners and the CLI
// can report it (nothing calls exit()).
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace dl {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

[[noreturn]] void throw_error(const char* file, int line, const char* expr, const std::string& msg);

}  // namespace dl

// DL_CHECK(cond, "conv2d: weight " << w.shape_str() << " ...");
#define DL_CHECK(cond, msg)                                              \
  do {                                                                   \
    if (!(cond)) {                                                       \
      std::ostringstream dl_check_os_;                                   \
      dl_check_os_ << msg;                                               \
      ::dl::throw_error(__FILE__, __LINE__, #cond, dl_check_os_.str());  \
    }                                                                    \
  } while (0)

// Unconditional failure with the same format.
#define DL_FAIL(msg) DL_CHECK(false, msg)
