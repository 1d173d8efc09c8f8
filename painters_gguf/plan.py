"""Layer plans as small declarative data, validated up front, with a compact text form.

A plan is an ordered list of steps. A step runs one layer block as usual, or a parallel group:
every member takes the same input h and the next h is the mean of their outputs (residuals
included), i.e. h + mean of the deltas. A step may repeat (a loop).

Text form, e.g. ``0-3,{4-27}x3,28-29``:
  ``5``       layer 5;
  ``0-3``     layers 0,1,2,3 in order; ``9-6`` runs 9,8,7,6 (a descending range runs backwards);
  ``{4-27}``  one parallel step of layers 4..27 (members may be ranges and single ids);
  ``xK``      repeats the step before it K times (``16x3``, ``{4-27}x3``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence

from painters_gguf import abi
from painters_gguf.errors import PlanError


@dataclasses.dataclass(frozen=True)
class Step:
    """One step: a single layer block, or a parallel group whose outputs are averaged."""

    layers: tuple[int, ...]  # model layer ids; several = parallel on the same input
    repeat: int = 1  # run the step this many times in a row

    @property
    def is_parallel(self) -> bool:
        return len(self.layers) > 1


@dataclasses.dataclass(frozen=True)
class Plan:
    """An ordered list of steps; `Plan.parse(text)` and `plan.text` round-trip."""

    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise PlanError("a plan needs at least one step")
        for index, step in enumerate(self.steps):
            where = f"step {index + 1}"
            if not isinstance(step, Step):
                raise PlanError(f"{where}: expected a Step, found {type(step).__name__}")
            if not step.layers:
                raise PlanError(f"{where}: a step needs at least one layer")
            for layer in step.layers:
                if not _is_int(layer) or layer < 0:
                    raise PlanError(f"{where}: layer ids are integers >= 0, found {layer!r}")
            if not _is_int(step.repeat) or step.repeat < 1:
                raise PlanError(f"{where}: repeat counts are integers >= 1, found {step.repeat!r}")
        if self.n_slots > abi.MAX_SLOTS:
            raise PlanError(f"the plan runs {self.n_slots} blocks per token; the most is {abi.MAX_SLOTS}")

    @classmethod
    def parse(cls, text: str) -> Plan:
        return _Parser(text).plan()

    @classmethod
    def sequential(cls, layers: Sequence[int]) -> Plan:
        return cls(tuple(Step((layer,)) for layer in layers))

    @property
    def text(self) -> str:
        items = []
        for step, repeat in _runs_of_steps(self.steps):
            body = _format_ids(step) if len(step) == 1 or repeat < 0 else "{" + _format_ids(step) + "}"
            items.append(body + (f"x{repeat}" if repeat > 1 else ""))
        return ",".join(items)

    def __str__(self) -> str:
        return self.text

    @property
    def n_slots(self) -> int:
        """Block executions per token, each with a KV slot of its own."""
        return sum(len(step.layers) * step.repeat for step in self.steps)

    @property
    def n_steps(self) -> int:
        """Steps with the repeats unrolled: the hidden states the plan produces."""
        return sum(step.repeat for step in self.steps)

    def executions(self) -> Iterator[tuple[int, ...]]:
        """The steps with their repeats unrolled, in the order they run."""
        for step in self.steps:
            for _ in range(step.repeat):
                yield step.layers

    def check(self, n_layer: int) -> Plan:
        """Raise PlanError unless every layer id exists in a model of `n_layer` layers."""
        for index, step in enumerate(self.steps):
            for layer in step.layers:
                if layer >= n_layer:
                    raise PlanError(
                        f"plan {self.text!r}: step {index + 1} names layer {layer}, but the model has layers 0..{n_layer - 1}"
                    )
        return self

    def is_identity(self, n_layer: int) -> bool:
        return list(self.executions()) == [(layer,) for layer in range(n_layer)]

    def encode(self) -> list[int]:
        """The flat int32 form the C side takes: per step `repeat, n, layer ids...`."""
        flat: list[int] = []
        for step in self.steps:
            flat += [step.repeat, len(step.layers), *step.layers]
        return flat


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _runs_of_steps(steps: Sequence[Step]) -> Iterator[tuple[tuple[int, ...], int]]:
    """Merge runs of plain one-layer steps into ranges for the text form.

    Yields (layers, repeat): a run of plain steps comes out as its layer ids with repeat -1,
    meaning "print as a sequence", never as a parallel group.
    """
    pending: list[int] = []
    for step in steps:
        if len(step.layers) == 1 and step.repeat == 1:
            pending.append(step.layers[0])
            continue
        if pending:
            yield from _ranges(pending)
            pending = []
        yield step.layers, step.repeat
    if pending:
        yield from _ranges(pending)


def _ranges(ids: Sequence[int]) -> Iterator[tuple[tuple[int, ...], int]]:
    """Split ids into maximal ascending or descending unit-step runs."""
    start = 0
    while start < len(ids):
        end = start + 1
        if end < len(ids) and abs(ids[end] - ids[start]) == 1:
            direction = ids[end] - ids[start]
            while end < len(ids) and ids[end] - ids[end - 1] == direction:
                end += 1
        yield tuple(ids[start:end]), -1
        start = end


def _format_ids(ids: Sequence[int]) -> str:
    parts = []
    for run, _ in _ranges(ids):
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


_TOKEN = re.compile(r"\s*(?:([0-9]+)|(.))", re.DOTALL)


class _Parser:
    """Recursive descent over: plan := item ("," item)*; item := unit ("x" INT)?;
    unit := range | "{" range ("," range)* "}"; range := INT ("-" INT)?"""

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise PlanError(f"a plan text is a string, found {type(text).__name__}")
        self.text = text
        self.tokens: list[tuple[str, int]] = []  # (token, column)
        for match in _TOKEN.finditer(text):
            if match.group(0).strip():
                column = match.start(match.lastindex or 0) + 1
                self.tokens.append((match.group(1) or match.group(2), column))
        self.pos = 0

    def fail(self, problem: str, column: int | None = None) -> PlanError:
        if column is None:
            column = self.tokens[self.pos][1] if self.pos < len(self.tokens) else len(self.text) + 1
        return PlanError(f"plan {self.text!r}: {problem} at column {column}")

    def peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.tokens[self.pos][0]
        self.pos += 1
        return token

    def plan(self) -> Plan:
        if not self.tokens:
            raise PlanError("empty plan text: write steps like 0-3,{4-27}x3,28-29")
        steps: list[Step] = []
        while True:
            steps += self.item()
            if self.peek() is None:
                break
            if self.peek() != ",":
                raise self.fail(f"expected ',' or the end, found {self.peek()!r}")
            self.take()
        try:
            return Plan(tuple(steps))
        except PlanError as err:
            raise PlanError(f"plan {self.text!r}: {err}") from None

    def item(self) -> list[Step]:
        column = self.column()
        if self.peek() == "{":
            self.take()
            members = self.range_ids()
            while self.peek() == ",":
                self.take()
                members += self.range_ids()
            if self.peek() != "}":
                raise self.fail(f"missing '}}' to close the '{{' at column {column}")
            self.take()
            steps = [Step(tuple(members))]
        else:
            steps = [Step((layer,)) for layer in self.range_ids()]
        if self.peek() == "x":
            x_column = self.column()
            self.take()
            repeat = self.number("a repeat count after 'x'")
            if repeat < 1:
                raise self.fail("a repeat count is at least 1", x_column + 1)
            if len(steps) > 1:
                raise self.fail(
                    "'x' repeats one step, but a range is several: group it as {a-b} or repeat each layer",
                    x_column,
                )
            steps = [Step(steps[0].layers, repeat)]
        return steps

    def range_ids(self) -> list[int]:
        first = self.number("a layer id")
        if self.peek() != "-":
            return [first]
        self.take()
        column = self.column()
        last = self.number("the end of the range")
        if abs(last - first) >= abi.MAX_SLOTS:  # refuse before building a huge list
            raise self.fail(f"a range of {abs(last - first) + 1} layers is longer than a plan may run ({abi.MAX_SLOTS})", column)
        step = 1 if last >= first else -1
        return list(range(first, last + step, step))

    def number(self, what: str) -> int:
        token = self.peek()
        if token is None or not (token.isascii() and token.isdigit()):
            found = "the end" if token is None else repr(token)
            raise self.fail(f"expected {what}, found {found}")
        self.take()
        return int(token)

    def column(self) -> int:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else len(self.text) + 1
