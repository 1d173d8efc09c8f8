"""llama-cpp-python's `Llama` under a layer plan, over weights loaded once (`runtime.Model`).

What llama-cpp-python already does (chat templates from the GGUF, sampling, stop sequences,
streaming, the OpenAI response shapes) is used as it is; this class adds three things:

- the weights are a `Model` shared by every `PlanLlama` on it: each has its own context (KV cache
  and compute buffers), so another plan costs its KV slots, not another copy of the weights;
- the plan is set on that context, and what llama-cpp-python caches about the context is refreshed
  (its memory pointer, which a plan change replaces, and the tokens it thinks are cached);
- `echo` + `logprobs` scores each prompt token from the logits row before it. llama-cpp-python
  0.3.36 reads the row of the token itself when the prompt has no BOS (its issue #1983) and drops
  the last token's entry, so lm-eval's completions backends would score garbage through it.

    model = Model("smollm2.gguf")
    llm = PlanLlama(model, Plan.parse("0-9,{10-19},20-29"), n_ctx=2048)
    llm.create_chat_completion(messages=[{"role": "user", "content": "Hi"}])
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Generator, Iterator, Sequence
from typing import Any

import numpy as np
from llama_cpp import Llama
from llama_cpp import _internals as internals
from llama_cpp.llama_types import CompletionLogprobs

from painters_gguf.bindings import LOG, C, lib, set_layer_plan
from painters_gguf.context import FLASH_ATTN
from painters_gguf.errors import PaintersError
from painters_gguf.plan import Plan
from painters_gguf.runtime import Model

_measuring = threading.local()  # on while this thread only measures a prompt (`measure_prompt`)


class _PromptFits(Exception):
    """A measuring run reached generation: the prompt fits the context."""


class SharedWeights(internals.LlamaModel):
    """llama-cpp-python's model wrapper over a `Model`'s weights: closing it frees the contexts made
    on it, never the weights (the `Model` owns them)."""

    def __init__(self, model: Model) -> None:  # the parent's would load the file again
        self.path_model = str(model.path)
        self.params = C.llama_model_default_params()
        self.verbose = False
        self._exit_stack = contextlib.ExitStack()
        self.sampler = None
        self.custom_samplers = []
        self.model = model._model
        self.vocab = model._vocab


_BUILDING = threading.Lock()  # _built_on swaps two module globals of llama-cpp-python


@contextlib.contextmanager
def _built_on(model: Model, flash_attn: str) -> Iterator[None]:
    """While a `Llama` is built: its model wrapper is `SharedWeights(model)`, not a new load, and its
    context gets llama.cpp's flash-attention setting `flash_attn` (auto/on/off; Llama's own is on/off)."""
    load_model, make_context = internals.LlamaModel, internals.LlamaContext

    def context(*, params: Any, **kwargs: Any) -> internals.LlamaContext:  # noqa: ANN401 - llama-cpp-python's
        params.flash_attn_type = FLASH_ATTN[flash_attn]
        return make_context(params=params, **kwargs)

    with _BUILDING:
        internals.LlamaModel = lambda **_: SharedWeights(model)  # type: ignore[misc, assignment]
        internals.LlamaContext = context  # type: ignore[misc, assignment]
        try:
            yield
        finally:
            internals.LlamaModel, internals.LlamaContext = load_model, make_context  # type: ignore[misc]


class PlanLlama(Llama):
    """A `Llama` whose context runs `plan` (None: the model's own layer order) over a shared `Model`."""

    def __init__(
        self,
        model: Model,
        plan: Plan | None,
        *,
        n_ctx: int = 2048,
        n_batch: int = 512,
        threads: int | None = None,
        flash_attn: str = "auto",
        embedding: bool = False,
        chat_format: str | None = None,
        reuse_prefix: bool = False,
    ) -> None:
        """`reuse_prefix`: continue from the tokens the last call left in the cache where the new
        prompt starts with them (llama-cpp-python's way: fast for a conversation, but the logits then
        depend on how earlier calls were batched, by float rounding). Off, every call is evaluated
        from an empty cache: an answer depends on its request alone."""
        if model.vocab_only:
            raise PaintersError(f"{model.path.name}: loaded with vocab_only (no weights)")
        self.weights = model
        self.reuse_prefix = reuse_prefix
        self.stopping = False  # set when the server stops: a generation in flight ends at its next token
        self._recorded: tuple[list[int], list[int]] = ([], [])  # the last generate's prompt and tokens
        if flash_attn not in FLASH_ATTN:
            raise PaintersError(f"flash_attn {flash_attn!r}: use one of {', '.join(FLASH_ATTN)}")
        if plan is not None:
            model.validate_plan(plan)  # before a context is made for it
        model.check_memory(plan.n_slots if plan else model.n_layer, n_ctx, "f16", n_batch=n_batch, what=f"n_ctx {n_ctx}")
        try:
            with _built_on(model, flash_attn):
                super().__init__(
                    str(model.path),
                    n_ctx=n_ctx,
                    n_batch=n_batch,
                    n_ubatch=n_batch,
                    n_threads=threads or os.cpu_count() or 1,
                    n_threads_batch=threads or os.cpu_count() or 1,
                    embedding=embedding,
                    logits_all=True,  # room for every token's logits (echo + logprobs), kept only when asked
                    chat_format=chat_format,
                    verbose=False,
                )
        except ValueError as error:  # llama-cpp-python's "Failed to create llama_context"
            raise PaintersError(f"{model.path.name}: {error} ({LOG.take() or 'out of memory?'})") from None
        self._logits_all = False  # per request: `_create_completion`
        self.plan: Plan | None = None
        self.set_plan(plan)

    def set_plan(self, plan: Plan | None) -> None:
        """Run `plan` from the next call on (None or the identity plan: the model's own order);
        forgets the cached tokens."""
        if plan is not None and plan.is_identity(self.weights.n_layer):
            plan = None
        if plan is not None:
            self.weights.check_plan(plan, self.n_ctx(), "f16", n_batch=self.n_batch)
        try:
            set_layer_plan(self._ctx.ctx, plan)
        finally:
            self._ctx.memory = C.llama_get_memory(self._ctx.ctx)  # the plan replaced the memory module
            self.reset()  # the tokens llama-cpp-python believes cached were computed under the old plan
        self.plan = plan

    @property
    def n_slots(self) -> int:
        """KV slots (block executions per token) under the current plan."""
        return int(lib.llama_layer_plan_n_slots(self._ctx.ctx))

    # the echo + logprobs fix

    def generate(
        self,
        tokens: Sequence[int],
        *args: Any,  # noqa: ANN401 - Llama's
        **kwargs: Any,  # noqa: ANN401
    ) -> Generator[int, Sequence[int] | None, None]:
        """Llama's generate (from an empty cache unless `reuse_prefix`), with what it was given and
        what it yielded recorded for `_create_completion`."""
        if not self.reuse_prefix:
            self.reset()
        prompt, produced = list(tokens), list[int]()
        self._recorded = (prompt, produced)
        inner = super().generate(tokens, *args, **kwargs)
        sent: Sequence[int] | None = None
        while True:
            try:
                token = inner.send(sent)  # None first, as next() does
            except StopIteration:
                return
            produced.append(token)
            sent = yield token
            if self.stopping:
                return

    def measure_prompt(self, request: dict[str, Any], *, chat: bool) -> None:
        """Format and tokenize a completion (or, with `chat`, chat completion) request as it would
        run, without evaluating anything: llama-cpp-python's ValueError if the prompt does not fit
        the context. Safe beside a running request: it stops where llama-cpp-python would set the
        seed (after every check), before anything of the context or the sampler is touched."""
        asked = {"logprobs": False, "top_logprobs": None} if chat else {"logprobs": None}
        request = {**request, **asked, "stream": False, "max_tokens": 1}
        _measuring.on = True
        try:
            if chat:
                self.create_chat_completion(**request)
            else:
                self.create_completion(**request)
        except _PromptFits:
            pass
        finally:
            _measuring.on = False

    def set_seed(self, seed: int) -> None:
        if getattr(_measuring, "on", False):
            raise _PromptFits  # `measure_prompt`: the prompt passed every check
        super().set_seed(seed)

    def _create_completion(self, prompt: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:  # noqa: ANN401 - Llama's
        """Llama's, with every token's logits kept only while a request that asks for logprobs runs
        (a context holds no n_ctx x n_vocab logits otherwise), and echo + logprobs computed here."""
        top_n, echo = kwargs.get("logprobs"), kwargs.get("echo", False)
        if getattr(_measuring, "on", False):  # a measuring thread leaves the context's state alone
            yield from super()._create_completion(prompt, *args, **kwargs)
            return
        self._logits_all = top_n is not None
        if top_n is not None:
            self.reset()  # rows an earlier call did not keep cannot be reused
        try:
            if not echo or top_n is None or kwargs.get("stream", False):
                yield from super()._create_completion(prompt, *args, **kwargs)
                return
            # llama-cpp-python's own echo logprobs are shifted by one (and sort the vocabulary per token): ours instead
            for chunk in super()._create_completion(prompt, *args, **{**kwargs, "logprobs": None}):
                chunk["choices"][0]["logprobs"] = self._echo_logprobs(int(top_n), chunk["usage"]["completion_tokens"])
                yield chunk
        finally:
            if top_n is not None:
                self.scores = np.ndarray(self.scores.shape, dtype=np.single)  # the rows written go back to the system
                self.n_tokens = 0

    def _echo_logprobs(self, top_n: int, n_completion: int) -> CompletionLogprobs:
        """Log-probabilities of the prompt and completion tokens (with the end-of-generation token
        that stopped it), each from the logits row of the token before it; a leading BOS is left
        out, and the first entry is None (OpenAI's convention: no context before it). Text offsets
        count characters of the echoed text, the prompt as given."""
        prompt, produced = self._recorded
        # the token that ended the reply is not in its text, but is echoed: lm-eval drops the last entry as generated
        ended = len(produced) > n_completion and self.weights.is_eog(produced[n_completion])
        tokens = prompt + produced[: n_completion + ended]
        start = 1 if tokens[:1] == [self.token_bos()] else 0
        shown = b""
        result: CompletionLogprobs = {"tokens": [], "text_offset": [], "token_logprobs": [], "top_logprobs": []}
        for index in range(start, len(tokens)):
            piece = self.weights.piece(tokens[index], special=False)
            if index == start == 1 and piece.startswith(b" "):
                piece = piece[1:]  # SentencePiece's space before the first word after BOS (llama-cpp-python drops it too)
            result["text_offset"].append(len(shown.decode("utf-8", errors="ignore")))
            result["tokens"].append(piece.decode("utf-8", errors="ignore"))
            shown += piece
            if index == start:
                result["token_logprobs"].append(None)
                result["top_logprobs"].append(None)
                continue
            row = _log_softmax(self.scores[index - 1])
            k = min(top_n, len(row))
            best = sorted(np.argpartition(row, -k)[-k:], key=lambda i: -row[i]) if k > 0 else []
            top = {self.weights.piece(int(i), special=False).decode("utf-8", errors="ignore"): float(row[i]) for i in best}
            top[result["tokens"][-1]] = float(row[tokens[index]])
            result["token_logprobs"].append(float(row[tokens[index]]))
            result["top_logprobs"].append(top)
        return result


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - float(np.max(logits))
    return shifted - np.log(np.sum(np.exp(shifted)))
