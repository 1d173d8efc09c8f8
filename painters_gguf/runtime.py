"""A GGUF model loaded once (`Model`); contexts on it (`context.Context`) run any plan.

llama-cpp-python's low-level bindings are used through `bindings` (which also binds the functions
our patch adds). Its high-level `Llama` class is not used: it caches the memory pointer that a plan
change replaces; here `llama_get_memory` is asked afresh every time.

    model = Model("smollm2.gguf")
    ctx = model.context(n_ctx=512)
    ctx.set_plan(Plan.parse("0-9,{10-19},20-29"))
    logits = ctx.logits(model.tokenize("The cat sat"))   # (n_tokens, n_vocab)
"""

from __future__ import annotations

import ctypes
import functools
import os
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from painters_gguf import file_facts
from painters_gguf.architectures import refusal
from painters_gguf.bindings import LOG, C, call_plan_status, interrupts_deferred, lib, plan_architectures
from painters_gguf.context import Batch, Context
from painters_gguf.errors import PaintersError, PlanError
from painters_gguf.fetch import file_sha256
from painters_gguf.memory import gpu_free_memory, human_bytes, memory_limit, offloaded_slots
from painters_gguf.plan import Plan

__all__ = ["Batch", "Context", "Model", "plan_architectures"]

KV_BYTES = {"f16": 2, "f32": 4}


@functools.lru_cache(maxsize=16)
def cached_sha256(path: str, stamp: tuple[int, ...]) -> str:
    """A file's sha256, computed once per state of the file (`file_facts`: remembered across runs)."""
    known = file_facts.recall(Path(path)).get("sha256")
    if isinstance(known, str):
        return known
    digest = file_sha256(Path(path))
    file_facts.remember(Path(path), sha256=digest)
    return digest


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
        return cached_sha256(str(self.path.resolve()), tuple(file_facts.stamp(self.path)))

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
        return self.piece(token, special=True).decode("utf-8", "replace")

    def piece(self, token: int, *, special: bool) -> bytes:
        """A token's bytes; special tokens rendered, or (`special` False, as in a completion's text) nothing."""
        self.check_tokens([token])
        size = 256
        while True:
            buf = ctypes.create_string_buffer(size)
            n = C.llama_token_to_piece(self._vocab, token, buf, size, 0, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n  # too small: llama.cpp says how many bytes the piece needs

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

    def check_plan(self, plan: Plan, n_ctx: int, kv_type: str, *, n_batch: int) -> None:
        """Everything setting a plan checks, without setting it: the plan in Python and C, and that
        its KV cache of n_ctx cells per slot fits in memory."""
        self.validate_plan(plan)
        self.check_memory(plan.n_slots, n_ctx, kv_type, n_batch=n_batch, what=f"plan {plan.text!r}")

    def validate_plan(self, plan: Plan) -> None:
        """Check a plan in Python and in C without a context."""
        plan.check(self.n_layer)
        if not self.runs_plans:
            supported = ", ".join(plan_architectures())
            why = refusal(self.arch)
            raise PlanError(
                f"{self.path.name}: architecture {self.arch!r} does not run layer plans"
                + (f": {why}" if why else f" yet (supported: {supported})")
            )
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
