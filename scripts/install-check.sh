#!/usr/bin/env bash
# Install as users install: build the sdist and the wheel (the wheel from the sdist), install the
# wheel, not editable, into a fresh virtual environment beside the patched llama-cpp-python from
# the wheel cache (scripts/setup.sh builds it), and run `plan` and a 2-document `eval` from
# outside the checkout. Needs the default model fetched (scripts/setup.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

.venv/bin/python -m build --outdir "$work/dist" . > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
wheel=$(ls "$work"/dist/painters_gguf-*.whl)
sdist=$(ls "$work"/dist/painters_gguf-*.tar.gz)
echo "install-check: built $(basename "$sdist") and $(basename "$wheel")"

"${PYTHON:-python3}" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$work/venv/bin/python" patches/build_wheel.py --cached-only > /dev/null
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel"

cd "$work"  # nothing from the checkout on the path
cli="$work/venv/bin/painters-gguf"
"$cli" --help > /dev/null
"$cli" plan skip --n 4
"$cli" --db "$work/smoke.db" eval --plan skip --n 12 --tasks arc_easy,lambada_openai --limit 2 --data-dir "${PAINTERS_GGUF_DATA:-$repo/../shared/data}"
echo "install-check: ok (wheel installed in a fresh venv, plan and eval ran from $work)"
