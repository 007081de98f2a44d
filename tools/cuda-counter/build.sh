#!/usr/bin/env bash
# Builds libcuda_counter.so (see cuda_counter.c) into target/cuda-counter/ and prints its path.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/cuda-counter
mkdir -p "$out"
if [ ! -f "$out/libcuda_counter.so" ] || [ tools/cuda-counter/cuda_counter.c -nt "$out/libcuda_counter.so" ]; then
    gcc -shared -fPIC -O2 -Wall -Wextra -Werror -o "$out/libcuda_counter.so" tools/cuda-counter/cuda_counter.c -lpthread
fi
echo "$PWD/$out/libcuda_counter.so"
