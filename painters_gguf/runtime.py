"""Run a GGUF model under layer plans: ctypes over llama-cpp-python's own library.

We use llama-cpp-python's bindings (`llama_cpp.llama_cpp`) and bind the few functions our patch
adds (`llama-layer-plan.h`) on the same library. Its high-level `Llama` class is not used: it
caches the memory pointer that a plan change replaces; here `llama_get_memory` is asked afresh
every time.

    model = Model("smollm2.gguf")
    ctx = model.context(n_ctx=512)
    ctx.set_plan(Plan.parse("0-9,{10-19},20-29"))
    logits = ctx.logits(model.tokenize("The cat sat"))   # (n_tokens, n_vocab)
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import os
import signal
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from painters_gguf.abi import MAX_CELLS
from painters_gguf.bindings import LOG, C, call_plan_status, lib, plan_architectures
from painters_gguf.errors import PaintersError, PlanError
from painters_gguf.fetch import file_sha256
from painters_gguf.memory import gpu_free_memory, human_bytes, memory_limit, offloaded_slots
from painters_gguf.plan import Plan

__all__ = ["Batch", "Context", "Model", "plan_architectures"]

KV_TYPES = {"f16": C.GGML_TYPE_F16, "f32": C.GGML_TYPE_F32}
KV_BYTES = {"f16": 2, "f32": 4}
FLASH_ATTN = {
    "auto": C.LLAMA_FLASH_ATTN_TYPE_AUTO,
    "on": C.LLAMA_FLASH_ATTN_TYPE_ENABLED,
    "off": C.LLAMA_FLASH_ATTN_TYPE_DISABLED,
}


def _check_range(name: str, value: int, low: int, high: int, *, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PaintersError(f"{name} {value!r}: give a whole number from {low} to {high}" + (f" ({why})" if why else ""))


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C taken after the block, not inside it. While llama.cpp calls back into Python (its log
    callback, the eval callback), a KeyboardInterrupt raised there cannot cross into C: ctypes
    drops it (the eval callback then answers False, which stops the pass midway with logits never
    computed). C code is not interrupted by Python's handler anyway: nothing comes later."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


@functools.lru_cache(maxsize=16)
def cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    """A file's sha256, computed once per (path, size, modification time)."""
    return file_sha256(Path(path))


class Model:
    """A GGUF model loaded once; contexts on it run any plan without reloading weights."""

    def __init__(self, path: str | os.PathLike[str], *, n_gpu_layers: int = 0, vocab_only: bool = False) -> None:
        """Load the weights (with `vocab_only`, just the metadata and tokenizer: fast)."""
        self._model_ptr = None
        self._contexts: weakref.WeakSet[Context] = weakref.WeakSet()
        self.path = Path(path)
        if n_gpu_layers < -1:
            raise PaintersError(f"n_gpu_layers {n_gpu_layers}: give a layer count, or -1 for all")
        if n_gpu_layers != 0 and not C.llama_supports_gpu_offload():
            raise PaintersError(
                f"n_gpu_layers {n_gpu_layers}: this llama.cpp build has no GPU offload "
                '(build it with CMAKE_ARGS="-DGGML_CUDA=on" python patches/build_wheel.py)'
            )
        self.n_gpu_layers = n_gpu_layers
        self.vocab_only = vocab_only
        params = C.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        params.vocab_only = vocab_only
        LOG.take()
        with interrupts_deferred():  # llama.cpp logs through a Python callback while it loads
            self._model_ptr = C.llama_model_load_from_file(os.fsencode(self.path), params)
        if not self._model_ptr:
            detail = LOG.take() or "llama.cpp could not load it"
            raise PaintersError(f"{self.path}: {detail}")
        self._vocab_ptr = C.llama_model_get_vocab(self._model)
        self.arch: str = self.meta("general.architecture") or "unknown"
        self.n_vocab: int = C.llama_vocab_n_tokens(self._vocab_ptr)
        if vocab_only:  # no hparams are loaded: read them from the metadata
            self.n_layer = int(self.meta(f"{self.arch}.block_count") or 0)
            self.n_embd = int(self.meta(f"{self.arch}.embedding_length") or 0)
            self.n_ctx_train = int(self.meta(f"{self.arch}.context_length") or 0)
        else:
            self.n_layer = C.llama_model_n_layer(self._model)
            self.n_embd = C.llama_model_n_embd(self._model)
            self.n_ctx_train = C.llama_model_n_ctx_train(self._model)

    @property
    def _model(self) -> C.llama_model_p:
        """The C model; an error once closed (C would read freed memory)."""
        if not self._model_ptr:
            raise PaintersError(f"{self.path.name}: the model is closed")
        return self._model_ptr

    @property
    def _vocab(self) -> C.llama_vocab_p:
        """The C vocabulary, part of the model: an error once the model is closed."""
        self._model  # noqa: B018 - raises when closed
        return self._vocab_ptr

    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as a string (untrusted text: never render it as a template)."""
        size = 256
        while True:
            buf = ctypes.create_string_buffer(size)
            n = C.llama_model_meta_val_str(self._model, key.encode(), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.value.decode("utf-8", "replace")
            size = n + 1

    def kv_bytes(self, n_slots: int, n_ctx: int, kv_type: str = "f16") -> int:
        """Bytes of K and V cache for `n_slots` block executions over `n_ctx` cells."""
        n_head = int(self.meta(f"{self.arch}.attention.head_count") or 1)
        n_head_kv = int(self.meta(f"{self.arch}.attention.head_count_kv") or n_head)
        head_k = int(self.meta(f"{self.arch}.attention.key_length") or self.n_embd // n_head)
        head_v = int(self.meta(f"{self.arch}.attention.value_length") or self.n_embd // n_head)
        return n_slots * n_ctx * n_head_kv * (head_k + head_v) * KV_BYTES[kv_type]

    def check_memory(self, n_slots: int, n_ctx: int, kv_type: str, *, n_batch: int = 0, what: str) -> None:
        """Refuse what would not fit, before llama.cpp allocates it: the KV cache of n_slots block
        executions over n_ctx cells, and the logits buffer of a batch (in host memory).

        With layers on a GPU (n_gpu_layers), the slots of offloaded layers live in its memory and
        must fit what `gpu_free_memory()` reports free (a plan's slots are taken to split as the
        model's blocks do: `offloaded_slots`); the rest must fit the memory the system has
        available. $PAINTERS_GGUF_MEMORY_LIMIT, when set, bounds the whole instead (`memory_limit()`).
        """
        hint = "use a smaller --n-ctx or a shorter plan"
        vram = gpu_free_memory() if self.n_gpu_layers != 0 and memory_limit(system=False) is None else None
        gpu_slots = 0 if vram is None else offloaded_slots(n_slots, self.n_layer, self.n_gpu_layers)
        if vram is not None and self.kv_bytes(gpu_slots, n_ctx, kv_type) > vram:
            raise PlanError(
                f"{what}: needs {human_bytes(self.kv_bytes(gpu_slots, n_ctx, kv_type))} of GPU memory (KV cache of "
                f"{gpu_slots} slots x {n_ctx} cells on the GPU), more than the {human_bytes(vram)} free there; "
                f"{hint}, or fewer --n-gpu-layers"
            )
        host_slots = n_slots - gpu_slots
        parts = ([f"KV cache of {host_slots} slots x {n_ctx} cells"] if host_slots else []) + (
            [f"logits for {n_batch} tokens"] if n_batch else []
        )
        needed = self.kv_bytes(host_slots, n_ctx, kv_type) + 4 * self.n_vocab * n_batch
        limit = memory_limit()
        if limit is not None and needed > limit:
            raise PlanError(
                f"{what}: needs {human_bytes(needed)} ({', '.join(parts)}), "
                f"more than the {human_bytes(limit)} of memory available; {hint}"
            )

    @property
    def runs_plans(self) -> bool:
        """Whether the library runs this model's architecture under layer plans."""
        return bool(lib.llama_layer_plan_supported(self._model))

    def swa_layers(self) -> list[int]:
        """The layers that attend through a sliding window (their KV slots live in the SWA cache)."""
        if self.vocab_only:
            raise PaintersError(f"{self.path.name}: loaded with vocab_only, which reads no layer hyperparameters")
        return [layer for layer in range(self.n_layer) if lib.llama_layer_plan_layer_swa(self._model, layer) == 1]

    @property
    def sha256(self) -> str:
        stat = self.path.stat()
        return cached_sha256(str(self.path.resolve()), stat.st_size, stat.st_mtime_ns)

    @property
    def bos(self) -> int:
        return C.llama_vocab_bos(self._vocab)

    @property
    def eos(self) -> int:
        return C.llama_vocab_eos(self._vocab)

    def is_eog(self, token: int) -> bool:
        """End of generation: EOS, EOT and the like."""
        self.check_tokens([token])
        return bool(C.llama_vocab_is_eog(self._vocab, token))

    def token_text(self, token: int) -> str:
        """A token's text, special tokens rendered (e.g. '<|im_end|>')."""
        self.check_tokens([token])
        buf = ctypes.create_string_buffer(256)
        n = C.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", "replace")

    def tokenize(self, text: str, *, add_bos: bool = False, parse_special: bool = False) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        while True:
            tokens = (C.llama_token * capacity)()
            n = C.llama_tokenize(self._vocab, data, len(data), tokens, capacity, add_bos, parse_special)
            if n >= 0:
                return list(tokens[:n])
            capacity = -n

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.token_bytes(tokens).decode("utf-8", "replace")

    def token_bytes(self, tokens: Sequence[int]) -> bytes:
        self.check_tokens(tokens)
        array = (C.llama_token * len(tokens))(*tokens)
        capacity = 16 * len(tokens) + 16
        while True:
            buf = ctypes.create_string_buffer(capacity)
            n = C.llama_detokenize(self._vocab, array, len(tokens), buf, capacity, False, False)
            if n >= 0:
                return buf.raw[:n]
            capacity = -n

    def context(
        self,
        *,
        n_ctx: int = 2048,
        n_batch: int = 512,
        n_seq_max: int = 1,
        threads: int | None = None,
        kv_type: str = "f16",
        flash_attn: str = "auto",
    ) -> Context:
        if self.vocab_only:
            raise PaintersError(f"{self.path.name}: loaded with vocab_only (no weights): a context needs the whole model")
        return Context(
            self, n_ctx=n_ctx, n_batch=n_batch, n_seq_max=n_seq_max, threads=threads, kv_type=kv_type, flash_attn=flash_attn
        )

    def validate_plan(self, plan: Plan) -> None:
        """Check a plan in Python and in C without a context."""
        plan.check(self.n_layer)
        if not self.runs_plans:
            supported = ", ".join(plan_architectures())
            raise PlanError(f"{self.path.name}: architecture {self.arch!r} does not run layer plans (supported: {supported})")
        flat = plan.encode()
        call_plan_status(lib.llama_layer_plan_validate(self._model, (ctypes.c_int32 * len(flat))(*flat), len(flat)), plan)

    def check_tokens(self, tokens: Sequence[int]) -> None:
        """Token ids are 0..n_vocab-1 (llama.cpp reads past its tables otherwise)."""
        for t in tokens:
            if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < self.n_vocab:
                raise PaintersError(f"token id {t!r} is not in 0..{self.n_vocab - 1}")

    def close(self) -> None:
        """Free the weights, and first every context still open on them."""
        for context in list(getattr(self, "_contexts", ())):
            context.close()
        if self._model_ptr:
            C.llama_model_free(self._model_ptr)
            self._model_ptr = None

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class EvalCallback:
    """llama.cpp's eval callback around a Python observer: the pass always runs to the end, and
    what would have stopped it (an exception, which ctypes cannot carry into C, or False for a
    computed tensor) is kept for `raise_caught` after the pass."""

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
        except BaseException as error:  # Ctrl-C while in here, most likely
            self.caught = self.caught or error
            return not ask

    def raise_caught(self) -> None:
        if self.caught is not None:
            error, self.caught = self.caught, None
            raise error


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
            raise PaintersError(
                f"the context on {self.model.path.name} is in use by another call: a context runs one call at a time "
                "(give each thread a context of its own; do not call it from its eval callback)"
            )
        try:
            yield self._ctx
        finally:
            self._lock.release()

    # plans

    def set_plan(self, plan: Plan | None) -> None:
        """Run the model under `plan` (None: its own layer order). Clears the KV cache."""
        if plan is not None:
            self.check_plan(plan)
        flat = plan.encode() if plan is not None else []
        with self._exclusive() as ctx, interrupts_deferred():
            status = lib.llama_set_layer_plan(ctx, (ctypes.c_int32 * len(flat))(*flat) if flat else None, len(flat))
        call_plan_status(status, plan)
        self.plan = plan

    def check_plan(self, plan: Plan) -> None:
        """Everything set_plan checks, without setting it: the plan in Python and C, and that its KV
        cache fits in memory (a CPU KV cache; the limit is `memory_limit()`)."""
        self.model.validate_plan(plan)
        self.model.check_memory(plan.n_slots, self.n_ctx, self.kv_type, n_batch=self.n_batch, what=f"plan {plan.text!r}")

    @property
    def n_slots(self) -> int:
        """Block executions per token (KV slots) under the current plan."""
        with self._exclusive() as ctx:
            return lib.llama_layer_plan_n_slots(ctx)

    def slot_layers(self) -> list[int]:
        n_slots = self.n_slots
        with self._exclusive() as ctx:
            return [lib.llama_layer_plan_slot_layer(ctx, slot) for slot in range(n_slots)]

    def set_eval_callback(self, observe: Callable[[int, bool], bool] | None) -> None:
        """Observe graph tensors as passes compute them (None: stop observing).

        `observe(tensor, ask)` is llama.cpp's eval callback without user data: asked first
        (`ask` True) whether it wants a tensor, then given each wanted tensor once computed. A pass
        always runs to the end: an exception raised by `observe`, or False for a computed tensor
        (which would have stopped the pass with its logits never computed), is raised by the decode
        after the pass. The context keeps the C callback alive while it is set.
        """
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
        with interrupts_deferred():  # Python runs during the pass: the log and eval callbacks
            status = C.llama_decode(ctx, b)
        if callback is not None:
            callback.raise_caught()
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
        """Free the KV cache and buffers; an error while another thread is using the context."""
        if not self._ctx_ptr:
            return
        with self._exclusive() as ctx:
            for batch in (self._batch, self._embd_batch):
                if batch is not None:
                    C.llama_batch_free(batch)
            C.llama_free(ctx)
            self._ctx_ptr = None
            self._eval_callback = None

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
