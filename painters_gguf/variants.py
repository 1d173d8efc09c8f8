"""The paper's layer-plan variants (Sun et al. 2024, "Transformer Layers as Painters").

Convention of the paper: T layers and N counting from 0; layers 0..N and T-N..T-1 run as
usual and the middle is N+1..T-N-1 (M = T-2N-1 layers).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import random
from collections.abc import Callable

from painters_gguf.errors import PlanError
from painters_gguf.plan import Plan, Step


class Variant(str, enum.Enum):
    FULL = "full"
    SKIP = "skip"  # drop the middle
    MIDDLE_REPEAT = "middle-repeat"  # run layer T//2 M times in its place
    REVERSE = "reverse"  # the middle in descending order
    RANDOM = "random"  # the middle shuffled by a seed
    PARALLEL = "parallel"  # every middle layer on the same input, outputs averaged
    LOOPED_PARALLEL = "looped-parallel"  # the parallel step repeated K times
    SKIP_ONE = "skip-one"  # Fig. 2: drop layer n
    SWAP = "swap"  # Fig. 2: swap layers n and n+1
    PLANS = "plans"  # plan texts given to sweep or report (--plan), compared side by side


def middle(n_layer: int, n: int) -> list[int]:
    """The middle layers N+1..T-N-1 for T = n_layer; at least one."""
    if n < 0:
        raise PlanError(f"N counts from 0, found {n}")
    largest = (n_layer - 2) // 2
    if n > largest:
        raise PlanError(f"N={n} leaves no middle layers in a {n_layer}-layer model: N goes from 0 to {largest}")
    return list(range(n + 1, n_layer - n))


def _around(n_layer: int, n: int, middle_steps: list[Step]) -> Plan:
    head = [Step((layer,)) for layer in range(n + 1)]
    tail = [Step((layer,)) for layer in range(n_layer - n, n_layer)]
    return Plan(tuple(head + middle_steps + tail))


def full(n_layer: int) -> Plan:
    if n_layer < 1:
        raise PlanError(f"a model has at least one layer, found {n_layer}")
    return Plan.sequential(range(n_layer))


def skip(n_layer: int, n: int) -> Plan:
    middle(n_layer, n)
    return _around(n_layer, n, [])


def middle_repeat(n_layer: int, n: int) -> Plan:
    return _around(n_layer, n, [Step((n_layer // 2,), len(middle(n_layer, n)))])


def reverse(n_layer: int, n: int) -> Plan:
    return _around(n_layer, n, [Step((layer,)) for layer in reversed(middle(n_layer, n))])


def random_order(n_layer: int, n: int, seed: int) -> Plan:
    layers = middle(n_layer, n)
    random.Random(seed).shuffle(layers)
    return _around(n_layer, n, [Step((layer,)) for layer in layers])


def parallel(n_layer: int, n: int) -> Plan:
    return looped_parallel(n_layer, n, 1)


def looped_parallel(n_layer: int, n: int, iters: int) -> Plan:
    if iters < 1:
        raise PlanError(f"looped parallel runs at least 1 iteration, found {iters}")
    return _around(n_layer, n, [Step(tuple(middle(n_layer, n)), iters)])


def skip_one(n_layer: int, layer: int) -> Plan:
    if not 0 <= layer < n_layer:
        raise PlanError(f"layer {layer} is not in 0..{n_layer - 1}")
    if n_layer < 2:
        raise PlanError("skipping the only layer leaves no plan")
    return Plan.sequential([i for i in range(n_layer) if i != layer])


def swap(n_layer: int, layer: int) -> Plan:
    if not 0 <= layer < n_layer - 1:
        raise PlanError(f"swap takes n in 0..{n_layer - 2} (it swaps n and n+1), found {layer}")
    order = list(range(n_layer))
    order[layer], order[layer + 1] = order[layer + 1], order[layer]
    return Plan.sequential(order)


class Axis(enum.Enum):
    """What a variant's sweep runs over."""

    NONE = "none"  # one plan (the full model)
    MIDDLE = "middle"  # the paper's N, 0..T//2-1 (Figs. 4-10)
    LAYER = "layer"  # a single layer n (Fig. 2)
    LIST = "list"  # the plans given, one point each


@dataclasses.dataclass(frozen=True)
class VariantSpec:
    """Everything the CLI, the sweeps, the tables and the figures know about a variant."""

    variant: Variant
    help: str  # one line for the CLI's help
    title: str  # a figure's title
    axis: Axis
    build: Callable[[int, int, int, int], Plan]  # (T, n, seed, iters) -> plan
    seeded: bool = False  # a sweep averages it over seeds
    looped: bool = False  # a sweep runs it over iteration counts

    def n_values(self, n_layer: int) -> range:
        """The sweep axis for a T-layer model."""
        if self.axis == Axis.MIDDLE:
            return range((n_layer - 2) // 2 + 1)
        if self.axis == Axis.LAYER:
            return range(n_layer - 1 if self.variant == Variant.SWAP else n_layer)
        if self.axis == Axis.LIST:
            return range(0)  # the grid is the plans given (sweeps.plan_grid)
        return range(1)


def _given_plans(n_layer: int, n: int, seed: int, iters: int) -> Plan:
    raise PlanError("'plans' stands for the plan texts given to sweep or report with --plan")


def _spec(
    variant: Variant, axis: Axis, help: str, title: str, build: Callable[[int, int, int, int], Plan], **kw: bool
) -> VariantSpec:
    return VariantSpec(variant, help, title, axis, build, **kw)


# every variant, once: the CLI's help, the sweep grids, the tables and the figures read this
VARIANTS: dict[Variant, VariantSpec] = {
    spec.variant: spec
    for spec in (
        _spec(Variant.FULL, Axis.NONE, "the model's own order", "The full model", lambda t, n, s, k: full(t)),
        _spec(Variant.SKIP, Axis.MIDDLE, "drop the middle", "Skipping the middle layers", lambda t, n, s, k: skip(t, n)),
        _spec(
            Variant.MIDDLE_REPEAT,
            Axis.MIDDLE,
            "layer T//2, M times, in the middle's place",
            "Repeating layer T/2 in the middle",
            lambda t, n, s, k: middle_repeat(t, n),
        ),
        _spec(
            Variant.REVERSE,
            Axis.MIDDLE,
            "the middle in descending order",
            "Reversing the middle layers",
            lambda t, n, s, k: reverse(t, n),
        ),
        _spec(
            Variant.RANDOM,
            Axis.MIDDLE,
            "the middle shuffled by --seed",
            "Shuffling the middle layers",
            lambda t, n, s, k: random_order(t, n, s),
            seeded=True,
        ),
        _spec(
            Variant.PARALLEL,
            Axis.MIDDLE,
            "the middle as one parallel step (outputs averaged)",
            "Running the middle layers in parallel",
            lambda t, n, s, k: parallel(t, n),
        ),
        _spec(
            Variant.LOOPED_PARALLEL,
            Axis.MIDDLE,
            "that parallel step repeated --iters times",
            "Looped parallel middle layers",
            lambda t, n, s, k: looped_parallel(t, n, k),
            looped=True,
        ),
        _spec(Variant.SKIP_ONE, Axis.LAYER, "Fig. 2: drop layer n", "Skipping one layer", lambda t, n, s, k: skip_one(t, n)),
        _spec(
            Variant.SWAP, Axis.LAYER, "Fig. 2: swap layers n and n+1", "Swapping layers n and n+1", lambda t, n, s, k: swap(t, n)
        ),
        _spec(Variant.PLANS, Axis.LIST, "the plan texts given with --plan", "Plans compared", _given_plans),
    )
}

# the variants of Figs. 4-10 that take the middle-band width N
MIDDLE_VARIANTS = tuple(v for v, spec in VARIANTS.items() if spec.axis == Axis.MIDDLE)


def names_help(*, with_full: bool = True, with_plans: bool = False) -> str:
    """The variants for a CLI help line: `skip` (drop the middle), ..."""
    return "; ".join(
        f"{v.value} ({spec.help})"
        for v, spec in VARIANTS.items()
        if (with_full or v != Variant.FULL) and (with_plans or spec.axis != Axis.LIST)
    )


def make(variant: Variant | str, n_layer: int, n: int = 0, *, seed: int = 0, iters: int = 3) -> Plan:
    """Build a variant's plan; `n` is N for the middle variants and the layer for skip-one/swap."""
    return VARIANTS[_variant(variant)].build(n_layer, n, seed, iters)


def _variant(name: Variant | str) -> Variant:
    try:
        return Variant(name)
    except ValueError:
        names = ", ".join(v.value for v in Variant)
        raise PlanError(f"unknown plan variant {name!r}: use one of {names}, or a plan text") from None


def is_plan_text(spec: str) -> bool:
    """A plan text starts with a layer id or a parallel group; a variant's name with a letter."""
    return bool(spec) and (spec[0].isdigit() or spec[0] == "{")


def resolve(spec: str, n_layer: int, n: int = 0, *, seed: int = 0, iters: int = 3) -> Plan:
    """A variant name (with N, seed, iterations) or a plan text, checked against the model."""
    spec = spec.strip()
    if is_plan_text(spec):
        return Plan.parse(spec).check(n_layer)
    return make(spec, n_layer, n, seed=seed, iters=iters)


def label(spec: str, n: int = 0, *, seed: int = 0, iters: int = 3) -> str:
    """A short name for file names: the variant with the settings it uses (random-n3-seed3), or
    plan-<8 hex digits of the plan text's sha256> for a plan text. Needs no model."""
    spec = spec.strip()
    if is_plan_text(spec):
        return "plan-" + hashlib.sha256(Plan.parse(spec).text.encode()).hexdigest()[:8]
    variant = _variant(spec)
    found = VARIANTS[variant]
    parts = [variant.value]
    if found.axis in (Axis.MIDDLE, Axis.LAYER):
        parts.append(f"n{n}")
    if found.seeded:
        parts.append(f"seed{seed}")
    if found.looped:
        parts.append(f"x{iters}")
    return "-".join(parts)
