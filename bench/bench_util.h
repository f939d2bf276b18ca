// Helpers shared by the C++ benchmarks: clocks, the median of repeated timings, the process's
// resident memory from /proc and option values (header-only).
#pragma once
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace dl::bench {

// Wall clock, seconds.
inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Process CPU time (all threads), seconds: with one thread on a loaded machine it does not count the
// time the process waited for a core, unlike the wall clock.
inline double process_cpu_s() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Resident memory (kB) from /proc/self/status: key "VmRSS:" or "VmHWM:"; -1 when absent.
inline long proc_kb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(f, line))
    if (line.compare(0, n, key) == 0) return std::atol(line.c_str() + n);
  return -1;
}

// The value after option argv[i] (i advances to it); a missing value exits with status 2.
inline std::string next_arg(int& i, int argc, char** argv) {
  if (i + 1 >= argc) {
    std::fprintf(stderr, "%s needs a value\n", argv[i]);
    std::exit(2);
  }
  return argv[++i];
}

// Resets the resident high-water mark (VmHWM) to the current resident size.
inline void reset_hwm() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}

}  // namespace dl::bench
