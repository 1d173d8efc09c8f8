"""The search space of `painters-gguf search` and its one-pass proxies.

A `Candidate` is a set of dropped layers, one contiguous block run a second time (RYS) and pairs of
adjacent layers run in parallel; its neighbours are one change away. Two proxies from one pass of
the full model: block influence (ShortGPT: 1 - cos(input, output) of each layer, over tokens) ranks
the layers to drop; the angular distance between hidden states at the last token (Gromov et al.,
"The Unreasonable Ineffectiveness of the Deeper Layers") picks the contiguous block to drop.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import numpy as np

from painters_gguf.errors import PaintersError
from painters_gguf.evaluate import Evaluator, PreparedTask
from painters_gguf.plan import Plan, Step

PROXY_DOCUMENTS = 8  # search items per task the block-influence proxy reads


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A point of the search space: layers dropped, one block run twice, adjacent pairs in parallel."""

    dropped: frozenset[int] = frozenset()
    repeat: tuple[int, int] | None = None  # kept layers first..last run again right after last
    parallel: frozenset[int] = frozenset()  # kept layer a runs in parallel with the next kept layer

    def kept(self, n_layer: int) -> list[int]:
        return [layer for layer in range(n_layer) if layer not in self.dropped]

    def repeated(self, n_layer: int) -> list[int]:
        if self.repeat is None:
            return []
        first, last = self.repeat
        return [layer for layer in self.kept(n_layer) if first <= layer <= last]

    def n_slots(self, n_layer: int) -> int:
        return len(self.kept(n_layer)) + len(self.repeated(n_layer))

    def plan(self, n_layer: int) -> Plan:
        kept = self.kept(n_layer)
        steps: list[Step] = []
        i = 0
        while i < len(kept):
            members = (kept[i], kept[i + 1]) if kept[i] in self.parallel and i + 1 < len(kept) else (kept[i],)
            steps.append(Step(members))
            i += len(members)
            if self.repeat is not None and self.repeat[1] in members:
                steps += [Step((layer,)) for layer in self.repeated(n_layer)]
        return Plan(tuple(steps))

    def valid(self, n_layer: int, max_slots: int) -> bool:
        kept = self.kept(n_layer)
        if not kept or self.n_slots(n_layer) > max_slots:
            return False
        if self.repeat is not None and not (
            self.repeat[0] in kept and self.repeat[1] in kept and self.repeat[0] <= self.repeat[1]
        ):
            return False
        partners = [kept[kept.index(a) + 1] for a in self.parallel if a in kept and kept.index(a) + 1 < len(kept)]
        if len(partners) != len(self.parallel) or set(partners) & self.parallel:
            return False  # a pair needs a next kept layer, and pairs may not overlap
        return self.repeat is None or not (self.parallel & set(range(self.repeat[0] - 1, self.repeat[1] + 1)))

    def neighbours(self, n_layer: int, max_slots: int) -> list[Candidate]:
        """One change away: a dropped layer swapped with a kept one, or kept (when the budget allows), the
        repeated block grown, shrunk or shifted by one (or one added), a parallel pair toggled."""
        found: list[Candidate] = []
        kept = self.kept(n_layer)
        for layer in self.dropped:
            found += [dataclasses.replace(self, dropped=self.dropped - {layer} | {other}) for other in kept]
            found.append(dataclasses.replace(self, dropped=self.dropped - {layer}))
        if self.repeat is not None:
            first, last = self.repeat
            for block in (
                (first - 1, last),
                (first + 1, last),
                (first, last - 1),
                (first, last + 1),
                (first - 1, last - 1),
                (first + 1, last + 1),
            ):
                found.append(dataclasses.replace(self, repeat=block))
        elif self.n_slots(n_layer) < max_slots:
            found += [dataclasses.replace(self, repeat=(layer, layer)) for layer in kept]
        for a, b in itertools.pairwise(kept):
            toggled = self.parallel - {a} if a in self.parallel else self.parallel | {a}
            if a in self.parallel or (a not in self.parallel and b not in self.parallel):
                found.append(dataclasses.replace(self, parallel=toggled))
        return [c for c in dict.fromkeys(found) if c != self and c.valid(n_layer, max_slots)]


def block_influence(states: Sequence[np.ndarray]) -> np.ndarray:
    """Per layer, 1 - cos(its input, its output) averaged over tokens; states: embedding output and
    each layer's output of one document, (tokens, n_embd) each."""
    influence = []
    for before, after in itertools.pairwise(states):
        x, y = before.astype(np.float64), after.astype(np.float64)
        cos = (x * y).sum(axis=1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1) + 1e-12)
        influence.append(float(np.mean(1.0 - cos)))
    return np.array(influence)


def last_token_angles(states: Sequence[np.ndarray]) -> np.ndarray:
    """The angular distance arccos(cos) / pi between every pair of hidden states (the embedding
    output and each layer's) at the last token: (n_layer + 1) x (n_layer + 1)."""
    last = np.array([state[-1].astype(np.float64) for state in states])
    unit = last / (np.linalg.norm(last, axis=1, keepdims=True) + 1e-12)
    return np.arccos(np.clip(unit @ unit.T, -1.0, 1.0)) / np.pi


@dataclasses.dataclass(frozen=True)
class Proxies:
    """What one pass of the full model says about its layers, averaged over documents."""

    influence: np.ndarray  # per layer: block influence
    angular: np.ndarray  # state i to state j: angular distance at the last token (state 0: the embedding)


def measure_proxies(evaluator: Evaluator, prepared: Sequence[PreparedTask]) -> Proxies:
    """Both proxies of the full model, averaged over the first PROXY_DOCUMENTS search items'
    prompts of each task (one pass each, the hidden states read by the eval callback)."""
    from painters_gguf.similarity import capture

    model, settings = evaluator.model, evaluator.settings
    documents = [
        model.tokenize(prep.context_of(i), add_bos=bool(settings.add_bos))[-settings.n_ctx :]
        for prep in prepared
        for i in prep.task.limit_indices(prep.docs, PROXY_DOCUMENTS)
    ]
    documents = [tokens for tokens in documents if tokens]
    if not documents:
        raise PaintersError("the search items' prompts are empty: nothing to measure block influence on")
    influence, angular = np.zeros(model.n_layer), np.zeros((model.n_layer + 1, model.n_layer + 1))
    n_ctx = max(len(tokens) for tokens in documents)
    with model.context(n_ctx=n_ctx, n_batch=n_ctx, threads=evaluator.scorer.threads) as ctx:  # one pass each
        for tokens in documents:
            states = capture(ctx, evaluator.full_plan, tokens)
            influence += block_influence(states)
            angular += last_token_angles(states)
    return Proxies(influence / len(documents), angular / len(documents))
