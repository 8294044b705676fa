#!/usr/bin/env bash
# Installs what building rein needs beyond cargo: cmake and clang (with
# libclang, for bindgen) to compile llama.cpp for the embedded local model.
# Uses apt-get (as root, or through sudo) when something is missing; does
# nothing when all is there. The quick start, the test command and CI call it.
set -euo pipefail
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v clang >/dev/null 2>&1 || missing+=(clang)
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q libclang; then
  missing+=(libclang-dev)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "== installing ${missing[*]} (to build llama.cpp for the local model)" >&2
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: install ${missing[*]} with your package manager, or build without the local model: cargo build -p rein-cli --no-default-features --features postgres" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q >&2 || true
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
