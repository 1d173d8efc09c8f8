"""`painters-gguf store`: what the results store holds, without loading a model or reading data."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

import typer
from rich.table import Table

from painters_gguf.cli.console import out, untrusted
from painters_gguf.cli.options import Db
from painters_gguf.outputs import expand
from painters_gguf.store import Holding, Store

FULL_MODEL = "full model"


def store(ctx: typer.Context, db: Db = None) -> None:
    """List what the results store holds: per model and settings, every plan and how many documents of each task."""
    path = expand(db) if db is not None else ctx.obj.db
    if not path.exists():
        out.print(f"no results store at {untrusted(path)} yet: eval, sweep and search write one", soft_wrap=True)
        return
    store = Store(path)
    try:
        holdings = store.holdings()
    finally:
        store.close()
    if not holdings:
        out.print(f"the results store {untrusted(path)} holds no results yet", soft_wrap=True)
        return
    groups: dict[tuple[str, str, str], list[Holding]] = {}
    for holding in holdings:
        groups.setdefault((holding.model_name, holding.model_sha256, _shared_settings(holding.settings)), []).append(holding)
    for (model_name, sha256, settings), group in groups.items():
        out.print(holdings_table(model_name, sha256, settings, group))
    out.print(
        f"{untrusted(path)}: {len(holdings)} runs, {sum(h.documents for h in holdings)} documents. "
        "eval, sweep and report take --limit L to use the first L documents of each task.",
        soft_wrap=True,
    )


def holdings_table(model_name: str, sha256: str, settings: str, group: Sequence[Holding]) -> Table:
    tasks = sorted({h.task for h in group})
    table = Table(title=f"{untrusted(model_name)} (sha256 {sha256[:12]}), {untrusted(settings)}")
    table.add_column("plan", overflow="fold")
    for task in tasks:
        table.add_column(task, justify="right")
    counts: dict[str, dict[str, list[int]]] = {}
    for holding in group:
        counts.setdefault(holding.plan, {}).setdefault(holding.task, []).append(holding.documents)
    full = _full_plan(counts)
    for plan in sorted(counts, key=lambda text: (text != full, text)):
        cells = [" / ".join(str(n) for n in counts[plan].get(task, [])) or "-" for task in tasks]
        table.add_row(untrusted(f"{plan} ({FULL_MODEL})" if plan == full else plan), *cells)
    several = any(len(n) > 1 for by_task in counts.values() for n in by_task.values())
    table.caption = "documents held per task" + (" (a / b: runs with different few-shot counts)" if several else "")
    return table


def _full_plan(plans: Iterable[str]) -> str | None:
    """The identity plan 0-(T-1): every plan is scored next to it, and no plan names a layer past
    T-1, so it is the plain range from 0 that reaches furthest."""
    ranges = {int(m.group(1)): plan for plan in plans if (m := re.fullmatch(r"0-(\d+)", plan))}
    return ranges[max(ranges)] if ranges else None


def _shared_settings(settings_json: str) -> str:
    """The settings every task of a run shares (few-shot counts differ per task), as k=v."""
    try:
        settings = json.loads(settings_json)
    except ValueError:
        return "settings unreadable"
    if not isinstance(settings, dict):
        return "settings unreadable"
    return ", ".join(f"{k}={v}" for k, v in sorted(settings.items()) if k not in ("num_fewshot", "packing"))
