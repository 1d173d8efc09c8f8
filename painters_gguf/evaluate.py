"""Score plans on tasks through the results store: finished documents are reused, new ones are
committed as they finish, and every aggregate is computed from exactly the documents asked for.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from painters_gguf import metrics, variants
from painters_gguf.data import load_split
from painters_gguf.engine.packing import PACKING
from painters_gguf.errors import PaintersError
from painters_gguf.plan import Plan
from painters_gguf.requests import Generation, LoglikelihoodRequest, LoglikelihoodResult
from painters_gguf.store import RunKey, Store
from painters_gguf.tasks.base import Task

if TYPE_CHECKING:
    from painters_gguf.engine.scoring import Scorer

Progress = Callable[[int], None]  # called with the number of documents just finished


@dataclasses.dataclass
class Settings:
    """What changes a task's results (part of the store key), besides model, plan and task."""

    num_fewshot: int | None = None  # None: the task's default (lm-eval's)
    n_ctx: int = 2048  # --n-ctx: longer requests are truncated from the left
    add_bos: bool | None = None  # None: default_add_bos(the model's architecture)
    batch_size: int = 256  # tokens per decode: which documents share a batch changes quantized numerics
    n_gpu_layers: int = 0  # the backend changes the numerics too (-1: all)
    flash_attn: str = "auto"  # "auto", "on" or "off": another attention kernel, other numerics

    def shots(self, task: Task) -> int:
        return task.num_fewshot if self.num_fewshot is None else self.num_fewshot

    def for_model(self, arch: str, n_layer: int) -> Settings:
        """These settings for a model: add_bos decided by its architecture, and GPU layers that
        mean the same written the same (-1, and any count from n_layer + 1 up, are all layers)."""
        add_bos = default_add_bos(arch) if self.add_bos is None else self.add_bos
        # llama.cpp offloads n_layer blocks and the output layer: n_layer + 1 and more is all of them
        n_gpu_layers = -1 if self.n_gpu_layers < 0 or self.n_gpu_layers > n_layer else self.n_gpu_layers
        return dataclasses.replace(self, add_bos=add_bos, n_gpu_layers=n_gpu_layers)

    @classmethod
    def from_key(cls, key: dict) -> Settings:
        """The settings a stored key was written with (the inverse of key())."""
        return cls(
            num_fewshot=key["num_fewshot"],
            n_ctx=key["n_ctx"],
            add_bos=key["add_bos"],
            batch_size=key["batch_size"],
            n_gpu_layers=key["n_gpu_layers"],
            flash_attn=key.get("flash_attn", "auto"),
        )

    def key(self, task: Task) -> dict:
        assert self.add_bos is not None, "settings used before for_model()"
        return {
            "num_fewshot": self.shots(task),
            "n_ctx": self.n_ctx,
            "add_bos": self.add_bos,
            "batch_size": self.batch_size,
            "n_gpu_layers": self.n_gpu_layers,
            "packing": PACKING,
            # only when not the default, so that stores written before the option keep their keys
            **({"flash_attn": self.flash_attn} if self.flash_attn != "auto" else {}),
        }


def _usable(task: Task, result: dict) -> bool:
    """A stored document holds every metric as a finite number, and what its sample log shows."""
    values = [result.get(metric.name) for metric in task.metrics]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        return False
    if task.generation:
        return isinstance(result.get("generated"), str)
    lls, greedy = result.get("loglikelihoods"), result.get("is_greedy")
    return isinstance(lls, list) and isinstance(greedy, list) and len(lls) == len(greedy)


def default_add_bos(arch: str) -> bool:
    """Whether requests start with BOS unless told: as lm-eval does for HF causal models, no,
    except for Gemma models, which it gives a BOS (they are not usable without one)."""
    return arch.startswith("gemma")


@dataclasses.dataclass
class PreparedTask:
    """A task's documents, the ones this run scores, and each one's prompt context."""

    task: Task
    docs: list[dict]
    indices: list[int]
    contexts: dict[int, str]
    examples: list[list[dict]]  # few-shot examples of every document of the split
    stored_baselines: dict[int, float] | None = None  # from the store alone (no data): each document's baseline

    def context_of(self, index: int) -> str:
        if index not in self.contexts:
            self.contexts[index] = self.task.context(self.docs[index], self.examples[index])
        return self.contexts[index]

    def loglikelihood_requests(self, n: int) -> list[list[LoglikelihoodRequest]]:
        """The requests of the split's first n documents (packed in this order, from the first)."""
        return [self.task.requests(self.docs[i], self.context_of(i)) for i in range(n)]  # type: ignore[misc]

    def scored(self, finished: Sequence[int], results: Sequence[list[LoglikelihoodResult]]) -> list[tuple[int, dict]]:
        """Finished documents scored from their requests' results: (index, stored result)."""
        return [(g, self.task.score(self.docs[g], res)) for g, res in zip(finished, results, strict=True)]

    def generate(self, scorer: Scorer, index: int) -> dict:
        """A generation task's document, generated greedily and scored: its stored result."""
        request = self.task.requests(self.docs[index], self.context_of(index))
        assert isinstance(request, Generation)
        text = scorer.generate(request.context, until=request.until, max_tokens=request.max_tokens)
        return self.task.score(self.docs[index], text)

    @property
    def baseline(self) -> float:
        if self.stored_baselines is not None:
            return metrics.mean([self.stored_baselines[i] for i in self.indices])
        return metrics.mean([self.task.baseline(self.docs[i]) for i in self.indices])


def prepare(task: Task, data_dir: Path, limit: int | float | None, settings: Settings) -> PreparedTask:
    docs = task.process_docs(load_split(data_dir, task.eval_split, task.check_row))
    indices = task.limit_indices(docs, limit)
    shots = settings.shots(task)
    pool: list[dict] = []
    if shots > 0:
        assert task.fewshot_split is not None
        pool = task.process_docs(load_split(data_dir, task.fewshot_split, task.check_row))
    # the few-shot draws depend on a document's place in the whole split, never on --limit
    examples = task.fewshot_examples(docs, pool, shots)
    return PreparedTask(task, docs, indices, {i: task.context(docs[i], examples[i]) for i in indices}, examples)


@dataclasses.dataclass
class TaskScores:
    task: Task
    n_docs: int
    scores: dict[str, tuple[float, float | None]]  # metric -> (score, stderr)
    results: dict[int, dict]  # doc index -> stored per-document result


class Evaluator:
    """One model, one scorer; runs plans over prepared tasks through the store."""

    def __init__(self, scorer: Scorer, store: Store, settings: Settings) -> None:
        self.scorer = scorer
        self.store = store
        self.model = scorer.model
        self.settings = settings.for_model(self.model.arch, self.model.n_layer)
        self.full_plan = variants.full(self.model.n_layer)
        self.notes: list[str] = []  # what a user should hear about: damaged stored documents scored again

    @functools.cached_property
    def machine(self) -> dict[str, str]:
        """This machine, as every document scored here records it."""
        from painters_gguf.machine import describe

        return describe()

    def run_key(self, plan: Plan, task: Task) -> RunKey:
        return RunKey(
            model_sha256=self.model.sha256,
            model_name=self.model.path.name,
            plan=plan.text,
            task=task.name,
            task_version=task.version,
            settings=self.settings.key(task),
        )

    def todo(self, plan: Plan, prepared: PreparedTask) -> int:
        """Documents still to score (a count from the store: nothing is read or written)."""
        run_id = self.store.find_run(self.run_key(plan, prepared.task))
        done = self.store.doc_indices(run_id) if run_id is not None else set()
        return sum(1 for i in prepared.indices if i not in done)

    def _stored(self, run_id: int, task: Task) -> tuple[dict[int, dict], list[int]]:
        """The run's usable documents, and the damaged ones: not a JSON object, or a metric of the
        task missing or not a finite number (a store edited or written by something else)."""
        results, damaged = self.store.results(run_id)
        for index, result in list(results.items()):
            if not _usable(task, result):
                damaged.append(index)
                del results[index]
        return results, sorted(damaged)

    def open_run(self, plan: Plan, prepared: PreparedTask) -> tuple[int, dict[int, dict], list[int]]:
        """The store's run of a plan on a task, its usable documents, and those it still needs.
        Damaged stored documents are forgotten (to be scored again), with a note."""
        task = prepared.task
        run_id = self.store.run_id(self.run_key(plan, task))
        done, damaged = self._stored(run_id, task)
        if damaged:
            self.store.discard(run_id, damaged)
            shown = ", ".join(map(str, damaged[:5])) + (", ..." if len(damaged) > 5 else "")
            where = f"run {run_id}, documents {shown}"
            self.notes.append(f"{task.name}, plan {plan.text}: {len(damaged)} damaged stored documents ({where}) scored again")
        return run_id, done, [i for i in prepared.indices if i not in done]

    def open_runs(self, plans: Sequence[Plan], prepared: PreparedTask) -> dict[Plan, tuple[int, list[int]]]:
        """`open_run` for the full model and each plan (once each): plan -> (run id, documents to do)."""
        runs = {}
        for plan in dict.fromkeys([self.full_plan, *plans]):
            run_id, _, todo = self.open_run(plan, prepared)
            runs[plan] = (run_id, todo)
        return runs

    def requests(self, prepared: PreparedTask, todo: Sequence[int]) -> list[list[LoglikelihoodRequest]]:
        """The log-likelihood requests of the split's documents from the first up to those that
        close the last batch holding a `todo` document: packed from the first document, as a
        full run would, so that every document lands in the same batch whatever is done."""
        # a batch holds at most n_seq_max documents: this many more close the last needed batch
        return prepared.loglikelihood_requests(min(len(prepared.docs), max(todo) + self.scorer.n_seq_max + 1))

    def run(self, plan: Plan, prepared: PreparedTask, progress: Progress = lambda n: None) -> TaskScores:
        task = prepared.task
        run_id, done, todo = self.open_run(plan, prepared)
        if todo:
            self.scorer.set_plan(plan)
            if task.generation:
                self._generate(run_id, prepared, todo, progress)
            else:
                self._loglikelihoods(run_id, prepared, todo, progress)
            done, _ = self._stored(run_id, task)
        return self._scores(prepared, done)

    def stored(self, plan: Plan, prepared: PreparedTask) -> TaskScores | None:
        """The scores if the store has every document asked for; computes and writes nothing."""
        run_id = self.store.find_run(self.run_key(plan, prepared.task))
        if run_id is None:
            return None
        done, _ = self._stored(run_id, prepared.task)
        return self._scores(prepared, done) if all(i in done for i in prepared.indices) else None

    def stored_prefix(self, plan: Plan, prepared: PreparedTask) -> int:
        """The largest L such that the store holds the plan's first L documents of the task (the
        --limit under which it was scored, or more); reads no results."""
        run_id = self.store.find_run(self.run_key(plan, prepared.task))
        held = self.store.doc_indices(run_id) if run_id is not None else set()
        low, high = 0, len(prepared.docs)
        while low < high:  # the first L are held for every L up to the answer, and for none past it
            middle = (low + high + 1) // 2
            if held.issuperset(prepared.task.limit_indices(prepared.docs, middle)):
                low = middle
            else:
                high = middle - 1
        return low

    def prepared_from_store(self, task: Task, limit: int | float | None) -> PreparedTask:
        """What `report` needs of a task whose benchmark files are not here: the documents the
        store holds for the full model (under these settings), each one's baseline from its stored
        result; they can be shown, not scored."""
        run_id = self.store.find_run(self.run_key(self.full_plan, task))
        done = self._stored(run_id, task)[0] if run_id is not None else {}
        if not done:
            raise PaintersError(f"{task.name}: no benchmark file here and nothing in the store under these settings")
        if task.name == "mmlu":
            raise PaintersError("mmlu: report reads its subjects from its benchmark files: give --data-dir")
        docs: list[dict] = [{} for _ in range(max(done) + 1)]
        indices = [i for i in task.limit_indices(docs, limit) if i in done]
        baselines = {i: task.stored_baseline(result) for i, result in done.items()}
        return PreparedTask(task, docs, indices, {}, [[] for _ in docs], baselines)

    def adopt_stored_settings(self, prepared: Sequence[PreparedTask]) -> str | None:
        """When the store holds no full-model results with these settings but holds them with one
        other set, use that one (report computes nothing: only the key changes); says which."""
        if any(self.stored(self.full_plan, prep) is not None for prep in prepared):
            return None
        found = {
            json.dumps(settings, sort_keys=True): settings
            for prep in prepared
            for settings in self.store.settings_with_results(self.model.sha256, self.full_plan.text, prep.task.name)
            if settings.get("packing") == PACKING
        }
        current = {json.dumps(self.settings.key(prep.task), sort_keys=True) for prep in prepared}
        if len(found) != 1 or set(found) <= current:  # several to choose from, or these (with other documents)
            return None
        key = next(iter(found.values()))
        try:
            stored = Settings.from_key(key)
        except (KeyError, TypeError):
            return None  # written by something else
        shown = ", ".join(f"{k}={v}" for k, v in sorted(key.items()) if k != "packing")
        self.settings = stored
        return f"no results with the settings given; showing those the store holds: {shown}"

    @staticmethod
    def _scores(prepared: PreparedTask, done: dict[int, dict]) -> TaskScores:
        results = {i: done[i] for i in prepared.indices}
        scores = {
            metric.name: metrics.aggregate(metric.aggregation, [results[i][metric.name] for i in prepared.indices])
            for metric in prepared.task.metrics
        }
        return TaskScores(prepared.task, len(prepared.indices), scores, results)

    def _loglikelihoods(self, run_id: int, prepared: PreparedTask, todo: Sequence[int], progress: Progress) -> None:
        """Decode only the batches with documents still to do, and store every document they finish."""
        wanted = set(todo)
        start = time.perf_counter()
        for finished, results in self.scorer.loglikelihoods(self.requests(prepared, todo), needed=wanted):
            now = time.perf_counter()
            self.store_results(run_id, prepared, finished, results, now - start)
            start = now
            progress(sum(1 for g in finished if g in wanted))

    def store_results(
        self,
        run_id: int,
        prepared: PreparedTask,
        finished: Sequence[int],
        results: Sequence[list[LoglikelihoodResult]],
        seconds: float,
    ) -> None:
        """Score finished documents from their requests' results and commit them, as scored here."""
        self.store.add(run_id, prepared.scored(finished, results), seconds, self.machine)

    def _generate(self, run_id: int, prepared: PreparedTask, todo: Sequence[int], progress: Progress) -> None:
        for i in todo:
            start = time.perf_counter()
            result = prepared.generate(self.scorer, i)
            self.store.add(run_id, [(i, result)], time.perf_counter() - start, self.machine)
            progress(1)
