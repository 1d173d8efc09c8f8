"""Score requests the way lm-evaluation-harness 0.4.x does, fast, in-process through the runtime.

Log-likelihood requests follow lm-eval's `_encode_pair`: trailing spaces of the context move to
the continuation; continuation tokens are `enc(ctx+cont)[len(enc(ctx)):]`; an empty context
uses the prefix token (BOS, else EOS); no BOS unless asked. A request longer than `n_ctx`
keeps its last `n_ctx + 1` tokens, as lm-eval's HF model does.

Speed: one document's requests share their common token prefix, which is computed once (its
tokens belong to every choice's sequence in the batch); many documents are packed into each
decode; logits come back only at continuation positions.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence

import numpy as np

from painters_gguf.engine.packing import SEQUENCES_PER_BATCH
from painters_gguf.errors import PaintersError
from painters_gguf.plan import Plan
from painters_gguf.requests import LoglikelihoodRequest, LoglikelihoodResult, TokensRequest
from painters_gguf.runtime import Batch, Context, Model


@dataclasses.dataclass
class _Sequence:
    """One request as tokens: the model reads `tokens`; its last len(targets) positions predict `targets`."""

    tokens: list[int]  # input tokens (ctx + cont, truncated, without the final token)
    targets: list[int]  # the continuation tokens the last positions predict
    slot: tuple[int, int]  # (group index, request index in the group)


@dataclasses.dataclass
class Unit:
    """Requests decoded together: a shared prefix once, then each sequence's own suffix."""

    prefix: list[int]
    sequences: list[_Sequence]

    @property
    def n_tokens(self) -> int:
        return len(self.prefix) + sum(len(s.tokens) - len(self.prefix) for s in self.sequences)


@dataclasses.dataclass
class Layout:
    """A decode batch's units as llama.cpp takes them, a row per token: each unit's shared prefix
    once (in all its sequences), then each sequence's own suffix; `scored` pairs every sequence
    with its first output row."""

    tokens: list[int]
    positions: list[int]
    seq_ids: list[Sequence[int]]
    outputs: list[bool]
    scored: list[tuple[_Sequence, int]]

    @classmethod
    def of(cls, units: Sequence[Unit]) -> Layout:
        layout = cls([], [], [], [], [])
        seq_base = 0
        for unit in units:
            ids = tuple(range(seq_base, seq_base + len(unit.sequences)))
            seq_base += len(unit.sequences)
            layout.tokens += unit.prefix
            layout.positions += range(len(unit.prefix))
            layout.seq_ids += [ids] * len(unit.prefix)
            layout.outputs += [False] * len(unit.prefix)
            for seq_id, seq in zip(ids, unit.sequences, strict=True):
                suffix = seq.tokens[len(unit.prefix) :]
                first_scored = len(seq.tokens) - len(seq.targets)
                layout.scored.append((seq, sum(layout.outputs)))
                layout.tokens += suffix
                layout.positions += range(len(unit.prefix), len(seq.tokens))
                layout.seq_ids += [(seq_id,)] * len(suffix)
                layout.outputs += [p >= first_scored for p in range(len(unit.prefix), len(seq.tokens))]
        return layout

    def __len__(self) -> int:
        return len(self.tokens)

    def batch(self, lo: int, hi: int, embeddings: np.ndarray | None = None) -> Batch:
        """Rows lo..hi-1 as one decode: their tokens, or `embeddings` in their place."""
        tokens = self.tokens[lo:hi] if embeddings is None else []
        return Batch(tokens, self.positions[lo:hi], self.seq_ids[lo:hi], self.outputs[lo:hi], embeddings)


class GroupResults:
    """The results of groups of requests, gathered as decode batches finish their sequences (a
    group split into one unit per request may span batches)."""

    def __init__(self, groups: Sequence[Sequence[object]]) -> None:
        self._results: list[list[LoglikelihoodResult | None]] = [[None] * len(group) for group in groups]
        self._pending = {g: len(group) for g, group in enumerate(groups)}

    def add(self, results: Iterable[tuple[_Sequence, LoglikelihoodResult]]) -> None:
        for seq, result in results:
            g, r = seq.slot
            self._results[g][r] = result
            self._pending[g] -= 1

    def finished(self, units: Sequence[Unit]) -> list[int]:
        """The groups of these units that are now complete (each reported once)."""
        done = sorted({seq.slot[0] for unit in units for seq in unit.sequences if self._pending.get(seq.slot[0]) == 0})
        for g in done:
            del self._pending[g]
        return done

    def of(self, group: int) -> list[LoglikelihoodResult]:
        results = self._results[group]
        assert all(r is not None for r in results), f"group {group} is not finished"
        return results  # type: ignore[return-value]


def holds_any(units: Sequence[Unit], groups: Collection[int]) -> bool:
    """Whether a batch of units holds a request of one of these groups."""
    return any(seq.slot[0] in groups for unit in units for seq in unit.sequences)


def common_prefix_len(sequences: Sequence[Sequence[int]]) -> int:
    first = sequences[0]
    n = min(len(s) for s in sequences)
    for i in range(n):
        if any(s[i] != first[i] for s in sequences[1:]):
            return i
    return n


def log_softmax_at(logits: np.ndarray, targets: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per row: log p(target) and whether the target is the argmax. logits: (n, n_vocab) float32."""
    peak = logits.max(axis=1, keepdims=True)
    lse = peak[:, 0].astype(np.float64) + np.log(np.exp(logits - peak).sum(axis=1, dtype=np.float64))
    rows = np.arange(len(targets))
    picked = logits[rows, targets].astype(np.float64)
    return picked - lse, logits.argmax(axis=1) == np.asarray(targets)


_UNSET = object()  # no plan set on the context yet


class Scorer:
    """Log-likelihoods and greedy generation for one model context; the plan is set on `ctx`."""

    def __init__(
        self,
        model: Model,
        *,
        n_ctx: int = 2048,
        n_batch: int = 256,
        n_seq_max: int = SEQUENCES_PER_BATCH,
        threads: int | None = None,
        add_bos: bool = False,
        flash_attn: str = "auto",
    ) -> None:
        self.model = model
        self.n_ctx = n_ctx
        self.add_bos = add_bos
        self.n_batch = n_batch
        self.context_cells = max(n_batch, n_ctx)
        self.n_seq_max = n_seq_max
        self.generated_tokens = 0  # by generate(), since the scorer was made (a progress bar's tokens/s)
        self.threads = threads
        self.flash_attn = flash_attn
        self._graph_plan: Plan | None | object = _UNSET  # the plan the context runs (None: the stock graph)

    @functools.cached_property
    def ctx(self) -> Context:
        """The model context, made on first use (a scorer that only packs requests needs none)."""
        return self.model.context(
            n_ctx=self.context_cells,
            n_batch=self.n_batch,
            n_seq_max=self.n_seq_max,
            threads=self.threads,
            flash_attn=self.flash_attn,
        )

    def set_plan(self, plan: Plan, *, named_states: bool = False) -> None:
        """Run `plan` from now on: the full model's through the stock graph, unless `named_states`
        asks for its hidden states by name (the identity plan, bit for bit the same numbers)."""
        graph_plan = None if plan.is_identity(self.model.n_layer) and not named_states else plan
        if self._graph_plan is _UNSET or graph_plan != self._graph_plan:
            self.ctx.set_plan(graph_plan)
            self._graph_plan = graph_plan

    # tokenization, as lm-eval's TemplateLM

    def encode(self, text: str) -> list[int]:
        tokens = self.model.tokenize(text)
        if self.add_bos and self.model.bos >= 0 and tokens[:1] != [self.model.bos]:
            tokens = [self.model.bos, *tokens]
        return tokens

    @property
    def prefix_token(self) -> int:
        return self.model.bos if self.model.bos >= 0 else self.model.eos

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        if context == "":
            cont = self.model.tokenize(continuation)
            if cont and cont[0] == self.prefix_token:
                return cont[:1], cont[1:]
            return [self.prefix_token], cont
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = self.encode(context + continuation)
        ctx = self.encode(context)
        return ctx, whole[len(ctx) :]

    def _sequence(self, request: LoglikelihoodRequest | TokensRequest, slot: tuple[int, int]) -> _Sequence:
        if isinstance(request, TokensRequest):
            self.model.check_tokens([*request.context, *request.continuation])
            ctx, cont = list(request.context), list(request.continuation)
        else:
            ctx, cont = self.encode_pair(request.context, request.continuation)
        if not cont:
            raise PaintersError(f"continuation {request.continuation!r} encodes to no tokens")
        if len(cont) > self.n_ctx:
            raise PaintersError(f"a continuation of {len(cont)} tokens exceeds --n-ctx {self.n_ctx}")
        whole = (ctx + cont)[-(self.n_ctx + 1) :]
        return _Sequence(tokens=whole[:-1], targets=cont, slot=slot)

    # log-likelihoods

    def units(self, groups: Sequence[Sequence[LoglikelihoodRequest | TokensRequest]]) -> list[Unit]:
        """One unit per group (document), its shared prefix ending before any scored position."""
        units = []
        for g, group in enumerate(groups):
            sequences = [self._sequence(request, (g, r)) for r, request in enumerate(group)]
            shared = min(common_prefix_len([s.tokens for s in sequences]), min(len(s.tokens) - len(s.targets) for s in sequences))
            unit = Unit(prefix=sequences[0].tokens[:shared], sequences=sequences)
            if unit.n_tokens > self.context_cells:  # too big to share: one unit per request
                units += [Unit(prefix=[], sequences=[s]) for s in sequences]
            else:
                units.append(unit)
        return units

    def batches(self, groups: Sequence[Sequence[LoglikelihoodRequest | TokensRequest]]) -> list[list[Unit]]:
        """The groups' units packed into decode batches, in order (the same whatever is scored)."""
        return list(self._pack(self.units(groups)))

    def loglikelihoods(
        self, groups: Sequence[Sequence[LoglikelihoodRequest | TokensRequest]], needed: set[int] | None = None
    ) -> Iterator[tuple[list[int], list[list[LoglikelihoodResult]]]]:
        """Score groups of requests; yields (group indices, their results) as groups finish.

        The groups are packed into decode batches in order, the same way whatever is `needed`:
        a quantized model's numbers depend slightly on what shares its batch (8-bit activation
        rounding), so a document's score must not depend on which others were already done.
        Only the batches holding a `needed` group (default: all) are decoded.
        """
        collected = GroupResults(groups)
        for units in self.batches(groups):
            if needed is not None and not holds_any(units, needed):
                continue
            layout = Layout.of(units)
            collected.add(self.results(layout, self.decode(layout)))
            done = collected.finished(units)
            yield done, [collected.of(g) for g in done]

    def score_all(self, groups: Sequence[Sequence[LoglikelihoodRequest | TokensRequest]]) -> list[list[LoglikelihoodResult]]:
        """Every group's results, in the order of the groups (`loglikelihoods` packed the same way)."""
        results: dict[int, list[LoglikelihoodResult]] = {}
        for finished, scored in self.loglikelihoods(groups):
            results.update(zip(finished, scored, strict=True))
        return [results[g] for g in range(len(groups))]

    def _pack(self, units: list[Unit]) -> Iterator[list[Unit]]:
        """Pack units into decode batches in order: at most n_batch tokens and n_seq_max sequences."""
        batch: list[Unit] = []
        tokens = seqs = 0
        for unit in units:
            n, k = unit.n_tokens, len(unit.sequences)
            if batch and (tokens + n > self.n_batch or seqs + k > self.n_seq_max):
                yield batch
                batch, tokens, seqs = [], 0, 0
            batch.append(unit)
            tokens, seqs = tokens + n, seqs + k
        if batch:
            yield batch

    def chunks(self, layout: Layout) -> list[tuple[int, int]]:
        """The decodes a layout takes: n_batch tokens each (a unit larger than that spans several)."""
        return [(lo, min(lo + self.n_batch, len(layout))) for lo in range(0, len(layout), self.n_batch)]

    def decode(
        self, layout: Layout, embeddings: Sequence[np.ndarray] | None = None, after_chunk: Callable[[], object] = lambda: None
    ) -> np.ndarray:
        """Decode a layout from an empty cache, chunk by chunk; returns the logits of its output rows.
        With `embeddings` (one array per chunk), those vectors are the input in place of the tokens;
        `after_chunk` is called after each chunk's decode (to read what a callback kept)."""
        self.ctx.clear()
        rows = []
        for i, (lo, hi) in enumerate(self.chunks(layout)):
            rows.append(self.ctx.decode(layout.batch(lo, hi, None if embeddings is None else embeddings[i])))
            after_chunk()
        return np.concatenate(rows)

    @staticmethod
    def results(layout: Layout, logits: np.ndarray) -> Iterator[tuple[_Sequence, LoglikelihoodResult]]:
        """Each sequence's log-likelihood and greediness from the layout's output logits."""
        for seq, row in layout.scored:
            lls, greedy = log_softmax_at(logits[row : row + len(seq.targets)], seq.targets)
            yield seq, LoglikelihoodResult(float(lls.sum()), bool(greedy.all()))

    def loglikelihood_unbatched(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        """One request alone, one sequence, no sharing: the plain reference path."""
        seq = self._sequence(request, (0, 0))
        self.ctx.clear()
        first_scored = len(seq.tokens) - len(seq.targets)
        logits = self.ctx.eval(seq.tokens, outputs=[p >= first_scored for p in range(len(seq.tokens))])
        lls, greedy = log_softmax_at(logits, seq.targets)
        return LoglikelihoodResult(float(lls.sum()), bool(greedy.all()))

    # greedy generation

    def generate(self, context: str, *, until: Sequence[str], max_tokens: int) -> str:
        """Greedy decoding through the KV cache until a stop string, end of generation, or max_tokens."""
        # lm-eval also stops at the tokenizer's EOS text
        eos_text = self.model.token_text(self.model.eos) if self.model.eos >= 0 else ""
        stops = [stop for stop in (*until, eos_text) if stop]
        prompt = self.encode(context)[-(self.n_ctx - max_tokens) :]
        self.ctx.clear()
        logits = self.ctx.eval(prompt, outputs=[False] * (len(prompt) - 1) + [True])
        generated: list[int] = []
        text = ""
        for _ in range(max_tokens):
            token = int(np.argmax(logits[-1]))
            if self.model.is_eog(token):
                break
            generated.append(token)
            self.generated_tokens += 1
            text = self.model.detokenize(generated)
            if any(stop in text for stop in stops) or len(prompt) + len(generated) >= self.context_cells:
                break
            logits = self.ctx.eval([token])
        for stop in stops:
            text = text.split(stop)[0]
        return text
