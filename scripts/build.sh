#!/usr/bin/env bash
# Installs dependencies (Debian packages) and builds one flavour of routemesh.
#   scripts/build.sh            -> build/        (RelWithDebInfo)
#   scripts/build.sh asan       -> build-asan/   (AddressSanitizer + UndefinedBehaviorSanitizer)
#   scripts/build.sh fuzz       -> build-fuzz/   (clang + libFuzzer, fuzz targets only)
set -euo pipefail
cd "$(dirname "$0")/.."
flavour="${1:-release}"
bash scripts/deps.sh
jobs="${RM_JOBS:-2}"
case "$flavour" in
  release)
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build -j"$jobs"
    ;;
  asan)
    # -O1 keeps the sanitized test run short; no NDEBUG, so RM_ASSERT checks stay on.
    cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRM_SANITIZE=ON \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" >/dev/null
    cmake --build build-asan -j"$jobs"
    ;;
  fuzz)
    CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DRM_FUZZ=ON -DRM_WERROR=OFF >/dev/null
    cmake --build build-fuzz -j"$jobs" --target http_head_fuzz store_fuzz raft_codec_fuzz dns_fuzz \
      tls_hello_fuzz
    ;;
  *)
    echo "usage: scripts/build.sh [release|asan|fuzz]" >&2
    exit 2
    ;;
esac
