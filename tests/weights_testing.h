// Helpers shared by the weights and optimizer tests: a scratch folder removed at the end, raw
// file writing, and running /usr/bin/python3 scripts.
#pragma once
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "core/error.h"

namespace dl::testing {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/deeperlab_test_XXXXXX";
    char* p = ::mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path = p;
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Runs a Python script with Debian's interpreter; returns false (and warns) when it fails,
// e.g. because numpy or torch is missing.
inline bool run_python(const std::string& script_path, const std::string& args = "") {
  const std::string cmd = "/usr/bin/python3 '" + script_path + "' " + args;
  const int rc = std::system(cmd.c_str());
  if (rc != 0) WARN("python failed (rc " << rc << "): " << cmd);
  return rc == 0;
}

// True when Debian's Python can import `module` (tests that need it skip themselves otherwise).
inline bool python_has(const std::string& module) {
  const std::string cmd = "/usr/bin/python3 -c 'import " + module + "' > /dev/null 2>&1";
  if (std::system(cmd.c_str()) == 0) return true;
  WARN("skipped: /usr/bin/python3 cannot import " << module);
  return false;
}

// A safetensors file from a raw header string and data bytes (for malformed-input tests).
inline std::string safetensors_bytes(const std::string& header, const std::string& data) {
  uint64_t n = header.size();
  std::string s(reinterpret_cast<const char*>(&n), 8);
  return s + header + data;
}

// The message of the dl::Error thrown by f ("" when nothing is thrown).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const dl::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace dl::testing
