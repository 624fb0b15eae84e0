#!/usr/bin/env bash
# Build llama-cpp-python once into a portable wheel (no -march=native) and cache it, so
# installs after the first take seconds instead of ~7 minutes of compiling.
set -euo pipefail
# PIP may be several words (the Makefile passes ".venv/bin/python -m pip"): split it, so a
# multi-word command is run as a command with arguments, not looked up as one file name.
read -r -a pip_cmd <<<"${PIP:-pip}"
version="${LLAMA_CPP_VERSION:-0.3.36}"
cache="${XIAOYOU_WHEEL_CACHE:-$HOME/.cache/xiaoyou/wheels}"
mkdir -p "$cache"
if ls "$cache"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
    exit 0
fi
echo "building llama-cpp-python $version into $cache (one time, ~7 minutes on 2 cores)"
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "${pip_cmd[@]}" wheel --no-deps "llama-cpp-python==$version" -w "$cache"
