#!/usr/bin/env bash
# Install as users install: build the sdist and the wheel (the wheel from the sdist), install the
# wheel, not editable, into a fresh virtual environment; check what it does before llama-cpp-python
# is there (--version, --help, a one-line error); then add the patched llama-cpp-python from the
# wheel cache (scripts/setup.sh builds it) and run `plan` and a 2-document `eval` from outside the
# checkout, and `serve` without its extra (one line). Needs the default model fetched (scripts/setup.sh does).
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
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel"

# without llama-cpp-python: --version and --help work, a command that needs it fails in one line
(
    cd "$work"
    "$work/venv/bin/painters-gguf" --version > /dev/null
    "$work/venv/bin/painters-gguf" --help > /dev/null
    set +e
    "$work/venv/bin/painters-gguf" --db "$work/none.db" plan skip > "$work/out.txt" 2> "$work/err.txt"
    code=$?
    set -e
    if [ "$code" != 2 ] || [ "$(wc -l < "$work/err.txt")" != 1 ] || ! grep -q "patched llama-cpp-python) is not usable here" "$work/err.txt"; then
        echo "install-check: without llama-cpp-python, 'plan' gave exit $code:"; cat "$work/err.txt"; exit 1
    fi
)
echo "install-check: without llama-cpp-python: --version and --help work, a command says what is missing in one line"

"$work/venv/bin/python" patches/build_wheel.py --cached-only > /dev/null

cd "$work"  # nothing from the checkout on the path
cli="$work/venv/bin/painters-gguf"
"$cli" --help > /dev/null
"$cli" plan skip --n 4
"$cli" --db "$work/smoke.db" eval --plan skip --n 12 --tasks arc_easy,lambada_openai --limit 2 --data-dir "${PAINTERS_GGUF_DATA:-$repo/../shared/data}"
# serve without its extra (the server packages): one line naming the extra, before anything listens
set +e
"$cli" serve --port 0 > "$work/out.txt" 2> "$work/err.txt"
code=$?
set -e
if [ "$code" != 2 ] || [ "$(wc -l < "$work/err.txt")" != 1 ] || ! grep -q "painters-gguf\[serve\]" "$work/err.txt"; then
    echo "install-check: serve without the serve extra gave exit $code:"; cat "$work/err.txt"; exit 1
fi
echo "install-check: ok (wheel installed in a fresh venv, plan and eval ran from $work)"
