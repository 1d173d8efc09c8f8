"""painters-gguf as an lm-evaluation-harness model, `painters-gguf`: any lm-eval task under any plan.

    lm_eval.simple_evaluate(model="painters-gguf", model_args="model=smollm2-135m,plan=0-4,{5-25}x3,26-29", ...)
    painters-gguf lm-eval --model painters-gguf --model_args model=smollm2-135m,plan=parallel,n=4 --tasks piqa

Importing this module registers the model with lm-eval (0.4.13 looks for no plugins by itself;
`painters-gguf lm-eval` imports it, then runs lm-eval's own command line). Requests are scored
in-process by the same scorer as `painters-gguf eval`: a document's requests share their prefix,
documents are packed into decode batches in order, so the numbers equal eval's on one machine.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from typing import Any

from painters_gguf import variants
from painters_gguf.abi import MAX_CELLS
from painters_gguf.engine.packing import SEQUENCES_PER_BATCH
from painters_gguf.engine.scoring import Scorer
from painters_gguf.errors import PaintersError
from painters_gguf.evaluate import Settings
from painters_gguf.fetch import resolve_model
from painters_gguf.gguf_check import check_model_file
from painters_gguf.requests import LoglikelihoodRequest, TokensRequest
from painters_gguf.runtime import Model

TESTED_LM_EVAL = "0.4.13"  # the `lm-eval` extra pins it

try:
    import lm_eval
except ImportError:
    raise PaintersError("the lm-eval backend needs lm-eval: pip install 'painters-gguf[lm-eval]'") from None
try:
    import lm_eval.models
    from lm_eval.api.instance import Instance
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import model_registry
    from lm_eval.utils import get_rolling_token_windows, handle_arg_string, make_disjoint_window
except ImportError as changed:
    raise PaintersError(
        f"lm-eval {getattr(lm_eval, '__version__', '?')} has no {changed.name or changed}, which painters-gguf's backend "
        f"uses: it is tested with lm-eval {TESTED_LM_EVAL} (pip install 'painters-gguf[lm-eval]')"
    ) from None

NAME = "painters-gguf"
DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's default for generate_until


@dataclasses.dataclass(frozen=True)
class ModelArgs:
    """`--model_args` of the backend, checked where they enter."""

    model: str | None = None  # a catalog name, a .gguf path or an HF owner/repo/file.gguf
    plan: str = "full"  # a variant (with n, seed, iters) or a plan text
    n: int = 0
    seed: int = 0
    iters: int = 3
    n_ctx: int = 2048
    threads: int | None = None
    n_gpu_layers: int = 0
    add_bos: bool | None = None  # None: as eval (Gemma models yes, others no)
    batch_size: int = 256  # tokens per decode: as eval's --batch-size, which changes quantized numerics

    @classmethod
    def parse(cls, given: dict[str, Any]) -> ModelArgs:
        known = {field.name: field for field in dataclasses.fields(cls)}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise PaintersError(f"model_args: unknown {', '.join(unknown)} (known: {', '.join(known)})")
        values: dict[str, Any] = {key: _checked(key, value, known[key].type) for key, value in given.items()}
        args = cls(**values)
        for key, low, high in (
            ("n_ctx", 1, MAX_CELLS),
            ("batch_size", SEQUENCES_PER_BATCH, MAX_CELLS),
            ("n_gpu_layers", -1, 4096),
        ):
            if not low <= getattr(args, key) <= high:
                raise PaintersError(f"model_args: {key}={getattr(args, key)} is not in {low}..{high}")
        if args.threads is not None and not 1 <= args.threads <= 4096:
            raise PaintersError(f"model_args: threads={args.threads} is not in 1..4096")
        return args

    @classmethod
    def from_text(cls, text: str) -> dict[str, Any]:
        """`key=value,...` as lm-eval writes model_args, where a plan text keeps its commas: a part
        without `=` (or not naming a field) belongs to the value before it."""
        known = {field.name for field in dataclasses.fields(cls)}
        pairs: list[list[str]] = []
        for part in text.split(","):
            key, eq, value = part.partition("=")
            if eq and (key.strip() in known or not pairs):
                pairs.append([key.strip(), value])
            elif pairs:
                pairs[-1][1] += "," + part
        return {key: handle_arg_string(value) for key, value in pairs}  # typed as lm-eval types model_args


def _checked(key: str, value: object, kind: object) -> object:
    """A model_args value of its field's type (lm-eval turns numbers and true/false into values)."""
    if "bool" in str(kind):
        if not isinstance(value, bool):
            raise PaintersError(f"model_args: {key}={value!r} takes true or false")
        return value
    if "int" in str(kind):
        if isinstance(value, bool) or not isinstance(value, int):
            raise PaintersError(f"model_args: {key}={value!r} takes a whole number")
        return value
    return str(value)


class PaintersLM(TemplateLM):
    """lm-eval's model interface over a GGUF model under a plan, scored in-process."""

    def __init__(self, **model_args: Any) -> None:  # noqa: ANN401 - lm-eval passes whatever model_args holds
        super().__init__()
        for ignored in ("device", "max_batch_size"):  # lm-eval's, for its own backends
            model_args.pop(ignored, None)
        if model_args.get("batch_size") in ("auto", 1, "1", None):
            model_args.pop("batch_size", None)  # lm-eval's --batch_size (requests per call): ours packs tokens
        args = ModelArgs.parse(model_args)
        path = resolve_model(args.model)
        check_model_file(path)
        self.model = Model(path, n_gpu_layers=args.n_gpu_layers)
        self.plan = variants.resolve(args.plan, self.model.n_layer, args.n, seed=args.seed, iters=args.iters)
        settings = Settings(n_ctx=args.n_ctx, add_bos=args.add_bos, batch_size=args.batch_size).for_model(
            self.model.arch, self.model.n_layer
        )
        self.scorer = Scorer(
            self.model, n_ctx=args.n_ctx, n_batch=args.batch_size, threads=args.threads, add_bos=bool(settings.add_bos)
        )
        self.scorer.set_plan(self.plan)
        self.args = args

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> PaintersLM:
        """lm-eval's `key=value,...` model_args, a plan text's commas kept (`ModelArgs.from_text`)."""
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
        return cls(**ModelArgs.from_text(arg_string), **extra)

    # lm-eval's tokenizer interface

    @property
    def eot_token_id(self) -> int:
        return self.model.eos

    @property
    def prefix_token_id(self) -> int:
        return self.scorer.prefix_token

    @property
    def max_length(self) -> int:
        return self.args.n_ctx

    @property
    def tokenizer_name(self) -> str:
        return f"{self.model.path.name}@{self.model.sha256[:12]}"

    def tok_encode(self, string: str, **kwargs: Any) -> list[int]:  # noqa: ANN401 - lm-eval's
        return self.scorer.encode(string) if kwargs.get("add_special_tokens", True) else self.model.tokenize(string)

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        """The model's chat template (GGUF `tokenizer.chat_template`), for lm-eval's --apply_chat_template."""
        return self.model.meta("tokenizer.chat_template") if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The messages rendered with the model's own chat template (llama-cpp-python's sandboxed Jinja)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.model.meta("tokenizer.chat_template")
        if not template:
            raise PaintersError(
                f"{self.model.path.name} has no chat template (tokenizer.chat_template): drop --apply_chat_template"
            )
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self.model.token_text(self.model.eos) if self.model.eos >= 0 else "",
            bos_token=self.model.token_text(self.model.bos) if self.model.bos >= 0 else "",
            add_generation_prompt=add_generation_prompt,
        )
        return formatter(messages=chat_history).prompt  # type: ignore[arg-type]  # OpenAI's message dicts

    # scoring

    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """Each task's requests grouped by document in document order, as eval packs them."""
        by_task: dict[object, dict[object, list[int]]] = collections.defaultdict(lambda: collections.defaultdict(list))
        for i, request in enumerate(requests):
            document = request.doc_id if request.doc_id is not None else ("request", i)
            by_task[request.task_name][document].append(i)
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        for documents in by_task.values():
            order = sorted(documents, key=_document_order)
            groups = [[LoglikelihoodRequest(*requests[i].args) for i in documents[d]] for d in order]
            for document, group_results in zip(order, self.scorer.score_all(groups), strict=True):
                for i, result in zip(documents[document], group_results, strict=True):
                    results[i] = (result.loglikelihood, result.is_greedy)
        scored = [r for r in results if r is not None]
        assert len(scored) == len(requests), "score_all returns every group's results"  # never shifted silently
        return scored

    def _loglikelihood_tokens(
        self,
        requests: Sequence[Any],
        disable_tqdm: bool = False,
        **kwargs: Any,  # noqa: ANN401
    ) -> list[tuple[float, bool]]:
        """Requests in tokens, one at a time (lm-eval's own callers of this: none but TemplateLM's)."""
        groups: list[list[LoglikelihoodRequest | TokensRequest]] = [
            [TokensRequest(tuple(ctx), tuple(cont))] for _, ctx, cont in requests
        ]
        return [(r.loglikelihood, r.is_greedy) for (r,) in self.scorer.score_all(groups)]

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        """A whole text's log-likelihood through lm-eval's rolling windows of max_length tokens."""
        totals = []
        for request in requests:
            (text,) = request.args
            windows = [
                make_disjoint_window(window)
                for window in get_rolling_token_windows(
                    token_list=self.model.tokenize(text),
                    prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length,
                    context_len=1,
                )
            ]
            groups: list[list[LoglikelihoodRequest | TokensRequest]] = [
                [TokensRequest(tuple(ctx), tuple(cont))] for ctx, cont in windows
            ]
            totals.append(sum(r.loglikelihood for (r,) in self.scorer.score_all(groups)))
        return totals

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        """Greedy generation through the KV cache until a stop string, end of text or max_gen_toks."""
        replies = []
        for request in requests:
            context, gen_kwargs = request.args
            if gen_kwargs.get("do_sample") or float(gen_kwargs.get("temperature") or 0) > 0:
                raise PaintersError(f"task {request.task_name}: generation here is greedy only (do_sample/temperature asked)")
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_tokens = int(gen_kwargs.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS))
            replies.append(self.scorer.generate(context, until=until, max_tokens=max_tokens))
        return replies


def _document_order(document: object) -> tuple[int, int]:
    return (0, document) if isinstance(document, int) else (1, document[1])  # type: ignore[index]


model_registry.register(NAME, target=PaintersLM)
