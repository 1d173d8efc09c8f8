"""A context over a loaded model: its KV cache, compute buffers and current plan (`Model.context`).

    ctx = model.context(n_ctx=512)
    ctx.set_plan(Plan.parse("0-9,{10-19},20-29"))
    logits = ctx.logits(model.tokenize("The cat sat"))   # (n_tokens, n_vocab)

A context runs one call at a time (another thread's call raises), checks every id and position
before llama.cpp reads it, and never lets a pass stop midway.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from painters_gguf.abi import MAX_CELLS
from painters_gguf.bindings import LOG, C, interrupts_deferred, lib, set_layer_plan
from painters_gguf.errors import PaintersError
from painters_gguf.plan import Plan

if TYPE_CHECKING:
    from painters_gguf.runtime import Model

KV_TYPES = {"f16": C.GGML_TYPE_F16, "f32": C.GGML_TYPE_F32}
FLASH_ATTN = {
    "auto": C.LLAMA_FLASH_ATTN_TYPE_AUTO,
    "on": C.LLAMA_FLASH_ATTN_TYPE_ENABLED,
    "off": C.LLAMA_FLASH_ATTN_TYPE_DISABLED,
}


def _check_range(name: str, value: int, low: int, high: int, *, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PaintersError(f"{name} {value!r}: give a whole number from {low} to {high}" + (f" ({why})" if why else ""))


class EvalCallback:
    """llama.cpp's eval callback around a Python observer: the pass always runs to the end, and
    what would have stopped it (an exception, which ctypes cannot carry into C, or False for a
    computed tensor) is kept, for `take_caught` after the pass."""

    def __init__(self, observe: Callable[[int, bool], bool]) -> None:
        self.observe = observe
        self.caught: BaseException | None = None
        self.c_callback = C.ggml_backend_sched_eval_callback(self._on_tensor)

    def _on_tensor(self, tensor: int, ask: bool, _user_data: ctypes.c_void_p) -> bool:
        try:
            wanted = bool(self.observe(tensor, ask))
            if not ask and not wanted and self.caught is None:
                self.caught = PaintersError(
                    "the eval callback returned False for a computed tensor, which would stop the pass with its "
                    "logits never computed: return True (False only answers ask=True)"
                )
            return wanted if ask else True
        except BaseException as error:  # the observer's own (Ctrl-C waits for the end of the pass)
            self.caught = self.caught or error
            return not ask

    def take_caught(self) -> BaseException | None:
        """What the last pass caught (the next starts clean)."""
        caught, self.caught = self.caught, None
        return caught


@dataclasses.dataclass
class Batch:
    """Tokens for one decode: each with its position, its sequences and whether its logits come back.

    A token in several sequences (a shared prompt prefix) is computed once and attended by all.
    With `embeddings` (n_tokens x n_embd, float32) the model reads those vectors in place of the
    tokens' embeddings (then `tokens` is empty): e.g. hidden states kept from another pass, which
    the plan's first step takes as its input.
    """

    tokens: list[int]
    positions: list[int]
    seq_ids: list[Sequence[int]]
    outputs: list[bool]
    embeddings: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.positions)


class Context:
    """A KV cache and compute buffers over a Model; the plan is set here and can change."""

    def __init__(
        self, model: Model, *, n_ctx: int, n_batch: int, n_seq_max: int, threads: int | None, kv_type: str, flash_attn: str
    ) -> None:
        self._ctx_ptr = None
        self._lock = threading.Lock()  # one call at a time: llama.cpp's context is not thread-safe
        self._eval_callback: EvalCallback | None = None
        self._batch: C.llama_batch | None = None  # made with the context (None if that was cut short)
        self._embd_batch: C.llama_batch | None = None
        _check_range("n_ctx", n_ctx, 1, MAX_CELLS)
        _check_range("n_seq_max", n_seq_max, 1, C.llama_max_parallel_sequences())
        _check_range(
            "n_batch",
            n_batch,
            n_seq_max,
            MAX_CELLS,
            why=f"at least n_seq_max={n_seq_max}: llama.cpp keeps an output per sequence",
        )
        if threads is not None:
            _check_range("threads", threads, 1, 4096)
        if kv_type not in KV_TYPES:
            raise PaintersError(f"kv_type {kv_type!r}: use one of {', '.join(KV_TYPES)}")
        if flash_attn not in FLASH_ATTN:
            raise PaintersError(f"flash_attn {flash_attn!r}: use one of {', '.join(FLASH_ATTN)}")
        self.model = model
        model.check_memory(model.n_layer, n_ctx, kv_type, n_batch=n_batch, what=f"a context of {n_ctx} cells")
        params = C.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq_max
        params.n_threads = params.n_threads_batch = threads or os.cpu_count() or 1
        params.flash_attn_type = FLASH_ATTN[flash_attn]
        params.type_k = params.type_v = KV_TYPES[kv_type]
        params.kv_unified = True  # sequences share one cache: a shared prefix is copied by reference
        params.no_perf = True
        LOG.take()
        with interrupts_deferred():
            self._ctx_ptr = C.llama_init_from_model(model._model, params)
        if not self._ctx_ptr:
            raise PaintersError(f"could not create a context for {model.path.name}: {LOG.take() or 'out of memory?'}")
        model._contexts.add(self)
        self.n_ctx: int = C.llama_n_ctx(self._ctx)
        self.kv_type = kv_type
        # llama.cpp takes at most n_ctx tokens per batch (more aborts it): what it took, not what was asked
        self.n_batch = min(n_batch, C.llama_n_batch(self._ctx), C.llama_n_ubatch(self._ctx))
        self.n_seq_max = n_seq_max
        self.n_vocab = model.n_vocab
        self.plan: Plan | None = None
        self._batch = C.llama_batch_init(n_batch, 0, n_seq_max)

    @property
    def _ctx(self) -> C.llama_context_p:
        """The C context; an error once closed (C would read freed memory)."""
        if not self._ctx_ptr:
            raise PaintersError(f"the context on {self.model.path.name} is closed")
        return self._ctx_ptr

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[C.llama_context_p]:
        """The C context for one call; an error, not a crash, when another thread (or the eval
        callback, from inside a pass) is using it."""
        if not self._lock.acquire(blocking=False):
            raise self._in_use()
        try:
            yield self._ctx
        finally:
            self._lock.release()

    def _in_use(self) -> PaintersError:
        return PaintersError(
            f"the context on {self.model.path.name} is in use by another call: a context runs one call at a time "
            "(give each thread a context of its own; do not call it from its eval callback)"
        )

    # plans

    def set_plan(self, plan: Plan | None) -> None:
        """Run the model under `plan` (None: its own layer order). Clears the KV cache."""
        with self._exclusive() as ctx:
            if plan is not None:
                self.check_plan(plan)  # under the lock: the model cannot be closed meanwhile
            with interrupts_deferred():
                set_layer_plan(ctx, plan)
        self.plan = plan

    def check_plan(self, plan: Plan) -> None:
        """Everything set_plan checks, without setting it: the plan in Python and C, and that its KV
        cache fits in memory (a CPU KV cache; the limit is `memory_limit()`)."""
        self.model.check_plan(plan, self.n_ctx, self.kv_type, n_batch=self.n_batch)

    @property
    def n_slots(self) -> int:
        """Block executions per token (KV slots) under the current plan."""
        with self._exclusive() as ctx:
            return lib.llama_layer_plan_n_slots(ctx)

    def slot_layers(self) -> list[int]:
        with self._exclusive() as ctx:
            return [lib.llama_layer_plan_slot_layer(ctx, slot) for slot in range(lib.llama_layer_plan_n_slots(ctx))]

    def set_eval_callback(self, observe: Callable[[int, bool], bool] | None) -> None:
        """Observe graph tensors as passes compute them (None: stop observing).

        `observe(tensor, ask)` is llama.cpp's eval callback without user data: asked first
        (`ask` True) whether it wants a tensor, then given each wanted tensor once computed. A pass
        always runs to the end: an exception raised by `observe`, or False for a computed tensor
        (which would have stopped the pass with its logits never computed), is raised by the decode
        after the pass. The context keeps the C callback alive while it is set.
        """
        if observe is None and self._eval_callback is None:
            return  # nothing to remove (setting one makes llama.cpp reserve its graphs again)
        callback = EvalCallback(observe) if observe is not None else None
        with self._exclusive() as ctx:
            lib.llama_set_eval_callback(ctx, callback.c_callback if callback else C.ggml_backend_sched_eval_callback(), None)
            self._eval_callback = callback

    # KV cache

    @property
    def _memory(self) -> C.llama_memory_t:
        return C.llama_get_memory(self._ctx)  # asked afresh: a plan change replaces the memory

    def clear(self) -> None:
        with self._exclusive():
            C.llama_memory_clear(self._memory, True)

    def _check_seq(self, *seq_ids: int) -> None:
        for seq_id in seq_ids:
            if isinstance(seq_id, bool) or not isinstance(seq_id, (int, np.integer)) or not 0 <= seq_id < self.n_seq_max:
                raise PaintersError(f"sequence id {seq_id!r} is not in 0..{self.n_seq_max - 1}")

    def seq_rm(self, seq_id: int, p0: int = -1, p1: int = -1) -> None:
        """Drop positions p0..p1-1 of a sequence (-1: all); seq_id -1 drops them in every sequence."""
        if seq_id != -1:
            self._check_seq(seq_id)
        with self._exclusive():
            C.llama_memory_seq_rm(self._memory, seq_id, p0, p1)

    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        self._check_seq(src, dst)
        with self._exclusive():
            C.llama_memory_seq_cp(self._memory, src, dst, p0, p1)

    def seq_len(self, seq_id: int = 0) -> int:
        """Tokens in the cache for a sequence (positions 0..n-1)."""
        self._check_seq(seq_id)
        with self._exclusive():
            return C.llama_memory_seq_pos_max(self._memory, seq_id) + 1

    # decoding

    def decode(self, batch: Batch) -> np.ndarray:
        """Run one batch through the model; returns the logits of the output tokens, in batch order."""
        with self._exclusive() as ctx:  # an error once closed, before anything is written into the freed batch
            return self._decode(ctx, batch)

    def _decode(self, ctx: C.llama_context_p, batch: Batch) -> np.ndarray:
        n = len(batch)
        if not 0 < n <= self.n_batch:
            raise PaintersError(f"a batch holds 1..{self.n_batch} tokens, found {n}")
        if not len(batch.seq_ids) == len(batch.outputs) == n or (batch.embeddings is None and len(batch.tokens) != n):
            raise PaintersError(
                "a batch needs a token (or an embedding), a position, sequence ids and an output flag for every token"
            )
        if batch.embeddings is None:
            self.model.check_tokens(batch.tokens)
            assert self._batch is not None, "made with the context"
            b = self._batch
            np.ctypeslib.as_array(b.token, shape=(n,))[:] = batch.tokens
        else:
            b = self._embeddings_batch(batch.tokens, batch.embeddings, n)
        bad = next((p for p in batch.positions if not (isinstance(p, (int, np.integer)) and 0 <= p < self.n_ctx)), None)
        if bad is not None:
            raise PaintersError(f"position {bad!r} is not in 0..{self.n_ctx - 1} (the context holds {self.n_ctx} cells)")
        b.n_tokens = n
        np.ctypeslib.as_array(b.pos, shape=(n,))[:] = batch.positions
        np.ctypeslib.as_array(b.logits, shape=(n,))[:] = batch.outputs
        for i, seq_ids in enumerate(batch.seq_ids):
            if not 0 < len(seq_ids) <= self.n_seq_max:
                raise PaintersError(f"a token belongs to 1..{self.n_seq_max} sequences, found {len(seq_ids)}")
            self._check_seq(*seq_ids)
            b.n_seq_id[i] = len(seq_ids)
            for j, seq_id in enumerate(seq_ids):
                b.seq_id[i][j] = seq_id
        callback = self._eval_callback
        try:
            with interrupts_deferred():  # Python runs during the pass: the log and eval callbacks
                status = C.llama_decode(ctx, b)
        finally:
            caught = callback.take_caught() if callback is not None else None  # never left for the next pass
        if caught is not None:
            raise caught
        if status != 0:
            detail = LOG.take()
            raise PaintersError(f"llama_decode failed with status {status}" + (f": {detail}" if detail else ""))
        n_out = sum(bool(o) for o in batch.outputs)
        if n_out == 0:
            return np.empty((0, self.n_vocab), dtype=np.float32)
        logits = np.ctypeslib.as_array(C.llama_get_logits(ctx), shape=(n_out, self.n_vocab)).copy()
        if not np.isfinite(logits).all():  # a score from these would be meaningless: say so
            under = f"plan {self.plan.text!r}" if self.plan is not None else "the model's own layer order"
            raise PaintersError(
                f"{self.model.path.name}: llama.cpp returned NaN or infinite logits under {under} "
                "(the activations overflow); nothing was scored from them"
            )
        return logits

    def _embeddings_batch(self, tokens: Sequence[int], embeddings: np.ndarray, n: int) -> C.llama_batch:
        """The C batch of embeddings input (made on first use), holding `embeddings`."""
        n_embd = self.model.n_embd
        if tokens:
            raise PaintersError("a batch takes tokens or embeddings, not both")
        if not (isinstance(embeddings, np.ndarray) and embeddings.dtype == np.float32 and embeddings.ndim == 2):
            raise PaintersError("embeddings input is a 2-d float32 array (tokens x n_embd)")
        if embeddings.shape != (n, n_embd):
            raise PaintersError(f"embeddings input of shape {embeddings.shape}: the batch needs ({n}, {n_embd})")
        if not np.isfinite(embeddings).all():
            raise PaintersError("embeddings input holds NaN or infinite values")
        if self._embd_batch is None:
            self._embd_batch = C.llama_batch_init(self.n_batch, n_embd, self.n_seq_max)
        b = self._embd_batch
        np.ctypeslib.as_array(b.embd, shape=(len(embeddings), n_embd))[:] = embeddings
        return b

    def eval(self, tokens: Sequence[int], *, seq_id: int = 0, outputs: bool | Sequence[bool] = True) -> np.ndarray:
        """Append tokens to a sequence through the KV cache, in chunks of n_batch; returns their logits."""
        self._check_seq(seq_id)
        start = self.seq_len(seq_id)
        if start + len(tokens) > self.n_ctx:
            raise PaintersError(f"{start + len(tokens)} tokens do not fit the context of {self.n_ctx}")
        want = [outputs] * len(tokens) if isinstance(outputs, bool) else list(outputs)
        rows = []
        for lo in range(0, len(tokens), self.n_batch):
            hi = min(lo + self.n_batch, len(tokens))
            batch = Batch(
                tokens=list(tokens[lo:hi]),
                positions=list(range(start + lo, start + hi)),
                seq_ids=[(seq_id,)] * (hi - lo),
                outputs=want[lo:hi],
            )
            rows.append(self.decode(batch))
        return np.concatenate(rows) if rows else np.empty((0, self.n_vocab), dtype=np.float32)

    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        """Logits for every position of a token sequence, from an empty cache: (n_tokens, n_vocab)."""
        self.clear()
        return self.eval(tokens)

    def close(self) -> None:
        """Free the KV cache and buffers (once; again does nothing); an error while another
        thread is using the context."""
        if not self._lock.acquire(blocking=False):
            raise self._in_use()
        try:
            if self._ctx_ptr:
                for batch in (self._batch, self._embd_batch):
                    if batch is not None:
                        C.llama_batch_free(batch)
                C.llama_free(self._ctx_ptr)
                self._ctx_ptr = None
                self._eval_callback = None
        finally:
            self._lock.release()

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
