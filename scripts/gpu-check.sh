#!/usr/bin/env bash
# The CUDA check in one go, on a machine with an NVIDIA GPU, its driver and the CUDA toolkit:
# build the patched llama-cpp-python for this GPU's architecture only (cached like the CPU wheel),
# install it into .venv-cuda (the CPU .venv stays as it is), fetch the catalog models, run
# tests/test_gpu.py, then bench/gpu.py with this script's arguments (--model, --items, ...).
#   bash scripts/gpu-check.sh [bench/gpu.py options]
#   CUDA_ARCHITECTURES=90 bash scripts/gpu-check.sh --build-only   # ahead, where there is no GPU
# docs/gpu.md says what is checked and with which tolerances.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "gpu-check: $*" >&2
    exit 2
}
step() { echo "gpu-check: [${SECONDS}s] $*"; }

build_only=false
if [ "${1:-}" = "--build-only" ]; then
    build_only=true
    shift
fi

if ! $build_only && ! command -v nvidia-smi > /dev/null; then
    fail "no nvidia-smi: this needs an NVIDIA GPU and its driver"
fi
if ! command -v nvcc > /dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
    PATH="/usr/local/cuda/bin:$PATH"
fi
command -v nvcc > /dev/null || fail "no nvcc: this needs the CUDA toolkit (nvcc on PATH or in /usr/local/cuda/bin)"
export CUDACXX
CUDACXX=$(command -v nvcc)

# the GPUs' architectures (compute capability 9.0 -> 90), the only ones the build compiles for
if [ -z "${CUDA_ARCHITECTURES:-}" ]; then
    command -v nvidia-smi > /dev/null || fail "no nvidia-smi to read the GPU architecture from: set CUDA_ARCHITECTURES (e.g. 90)"
    caps=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader) || fail "nvidia-smi failed: no GPU, or no driver"
    CUDA_ARCHITECTURES=$(echo "$caps" | tr -d ' .' | sort -u | paste -sd ';' -)
    [ -n "$CUDA_ARCHITECTURES" ] || fail "nvidia-smi lists no GPU"
fi
export CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCHITECTURES"
export PAINTERS_GGUF_DATA="${PAINTERS_GGUF_DATA:-$PWD/../shared/data}"
if ! $build_only && [ ! -f "$PAINTERS_GGUF_DATA/hellaswag/validation.jsonl" ]; then
    fail "no benchmark data in $PAINTERS_GGUF_DATA: set PAINTERS_GGUF_DATA"
fi
step "$(nvcc --version | tail -n 1); CMAKE_ARGS=$CMAKE_ARGS"
$build_only || step "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | paste -sd ';' -)"

# a virtual environment of its own, with the package and its test tools as scripts/setup.sh installs them
py=.venv-cuda/bin/python
[ -x "$py" ] || "${PYTHON:-python3}" -m venv .venv-cuda
"$py" -m pip install --quiet --disable-pip-version-check -e '.[test]'
for model in smollm2-135m gemma3-270m qwen2.5-0.5b; do
    .venv-cuda/bin/painters-gguf models fetch "$model"
done
step "the patched llama-cpp-python for CUDA $CUDA_ARCHITECTURES, from the wheel cache or built"
"$py" patches/build_wheel.py
if $build_only; then
    step "built; run without --build-only on the GPU machine"
    exit 0
fi

step "tests/test_gpu.py"
tests_passed=true
PAINTERS_GGUF_REQUIRE_GPU=1 "$py" -m pytest tests/test_gpu.py -q -rsP || tests_passed=false
step "bench/gpu.py $*"
"$py" bench/gpu.py "$@"
$tests_passed || fail "tests/test_gpu.py failed (see above); the benchmark ran"
step "done: tests passed, benchmark above"
