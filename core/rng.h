// Deterministic random numbers (xoshiro256**, seeded by splitmix64); our own distributions so that
// a seed gives the same numbers with every compiler and standard library.
#pragma once
#include <cstdint>

namespace dl {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0x5eed) { seed_(seed); }
  void seed_(uint64_t seed);
  uint64_t next_u64();
  double uniform();                          // [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  int64_t randint(int64_t lo, int64_t hi);   // [lo, hi)
  double normal();                           // N(0, 1)
  bool bernoulli(double p) { return uniform() < p; }
  uint64_t state_word(int i) const { return s_[i]; }
  void set_state_word(int i, uint64_t v) { s_[i] = v; }

 private:
  uint64_t s_[4];
};

}  // namespace dl
