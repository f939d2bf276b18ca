#!/usr/bin/env bash
# One-shot GPU check: prints the machine and toolchain, finds the build dependencies (system, or
# carried .deb files / an extracted tree in build-deps/), finds cuDNN (system or Python's
# site-packages nvidia/cudnn), builds Release with CUDA into build-gpu, runs every test (GPU ones
# included), the CUDA benchmarks, a DEEPERLAB_CUDA_SYNC=1 pass and a compute-sanitizer pass while time
# remains, and writes logs plus summary.md into $OUT (or ./gpu-out). Installs nothing; keeps going
# after a failing step; every step runs under `timeout` and the whole script stays inside
# DEEPERLAB_GPU_CHECK_BUDGET seconds (default 450).
#
#   scripts/gpu-check.sh               the check (on the GPU machine)
#   scripts/gpu-check.sh --quick       only the CUDA tests, the depthwise / fusion GPU benchmarks and
#                                      the GPU training throughput (a short re-check after a change)
#   scripts/gpu-check.sh --fetch-deps  on a Debian 12 machine with network: download the .deb files
#                                      the GPU machine may lack into build-deps/ (carry that folder)
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
DEPS_DIR=${DEEPERLAB_DEPS_DIR:-$REPO/build-deps}
DEPS_PKGS=(libopenblas0-pthread libopenblas-pthread-dev libgfortran5 libquadmath0 catch2 nlohmann-json3-dev libstb-dev)

QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
if [ "${1:-}" = "--fetch-deps" ]; then
  mkdir -p "$DEPS_DIR" && cd "$DEPS_DIR" || exit 1
  apt-get download "${DEPS_PKGS[@]}" || { echo "apt-get download failed"; exit 1; }
  ls -la "$DEPS_DIR"
  echo "carry the folder build-deps to the GPU machine; gpu-check.sh unpacks it into build-gpu/deps-root"
  exit 0
fi

START=$(date +%s)
BUDGET=${DEEPERLAB_GPU_CHECK_BUDGET:-450}
OUTDIR=${OUT:-$REPO/gpu-out}
mkdir -p "$OUTDIR"
BUILD=$REPO/build-gpu
JOBS=${DEEPERLAB_JOBS:-16}
SUMMARY=$OUTDIR/summary.md
ENVLOG=$OUTDIR/env.log
BUILDLOG=$OUTDIR/build.log
CTESTLOG=$OUTDIR/ctest.log
BENCHLOG=$OUTDIR/bench.log
EXTRALOG=$OUTDIR/extra.log
: >"$ENVLOG"; : >"$BUILDLOG"; : >"$CTESTLOG"; : >"$BENCHLOG"; : >"$EXTRALOG"
STEPS=()
FAILED=0
OPTIONAL=0  # set to 1 around a step whose timeout is reported but does not fail the check

elapsed() { echo $(($(date +%s) - START)); }
remaining() { echo $((BUDGET - $(elapsed))); }
# step NAME LOG MAX_SECONDS CMD...: runs CMD under timeout min(MAX, remaining), appends to LOG, records the result.
step() {
  local name=$1 log=$2 max=$3
  shift 3
  local rem
  rem=$(remaining)
  local lim=$max
  [ "$rem" -lt "$lim" ] && lim=$rem
  if [ "$lim" -lt 10 ]; then
    STEPS+=("| $name | skipped (time budget spent) | 0 | $(basename "$log") |")
    echo "== $name: skipped, time budget spent" | tee -a "$log"
    [ "$OPTIONAL" = 1 ] || FAILED=1
    return 1
  fi
  echo "== $name (limit ${lim}s): $*" | tee -a "$log"
  local t0 rc
  t0=$(date +%s)
  timeout --kill-after=10 "$lim" "$@" >>"$log" 2>&1
  rc=$?
  local dt=$(($(date +%s) - t0)) status="ok"
  if { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && [ "$OPTIONAL" = 1 ]; then status="incomplete: stopped after ${lim}s (optional)"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status="TIMEOUT after ${lim}s"; FAILED=1
  elif [ $rc -ne 0 ]; then status="FAILED (exit $rc)"; FAILED=1; fi
  echo "== $name: $status (${dt}s)" | tee -a "$log"
  STEPS+=("| $name | $status | $dt | $(basename "$log") |")
  return $rc
}

log_env() { echo "$*" | tee -a "$ENVLOG"; }

# ---------------------------------------------------------------- machine and toolchain
{
  echo "== date: $(date -u)"
  echo "== uname: $(uname -a)"
  echo "== nvidia-smi"
  timeout 30 nvidia-smi 2>&1 || echo "nvidia-smi unavailable"
  echo "== nvcc"
  NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  timeout 30 "$NVCC" --version 2>&1 || echo "nvcc not found"
  echo "== python / torch"
  for py in /usr/bin/python3 python3; do
    command -v "$py" >/dev/null 2>&1 || { echo "$py: not found"; continue; }
    timeout 60 "$py" -c 'import sys; print(sys.executable, sys.version.split()[0])
try:
    import torch
    print("  torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
          "cudnn", torch.backends.cudnn.version() if torch.cuda.is_available() else None)
except Exception as e:
    print("  torch: not importable:", e)' 2>&1
  done
} >>"$ENVLOG" 2>&1
cat "$ENVLOG"
export PATH=$PATH:/usr/local/cuda/bin

# ---------------------------------------------------------------- dependencies
CMAKE_ARGS=()
PREFIXES=()
EXTRA_LD=()
DEPS_ROOT=$BUILD/deps-root
if [ -d "$DEPS_DIR" ]; then
  mkdir -p "$DEPS_ROOT"
  shopt -s nullglob
  debs=("$DEPS_DIR"/*.deb)
  shopt -u nullglob
  for d in "${debs[@]}"; do
    if command -v dpkg-deb >/dev/null 2>&1; then
      dpkg-deb -x "$d" "$DEPS_ROOT" 2>>"$ENVLOG" || log_env "could not unpack $d"
    else  # no dpkg: a .deb is an ar archive holding data.tar.{xz,zst,gz}
      member=$(ar t "$d" 2>/dev/null | grep '^data\.tar' | head -1)
      case "$member" in
        *.xz) zflag=-J ;; *.zst) zflag=--zstd ;; *.gz) zflag=-z ;; *) zflag= ;;
      esac
      (cd "$DEPS_ROOT" && ar p "$d" "$member" | tar -x $zflag -f -) 2>>"$ENVLOG" || log_env "could not unpack $d"
    fi
  done
  [ -d "$DEPS_DIR/usr" ] && cp -a "$DEPS_DIR/usr" "$DEPS_ROOT/" 2>/dev/null
  [ -d "$DEPS_ROOT/usr" ] && PREFIXES+=("$DEPS_ROOT/usr")
  log_env "carried dependencies: ${#debs[@]} .deb file(s) from $DEPS_DIR"
fi

# first_file DEPTH NAME DIR...: the first file (or link) called NAME at most DEPTH levels under the folders.
first_file() {
  local depth=$1 name=$2
  shift 2
  local d f
  for d in "$@"; do
    [ -d "$d" ] || continue
    f=$(find "$d" -maxdepth "$depth" -name "$name" \( -type f -o -type l \) 2>/dev/null | head -1)
    [ -n "$f" ] && { echo "$f"; return 0; }
  done
  return 1
}

ROOTS=("${PREFIXES[@]}" /usr /usr/local)
CMAKE_DIRS=()
INC_DIRS=()
for r in "${ROOTS[@]}"; do
  CMAKE_DIRS+=("$r/lib/cmake" "$r/share/cmake" "$r/lib/x86_64-linux-gnu/cmake" "$r/lib64/cmake")
  INC_DIRS+=("$r/include")
done
MISSING=()
report() {  # report WHAT PATH-OR-EMPTY
  if [ -n "$2" ]; then log_env "found   $1: $2"; else log_env "MISSING $1"; MISSING+=("$1"); fi
}
report "cmake" "$(command -v cmake 2>/dev/null && cmake --version 2>/dev/null | head -1)"
GEN="Ninja"
KEEP_GOING=(-k 0)
if command -v ninja >/dev/null 2>&1; then
  report "ninja" "$(command -v ninja)"
else
  report "ninja" ""
  GEN="Unix Makefiles"
  KEEP_GOING=(-k)
  log_env "  (falling back to Unix Makefiles: $(command -v make || echo 'make missing too'))"
fi
report "nvcc" "$(command -v nvcc 2>/dev/null)"
CATCH=$(first_file 2 Catch2Config.cmake "${CMAKE_DIRS[@]}")
CATCH_HPP=$(first_file 2 catch.hpp "${INC_DIRS[@]}")
report "catch2 v2 (Catch2Config.cmake + catch2/catch.hpp)" "$([ -n "$CATCH" ] && [ -n "$CATCH_HPP" ] && echo "$CATCH")"
NLOH=$(first_file 2 nlohmann_jsonConfig.cmake "${CMAKE_DIRS[@]}")
report "nlohmann_json" "$NLOH"
CBLAS_DIRS=()
for r in "${ROOTS[@]}"; do
  CBLAS_DIRS+=("$r/include/x86_64-linux-gnu/openblas-pthread" "$r/include/openblas" "$r/include/x86_64-linux-gnu" "$r/include")
done
CBLAS=$(first_file 1 cblas.h "${CBLAS_DIRS[@]}")
LIB_DIRS=()
for r in "${ROOTS[@]}"; do
  LIB_DIRS+=("$r/lib/x86_64-linux-gnu/openblas-pthread" "$r/lib/x86_64-linux-gnu" "$r/lib64" "$r/lib")
done
OBLAS=$(first_file 1 libopenblas.so "${LIB_DIRS[@]}")
[ -z "$OBLAS" ] && OBLAS=$(first_file 1 libopenblas.so.0 "${LIB_DIRS[@]}")
report "openblas (cblas.h)" "$CBLAS"
report "openblas (libopenblas.so)" "$OBLAS"
STB=$(first_file 2 stb_image.h "${INC_DIRS[@]}")
report "stb (stb_image.h)" "$STB"
[ -n "$CBLAS" ] && CMAKE_ARGS+=("-DOPENBLAS_INCLUDE=$(dirname "$CBLAS")")
[ -n "$OBLAS" ] && CMAKE_ARGS+=("-DOPENBLAS_LIB=$OBLAS") && EXTRA_LD+=("$(dirname "$OBLAS")")
[ -n "$STB" ] && CMAKE_ARGS+=("-DSTB_INCLUDE=$(dirname "$STB")")
for p in "${PREFIXES[@]}"; do
  for sub in lib/x86_64-linux-gnu lib/x86_64-linux-gnu/openblas-pthread lib; do
    [ -d "$p/$sub" ] && EXTRA_LD+=("$p/$sub")
  done
done
TESTS=ON
if [ -z "$CATCH" ] || [ -z "$CATCH_HPP" ]; then
  TESTS=OFF
  log_env "  -> building without tests (Catch2 v2 missing): carry it with 'scripts/gpu-check.sh --fetch-deps' and build-deps/"
fi

# cuDNN: the toolkit's or the system's first, else Python's nvidia/cudnn wheel (which ships only
# libcudnn.so.9: link a private libcudnn.so next to its headers for CMake's find_library).
CUDNN_SYS=$(first_file 1 libcudnn.so /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/lib/x86_64-linux-gnu /usr/lib64)
CUDNN_HINT=""
if [ -n "$CUDNN_SYS" ] && [ -n "$(first_file 1 cudnn.h /usr/local/cuda/include /usr/include /usr/local/include)" ]; then
  log_env "found   cudnn (system): $CUDNN_SYS"
else
  for py in python3 /usr/bin/python3; do
    d=$(timeout 60 "$py" -c 'import nvidia.cudnn as m, os; print(list(m.__path__)[0])' 2>/dev/null) || continue
    [ -n "$d" ] && [ -d "$d" ] || continue
    lib=$(ls "$d"/lib/libcudnn.so* 2>/dev/null | head -1)
    inc=$(first_file 3 cudnn.h "$d")
    if [ -n "$lib" ] && [ -n "$inc" ]; then
      CUDNN_HINT=$BUILD/cudnn-hint
      mkdir -p "$CUDNN_HINT/lib"
      ln -sf "$lib" "$CUDNN_HINT/lib/libcudnn.so"
      ln -sfn "$(dirname "$inc")" "$CUDNN_HINT/include"
      EXTRA_LD+=("$d/lib")
      log_env "found   cudnn (python wheel): $lib, headers $(dirname "$inc")"
      break
    fi
  done
  [ -z "$CUDNN_HINT" ] && log_env "MISSING cudnn (optional: the build uses its own im2col path)"
fi
[ -n "$CUDNN_HINT" ] && CMAKE_ARGS+=("-DDEEPERLAB_CUDNN_HINT=$CUDNN_HINT" "-DCUDNN_LIB=$CUDNN_HINT/lib/libcudnn.so"
                                     "-DCUDNN_INCLUDE=$CUDNN_HINT/include")
if [ ${#EXTRA_LD[@]} -gt 0 ]; then
  LD=$(IFS=:; echo "${EXTRA_LD[*]}")
  export LD_LIBRARY_PATH=$LD${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  log_env "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
fi
PREFIX_PATH=$(IFS=';'; echo "${PREFIXES[*]}")
[ ${#MISSING[@]} -gt 0 ] && log_env "MISSING dependencies: ${MISSING[*]}"

# ---------------------------------------------------------------- configure, build, test, bench
step "configure" "$BUILDLOG" 90 cmake -S "$REPO" -B "$BUILD" -G "$GEN" -DCMAKE_BUILD_TYPE=Release \
  -DDEEPERLAB_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DDEEPERLAB_TESTS=$TESTS -DDEEPERLAB_BENCH=ON \
  -DCMAKE_POLICY_VERSION_MINIMUM=3.5 --no-warn-unused-cli \
  ${PREFIX_PATH:+"-DCMAKE_PREFIX_PATH=$PREFIX_PATH"} "${CMAKE_ARGS[@]}"
CONFIGURED=$?
BUILT=1
if [ $CONFIGURED -eq 0 ]; then
  QUICK_TARGETS=()
  [ $QUICK = 1 ] && QUICK_TARGETS=(--target test_cuda_ops test_cuda_runtime test_cuda_fusion test_cuda_losses bench_cuda_ops bench_fusion deeperlab)
  step "build (-j$JOBS)" "$BUILDLOG" 330 cmake --build "$BUILD" -j "$JOBS" "${QUICK_TARGETS[@]}"
  BUILT=$?
  if [ $BUILT -ne 0 ]; then
    # Build what can be built, so the tests that compiled still run.
    step "build (keep going)" "$BUILDLOG" 120 cmake --build "$BUILD" -j "$JOBS" -- "${KEEP_GOING[@]}"
  fi
  grep -E "deeperlab: (CUDA|cuDNN)" "$BUILDLOG" | sort -u | tee -a "$ENVLOG"
fi

if [ $CONFIGURED -eq 0 ] && [ "$TESTS" = ON ]; then
  if [ $QUICK = 1 ]; then
    for t in test_cuda_ops test_cuda_runtime test_cuda_fusion test_cuda_losses; do
      step "$t" "$CTESTLOG" 90 "$BUILD/$t"
    done
  else
    step "ctest (all tests)" "$CTESTLOG" 200 ctest --test-dir "$BUILD" --output-on-failure -j 4 --timeout 150
  fi
  # The CUDA tests once more with every op synchronised and checked (pins an error to its op).
  for t in test_cuda_runtime test_cuda_ops; do
    [ -x "$BUILD/$t" ] && step "$t (DEEPERLAB_CUDA_SYNC=1)" "$EXTRALOG" 90 env DEEPERLAB_CUDA_SYNC=1 "$BUILD/$t"
  done
fi

if [ $QUICK = 1 ]; then
  step "bench_cuda_ops (depthwise rows)" "$BENCHLOG" 60 "$BUILD/bench_cuda_ops" --runs 20 --only dw7
  step "bench_fusion (CUDA only)" "$BENCHLOG" 40 "$BUILD/bench_fusion" 3 --cuda-only --no-torch
elif [ -x "$BUILD/bench_cuda_ops" ]; then
  step "bench_cuda_ops" "$BENCHLOG" 150 "$BUILD/bench_cuda_ops" --runs 20
  if [ -n "$CUDNN_HINT$CUDNN_SYS" ]; then
    step "bench_cuda_ops (DEEPERLAB_CONV_ALGO=cudnn, dense 3x3 rows)" "$BENCHLOG" 60 env DEEPERLAB_CONV_ALGO=cudnn \
      "$BUILD/bench_cuda_ops" --runs 10 --no-torch --only conv3_
  fi
fi

# Post-processing and target building on the GPU (CPU rows of the same run for comparison).
[ $QUICK = 0 ] && [ -x "$BUILD/bench_fusion" ] && step "bench_fusion (CUDA)" "$BENCHLOG" 60 "$BUILD/bench_fusion" 3 --cuda --no-torch
[ $QUICK = 0 ] && [ -x "$BUILD/bench_targets" ] && step "bench_targets (CUDA)" "$BENCHLOG" 40 "$BUILD/bench_targets" 1441 50 5 --cuda

# Training throughput on the GPU: `deeperlab train --device cuda` end to end, then PyTorch's (same network).
[ -x "$BUILD/deeperlab" ] && step "training throughput (wider_mnv2 513x513, cuda)" "$BENCHLOG" 150 \
  "$REPO/bench/train_throughput.sh" cuda "$BUILD" "$BUILD/train-throughput"

# compute-sanitizer (memcheck) over the CUDA op tests, with whatever time is left.
if [ $QUICK = 0 ] && [ "$TESTS" = ON ] && [ -x "$BUILD/test_cuda_ops" ] && command -v compute-sanitizer >/dev/null 2>&1; then
  OPTIONAL=1
  step "compute-sanitizer memcheck test_cuda_ops (im2col)" "$EXTRALOG" 150 env DEEPERLAB_TEST_CONV_ALGO=im2col \
    compute-sanitizer --tool memcheck --error-exitcode 3 "$BUILD/test_cuda_ops"
  OPTIONAL=0
elif [ $QUICK = 1 ]; then
  echo "memcheck pass skipped (--quick)" | tee -a "$EXTRALOG"
elif [ "$TESTS" = ON ]; then
  echo "compute-sanitizer not found; memcheck pass skipped" | tee -a "$EXTRALOG"
fi

# On a GPU machine a skipped GPU test is a failure: the device was not usable.
SKIPNOTE=""
if grep -q "skipped: no usable CUDA device" "$EXTRALOG" 2>/dev/null || grep -q "no usable CUDA device" "$BENCHLOG" 2>/dev/null; then
  SKIPNOTE="GPU tests/benchmarks SKIPPED: no usable CUDA device (see extra.log / bench.log)"
  FAILED=1
fi

# ---------------------------------------------------------------- summary
{
  echo "# GPU check $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
  echo "- nvcc: $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' | head -1)"
  grep -E "deeperlab: (CUDA|cuDNN)" "$BUILDLOG" 2>/dev/null | sort -u | sed 's/^-- /- /'
  [ ${#MISSING[@]} -gt 0 ] && echo "- MISSING dependencies: ${MISSING[*]}"
  [ -n "$SKIPNOTE" ] && echo "- **$SKIPNOTE**"
  echo "- overall: $([ $FAILED = 0 ] && echo OK || echo FAILED)"
  echo "- total time: $(elapsed) s (budget $BUDGET s)"
  echo
  echo "| step | result | seconds | log |"
  echo "|---|---|---:|---|"
  for s in "${STEPS[@]}"; do echo "$s"; done
  echo
  if [ -s "$CTESTLOG" ]; then
    echo "## ctest"
    echo '```'
    grep -E "tests passed|tests failed|\*\*\*Failed|\*\*\*Timeout|Not Run|Exception|SEGFAULT" "$CTESTLOG" | head -40
    echo '```'
  fi
  if [ -s "$EXTRALOG" ]; then
    echo "## sync / sanitizer passes"
    echo '```'
    grep -E "^== |All tests passed|test cases:|ERROR SUMMARY|Invalid|out of bounds" "$EXTRALOG" | head -40
    echo '```'
  fi
  if [ -s "$BENCHLOG" ]; then
    echo "## benchmarks (H100 timings of this run)"
    grep -E "^\||^device|^dense|^measured|^assumed|^PyTorch|^wider_mnv2|^== |no usable|unusable" "$BENCHLOG"
  fi
} >"$SUMMARY"
cat "$SUMMARY"
echo
echo "logs in $OUTDIR: $(cd "$OUTDIR" && ls | tr '\n' ' ')"
exit $FAILED
