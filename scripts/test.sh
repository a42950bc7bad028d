#!/usr/bin/env bash
# test.sh: every test, from scratch. Installs the Debian packages that are missing, then:
#   1. gcc, warnings as errors: library, C unit tests, ABI checks, the conformance suite through
#      its three runners (C via libffi, Lua, Go), bindings' own tests, examples;
#   2. clang, warnings as errors: everything C builds warning-free;
#   3. AddressSanitizer + UndefinedBehaviorSanitizer: the C tests and the C conformance runner;
#   4. ThreadSanitizer (clang, LLVM's OpenMP runtime with its Archer tool, which tells TSan
#      about OpenMP's barriers and tasks): the C tests and the C conformance runner;
#   5. valgrind memcheck: the C tests, the conformance runner and the examples, failing on any
#      memory error or definitely-lost byte.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
ag_need_packages
jobs=$(nproc)
root=build/test

stage() { printf '\n==== %s ====\n' "$*"; }

stage "gcc: build and run everything"
cmake -S . -B $root/gcc -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAG_WERROR=ON >/dev/null
ninja -C $root/gcc
ctest --test-dir $root/gcc --output-on-failure -j "$jobs"

stage "clang: warning-free build"
cmake -S . -B $root/clang -G Ninja -DCMAKE_C_COMPILER=clang -DAG_WERROR=ON \
      -DAG_BUILD_BINDINGS=OFF >/dev/null
ninja -C $root/clang

# fuzz_torch.* load the library into PyTorch's python with ctypes: a sanitized library
# cannot run inside an uninstrumented interpreter (ASan's runtime must be loaded first), so
# the sanitizer stages leave them to the gcc stage.
stage "AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B $root/asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAG_SANITIZE=ON \
      -DAG_BUILD_BINDINGS=OFF >/dev/null
ninja -C $root/asan
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir $root/asan --output-on-failure -j "$jobs" -E 'valgrind|conformance.data|fuzz_torch'

stage "ThreadSanitizer"
cmake -S . -B $root/tsan -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DAG_TSAN=ON -DAG_BUILD_BINDINGS=OFF -DAG_BUILD_EXAMPLES=OFF >/dev/null
ninja -C $root/tsan
archer=$(clang -print-file-name=libarcher.so)
case "$archer" in /*) ;; *) archer=/usr/lib/llvm-$(clang -dumpversion | cut -d. -f1)/lib/libarcher.so ;; esac
# internal_test_gemm: its reference products take too long under TSan and it has no threads
# of its own beyond par_for's, which every other test exercises.
OMP_TOOL_LIBRARIES=$archer ARCHER_OPTIONS=verbose=0 \
  TSAN_OPTIONS=halt_on_error=1:ignore_noninstrumented_modules=1 \
  ctest --test-dir $root/tsan --output-on-failure -j "$jobs" -E 'valgrind|conformance.data|fuzz_torch|gemm'

stage "valgrind memcheck"
vg=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite)
export OMP_NUM_THREADS=2
# internal_test_gemm is left to the sanitizers: 34 000 long-double reference products take
# over 20 minutes under valgrind, and the kernel allocates nothing per element.
for t in $root/gcc/tests/test_* $root/gcc/tests/internal_test_*; do
  [ -x "$t" ] || continue
  case "$(basename "$t")" in internal_test_gemm) continue ;; esac
  start=$SECONDS
  "${vg[@]}" "$t" >/dev/null
  echo "valgrind $(basename "$t"): clean ($((SECONDS - start)) s)"
done
echo "valgrind conformance_ffi"
"${vg[@]}" $root/gcc/tests/conformance/conformance_ffi $root/gcc/libautograd.so \
  tests/conformance/cases/*.json | tail -1
echo "valgrind seed, digits"
"${vg[@]}" $root/gcc/examples/seed >/dev/null
"${vg[@]}" $root/gcc/examples/digits | tail -1

stage "all tests passed"
