// Device/dtype dispatch for op front-ends (core/ops.cpp, parser/losses.cpp): run a CUDA launcher and
// check it (or fail clearly in a build without CUDA), or run a CPU kernel with T = float / double.
#pragma once
#include "core/dtype.h"
#include "core/error.h"
#ifdef DEEPERLAB_WITH_CUDA
#include "cuda/runtime.h"
#endif

#ifdef DEEPERLAB_WITH_CUDA
#define DL_CUDA(op, call)            \
  do {                               \
    call;                            \
    ::dl::cuda::check_after_op(op);  \
  } while (0)
#define DL_STREAM ::dl::cuda::stream()
#else
#define DL_CUDA(op, call) DL_FAIL(op << ": CUDA tensor in a build without the CUDA backend")
#endif

// Runs BODY with T = float or double according to the (CPU) dtype.
#define DL_CPU_FLOAT(dt, BODY)     \
  do {                             \
    if ((dt) == ::dl::DType::F32) { \
      using T = float;             \
      BODY;                        \
    } else {                       \
      using T = double;            \
      BODY;                        \
    }                              \
  } while (0)
