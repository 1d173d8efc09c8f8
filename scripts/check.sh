#!/usr/bin/env bash
# The checks CI runs besides the tests: lint, formatting and types (ruff, mypy; pinned in the
# `dev` extra). mypy reads the package as it installs: painters_gguf/ with cli/ and models/ as
# its subpackages painters_gguf.cli and painters_gguf.models, laid out as links in a temp folder.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
"$bin/ruff" check .
"$bin/ruff" format --check .

tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/painters_gguf"
ln -s "$PWD"/painters_gguf/* "$tree/painters_gguf/"
ln -s "$PWD/cli" "$tree/painters_gguf/cli"
ln -s "$PWD/models" "$tree/painters_gguf/models"
repo=$PWD
(cd "$tree" && "$repo/$bin/mypy" --config-file "$repo/pyproject.toml" --cache-dir "$repo/.mypy_cache" -p painters_gguf)
