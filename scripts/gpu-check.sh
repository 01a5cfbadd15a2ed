#!/usr/bin/env bash
# GPU check for loraport's ONNX Runtime path — run on a machine with an NVIDIA GPU, from the repo root, after
# scripts/setup.sh. Nothing here has run on a GPU yet; this script is what to run when one is at hand.
#
# What it checks (exits non-zero if any step fails):
#   1. An NVIDIA GPU and driver are visible (nvidia-smi).
#   2. onnxruntime-node's CUDA provider is installed: libonnxruntime_providers_{cuda,shared}.so in
#      node_modules/onnxruntime-node/bin/napi-v6/linux/x64/. If missing it installs them with
#      `ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node` (downloads the Microsoft.ML.OnnxRuntime.Gpu.Linux
#      NuGet of the same version: needs the network), or copies them from $LORAPORT_ORT_CUDA_DIR (offline machines).
#   3. The CUDA/cuDNN libraries that provider needs resolve (`ldd`: no "not found"), and prints which majors it links
#      (expected CUDA 12 or 13 and cuDNN 9 for onnxruntime 1.30 — see docs/gpu.md).
#   4. The runtime parity tests (sdk/test/runtime/lora-model.test.ts) on the CUDA provider (LORAPORT_EP=cuda):
#      ORT logits vs PyTorch + PEFT (CPU) within 1e-4 on tiny GPT-2 / Llama / RoBERTa, several adapters swapped in one
#      session, rank 0 = base, merged, an F16 base, concurrency. (If TF32 matmuls make 1e-4 fail, the printed max abs
#      errors say by how much: onnxruntime-node cannot switch TF32 off — it passes only deviceId to the CUDA provider.)
#   5. The ORT benchmark on the CUDA provider (`npm run bench -- --only ort`, LORAPORT_EP=cuda): ORT merged and
#      adapter-inputs latency for GPT-2-small shapes, 1 × 128 tokens; PyTorch stays on the CPU build (.venv has torch+cpu).
# Options: --quick (bench with 2 layers). Output: a summary at the end; logs in $OUT or ./gpu-check-logs/.
set -uo pipefail
cd "$(dirname "$0")/.."
quick=""
[[ ${1:-} == --quick ]] && quick="--quick"
logs=${OUT:-gpu-check-logs}
mkdir -p "$logs"
fail=0
step() { echo; echo "== $*"; }
bad() { echo "FAIL: $*"; fail=1; }

step "1. GPU"
if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$logs/gpu.txt"
else bad "nvidia-smi not found: no NVIDIA driver on this machine"; fi

step "2. CUDA provider for onnxruntime-node"
bindir=node_modules/onnxruntime-node/bin/napi-v6/linux/x64
if [[ ! -f $bindir/libonnxruntime_providers_cuda.so ]]; then
  if [[ -n ${LORAPORT_ORT_CUDA_DIR:-} ]]; then
    cp "$LORAPORT_ORT_CUDA_DIR"/libonnxruntime_providers_{cuda,shared}.so "$bindir"/ || bad "copying providers from $LORAPORT_ORT_CUDA_DIR"
  else
    ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node 2>&1 | tail -5 || true
  fi
fi
ls -la "$bindir" | tee "$logs/ort-bin.txt"
[[ -f $bindir/libonnxruntime_providers_cuda.so ]] || bad "libonnxruntime_providers_cuda.so still missing in $bindir (network or LORAPORT_ORT_CUDA_DIR needed)"

step "3. CUDA / cuDNN libraries the provider links"
if [[ -f $bindir/libonnxruntime_providers_cuda.so ]]; then
  ldd "$bindir/libonnxruntime_providers_cuda.so" | tee "$logs/ldd.txt" | grep -E "libcudart|libcublas|libcudnn|not found" || true
  if grep -q "not found" "$logs/ldd.txt"; then bad "missing libraries above: install the CUDA runtime / cuDNN majors they name (docs/gpu.md)"; fi
fi
node -e "import('./dist/runtime/providers.js').then(m => { const r = m.cudaUnavailableReason(); console.log(r ? 'loraport says CUDA unavailable: ' + r : 'loraport: CUDA provider usable'); process.exit(r ? 1 : 0); })" || bad "loraport's provider check"

step "4. parity tests on the CUDA provider"
LORAPORT_EP=cuda npx vitest run sdk/test/runtime/lora-model.test.ts 2>&1 | tee "$logs/parity.txt" | grep -E "max abs|✓|×|Tests|FAIL" || true
grep -qE "Tests .*failed" "$logs/parity.txt" && bad "parity tests on CUDA"
grep -qE "Tests .*passed" "$logs/parity.txt" || bad "parity tests did not run"

step "5. ORT benchmark on the CUDA provider"
LORAPORT_EP=cuda npx tsx sdk/bench/main.ts --only ort $quick 2>&1 | tee "$logs/bench.txt" | tail -15
grep -q "ratio ORT merged" "$logs/bench.txt" || bad "benchmark did not finish"

echo
if ((fail)); then echo "gpu-check: FAILED (logs in $logs/)"; exit 1; fi
echo "gpu-check: all checks passed (logs in $logs/)"
