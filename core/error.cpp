#include "core/error.h"

namespace dl {

void throw_error(const char* file, int line, const char* expr, const std::string& msg) {
  std::ostringstream os;
  os << msg << " [" << file << ":" << line << ": check failed: " << expr << "]";
  throw Error(os.str());
}

}  // namespace dl
