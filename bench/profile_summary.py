"""Where a painters-gguf run spends its time, from a py-spy profile (model vs Python).

    .venv/bin/pip install py-spy
    .venv/bin/py-spy record -r 50 -f raw -o sweep.pyspy -- \
        .venv/bin/painters-gguf sweep --variant skip --limit 200
    .venv/bin/python bench/profile_summary.py sweep.pyspy --rate 50

Each sample is charged to the innermost frame of painters-gguf's own code: a line that calls
llama.cpp (`C.llama_...`) counts as the model, under the function it calls; any other line counts
as Python, under its module; module-level code and samples with no frame of ours are start-up
and imports. Shares are of the main thread's samples.
"""

from __future__ import annotations

import argparse
import linecache
import re
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
OUR_FILES = sorted(str(p.relative_to(REPO)) for folder in ("painters_gguf", "cli") for p in (REPO / folder).rglob("*.py"))
FRAME = re.compile(r"^(?P<function>.*) \((?P<path>.*):(?P<line>\d+)\)$")
C_CALL = re.compile(r"\bC\.(\w+)\(")


def category(stack: str) -> str:
    frames = stack.split(";")
    if frames[0].startswith("Thread._bootstrap "):
        return "other threads (rich's progress refresh, mostly waiting)"
    for frame in reversed(frames):
        match = FRAME.match(frame)
        if match is None:
            continue
        path = match["path"]
        ours = next((rel for rel in OUR_FILES if path.endswith(rel)), None)
        if ours is None:
            continue
        if match["function"] == "<module>":
            break
        call = C_CALL.search(linecache.getline(str(REPO / ours), int(match["line"])))
        return f"llama.cpp: {call[1]}" if call else f"Python: {ours}"
    return "Python: start-up, imports, libraries"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("profile", type=Path, help="py-spy output written with -f raw")
    parser.add_argument("--rate", type=int, default=100, help="samples per second given to py-spy -r (its default: 100)")
    args = parser.parse_args()
    seconds: Counter[str] = Counter()
    for line in args.profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            seconds[category(stack)] += int(count) / args.rate
    main_thread = sum(s for name, s in seconds.items() if not name.startswith("other threads"))
    model = sum(s for name, s in seconds.items() if name.startswith("llama.cpp"))
    table = Table(title=f"{args.profile.name}: main thread {main_thread:.0f} s sampled, {model / main_thread:.1%} in llama.cpp")
    table.add_column("where")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    for name, s in seconds.most_common():
        table.add_row(name, f"{s:.1f}", "" if name.startswith("other threads") else f"{s / main_thread:.1%}")
    Console().print(table)


if __name__ == "__main__":
    main()
