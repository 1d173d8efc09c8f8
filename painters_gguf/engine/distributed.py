"""Sweeps across machines on Ray: workers score, the driver alone writes the store.

The driver lists the work not yet in the store as units: a task's consecutive decode batches, with
the plans that still need documents in them (a generation task: a plan and a few documents). Ray
actors, one per worker slot, each load the model once and score units with the same packing and
the same shared-prefix path as a local sweep, so the numbers are the same on the same machine.
Each unit's documents come back to the driver, which commits them with the machine that scored
them. A unit whose worker dies is given to another worker; a driver killed and rerun finds the
finished units in the store and lists only the rest.

    score_on_ray(evaluator, plans, prepared, RayCompute("auto", ...), progress)   # Engine.score does this
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from painters_gguf.engine import RayCompute
from painters_gguf.engine.scoring import Unit
from painters_gguf.errors import PaintersError
from painters_gguf.evaluate import Evaluator, PreparedTask, Progress, Settings, prepare
from painters_gguf.plan import Plan

if TYPE_CHECKING:
    from ray import ObjectRef
    from ray.actor import ActorClass, ActorHandle

# decode batches per unit (each for every plan that needs it): seconds of work on a small model
UNIT_BATCHES = 2
# documents per unit of a generation task
UNIT_GENERATIONS = 4
# tries of a unit whose worker died before it is given up
MAX_ATTEMPTS = 3
# seconds for Ray to place and set up the workers (a model download and load included)
START_TIMEOUT = 900


@dataclasses.dataclass(frozen=True)
class Job:
    """What every worker needs to set itself up as the driver is: the model (a path every worker
    can read, or a catalog name each fetches and checks), its sha256, the data, the settings."""

    model: str | None  # None: the catalog's default
    model_sha256: str
    data: str
    tasks: tuple[tuple[str, str], ...]  # (task name, digest of its documents: docs_digest)
    limit: int | float | None  # a count, or below 1 a fraction (lm-eval's --limit)
    settings: Settings
    threads: int


def docs_digest(prepared: PreparedTask) -> str:
    """A digest of a task's documents and few-shot examples as read: a worker with other data refuses."""
    text = json.dumps([prepared.docs, prepared.examples], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class WorkUnit:
    """A task's batches (first, last) of its first `n_groups` documents packed in order, or, for a
    generation task, `docs`; each plan (text) with the documents it still needs there."""

    task: str
    n_groups: int
    batches: tuple[int, ...]
    todo: tuple[tuple[str, tuple[int, ...]], ...]
    attempt: int = 1

    @property
    def size(self) -> int:
        return sum(len(docs) for _, docs in self.todo)


@dataclasses.dataclass
class UnitResult:
    """A unit's documents per plan text: [(doc index, stored result)], with the seconds spent and
    the machine that scored them."""

    task: str
    documents: dict[str, list[tuple[int, dict]]]
    seconds: dict[str, float]
    machine: dict[str, str]


class Worker:
    """Scores units on one worker slot; the model is loaded once (a Ray actor). `ready()` sets it
    up, so that a worker that cannot (another model file, other data) says why as a task error."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def ready(self) -> bool:
        """Load the model and the tasks, checked against the driver's."""
        from painters_gguf.engine.scoring import Scorer
        from painters_gguf.fetch import file_sha256, resolve_model
        from painters_gguf.machine import describe
        from painters_gguf.runtime import Model
        from painters_gguf.tasks import TASKS

        job = self.job
        host = describe()["host"]
        path = resolve_model(job.model, log=lambda line: None)
        if file_sha256(path) != job.model_sha256:  # checked before llama.cpp reads it
            raise PaintersError(f"{path} on {host} is not the driver's model file (its sha256 differs)")
        self.model = Model(path, n_gpu_layers=job.settings.n_gpu_layers)
        settings = job.settings
        self.scorer = Scorer(
            self.model,
            n_ctx=settings.n_ctx,
            n_batch=settings.batch_size,
            threads=job.threads,
            add_bos=bool(settings.add_bos),
            flash_attn=settings.flash_attn,
        )
        self.prepared = {name: prepare(TASKS[name], Path(job.data), job.limit, settings) for name, _ in job.tasks}
        for name, digest in job.tasks:
            if docs_digest(self.prepared[name]) != digest:
                raise PaintersError(f"{name}: the data in {job.data} on {host} is not the driver's (other documents)")
        self.machine = describe()
        self.n_layer = self.model.n_layer
        self._packings: dict[tuple[str, int], tuple[list, list[list[Unit]]]] = {}
        return True

    def _packed(self, task_name: str, n_groups: int) -> tuple[list, list[list[Unit]]]:
        """The first n_groups documents' requests and their decode batches, packed once per worker."""
        key = (task_name, n_groups)
        if key not in self._packings:
            groups = self.prepared[task_name].loglikelihood_requests(n_groups)
            self._packings[key] = (groups, self.scorer.batches(groups))
        return self._packings[key]

    def score(self, unit: WorkUnit) -> UnitResult:
        import time

        from painters_gguf import variants
        from painters_gguf.engine import shared_prefix

        prep = self.prepared[unit.task]
        task = prep.task
        plans = {Plan.parse(text).check(self.n_layer): set(docs) for text, docs in unit.todo}
        result = UnitResult(unit.task, {text: [] for text, _ in unit.todo}, {text: 0.0 for text, _ in unit.todo}, self.machine)
        if task.generation:
            for plan, docs in plans.items():
                self.scorer.set_plan(plan)
                for i in sorted(docs):
                    start = time.perf_counter()
                    result.documents[plan.text].append((i, prep.generate(self.scorer, i)))
                    result.seconds[plan.text] += time.perf_counter() - start
            return result
        groups, batches = self._packed(unit.task, unit.n_groups)
        runs = shared_prefix.plan_runs(plans, variants.full(self.n_layer), groups)
        for run, finished, results, seconds in shared_prefix.score_batches(self.scorer, runs, batches, unit.batches):
            result.documents[run.plan.text] += prep.scored(finished, results)
            result.seconds[run.plan.text] += seconds
        return result


def units(evaluator: Evaluator, plans: Sequence[Plan], prepared: Sequence[PreparedTask]) -> tuple[list[WorkUnit], dict]:
    """The work not yet in the store, and the run id of every (plan text, task) it fills."""
    from painters_gguf.engine import shared_prefix

    work: list[WorkUnit] = []
    run_ids: dict[tuple[str, str], int] = {}
    for prep in prepared:
        runs = evaluator.open_runs(plans, prep)
        run_ids.update({(plan.text, prep.task.name): run_id for plan, (run_id, _) in runs.items()})
        todo = {plan: docs for plan, (_, docs) in runs.items() if docs}
        if not todo:
            continue
        if prep.task.generation:
            for plan, docs in todo.items():
                for lo in range(0, len(docs), UNIT_GENERATIONS):
                    chunk = tuple(docs[lo : lo + UNIT_GENERATIONS])
                    work.append(WorkUnit(prep.task.name, 0, (), ((plan.text, chunk),)))
            continue
        groups, batches, needed = shared_prefix.packed(evaluator, prep, todo)
        todo_sets = {plan: set(docs) for plan, docs in todo.items()}
        for chosen in _batch_runs(batches, needed):
            in_batches = {seq.slot[0] for b in chosen for unit in batches[b] for seq in unit.sequences}
            needs = tuple((plan.text, tuple(sorted(in_batches & docs))) for plan, docs in todo_sets.items())
            work.append(WorkUnit(prep.task.name, len(groups), tuple(chosen), tuple(n for n in needs if n[1])))
    return work, run_ids


def _batch_runs(batches: Sequence[Sequence[Unit]], needed: Sequence[int]) -> list[list[int]]:
    """The needed batches cut into units of about UNIT_BATCHES, never between two batches that
    share a document (one too long to share its prefix is split into a unit per request)."""
    cuts: list[list[int]] = []
    for b in needed:
        groups = {seq.slot[0] for unit in batches[b] for seq in unit.sequences}
        previous = cuts[-1][-1] if cuts else None
        joined = previous is not None and groups & {seq.slot[0] for unit in batches[previous] for seq in unit.sequences}
        if cuts and (joined or len(cuts[-1]) < UNIT_BATCHES):
            cuts[-1].append(b)
        else:
            cuts.append([b])
    return cuts


def ray_workers(resources: dict[str, float], asked: int | None, threads: int, *, gpu: bool) -> int:
    """Workers the cluster has room for: `threads` CPUs each (and a GPU each with layers on one)."""
    room = int(resources.get("CPU", 0) // threads)
    if gpu:
        room = min(room, int(resources.get("GPU", 0)))
    if room < 1:
        need = f"{threads} CPUs" + (" and a GPU" if gpu else "")
        raise PaintersError(f"--ray: the cluster has no room for a worker of {need}")
    if asked is not None and asked > room:
        raise PaintersError(f"--ray-workers {asked}: the cluster has room for {room} workers of --threads {threads}")
    return asked or room


def score_on_ray(
    evaluator: Evaluator,
    plans: Sequence[Plan],
    prepared: Sequence[PreparedTask],
    where: RayCompute,
    progress: Callable[[Plan, PreparedTask], Progress],
) -> None:
    """Start Ray (`where.address`), score the plans there, commit what comes back, stop Ray."""
    import logging

    try:
        import ray
    except ImportError:
        raise PaintersError("--ray needs Ray: pip install 'painters-gguf[ray]'") from None
    tasks = tuple((prep.task.name, docs_digest(prep)) for prep in prepared)
    job = Job(
        where.model, evaluator.model.sha256, str(where.data.resolve()), tasks, where.limit, evaluator.settings, where.threads
    )
    try:
        ray.init(address=where.address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise PaintersError(f"--ray {where.address}: {error}") from None
    try:
        resources = ray.cluster_resources()
        workers = ray_workers(resources, where.workers, where.threads, gpu=where.n_gpu_layers != 0)
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        hosts = ", ".join(sorted({str(node.get("NodeManagerAddress")) for node in nodes}))
        where.log(
            f"Ray {ray.__version__} ({where.address}): {len(nodes)} node(s) at {hosts}, {int(resources.get('CPU', 0))} CPUs; "
            f"up to {workers} workers of {where.threads} threads, each with the model loaded; the store stays here"
        )
        by_name = {(plan.text, prep.task.name): (plan, prep) for plan in plans for prep in prepared}

        def on_unit(unit: WorkUnit, result: UnitResult) -> None:
            for text, docs in unit.todo:
                progress(*by_name[text, unit.task])(len(docs))

        run(evaluator, plans, prepared, job, workers=workers, on_unit=on_unit)
    finally:
        ray.shutdown()


def run(
    evaluator: Evaluator,
    plans: Sequence[Plan],
    prepared: Sequence[PreparedTask],
    job: Job,
    *,
    workers: int,
    on_unit: Callable[[WorkUnit, UnitResult], None] = lambda unit, result: None,
) -> None:
    """Score the plans and the full model on the tasks on Ray workers (Ray initialised by the
    caller), committing each finished unit to the store here."""
    import ray
    from ray.exceptions import RayActorError, RayError, RayTaskError, WorkerCrashedError

    work, run_ids = units(evaluator, plans, prepared)
    if not work:
        return
    actor_class: Any = ray.remote(num_cpus=job.threads, num_gpus=1 if job.settings.n_gpu_layers else 0)(Worker)
    pending = list(reversed(work))  # popped from the end: in order
    busy: dict[ObjectRef, tuple[WorkUnit, ActorHandle]] = {}  # result ref -> (unit, actor)

    def give(actor: ActorHandle) -> None:
        if pending:
            unit = pending.pop()
            busy[actor.score.remote(unit)] = (unit, actor)

    for actor in _start(actor_class, job, min(workers, len(work))):
        give(actor)
    while busy:
        ready, _ = ray.wait(list(busy), num_returns=1)
        unit, actor = busy.pop(ready[0])
        try:
            result: UnitResult = ray.get(ready[0])
        except (RayActorError, WorkerCrashedError) as err:  # the worker died: the unit goes to another
            if unit.attempt >= MAX_ATTEMPTS:
                raise PaintersError(
                    f"a unit of {unit.task} failed {unit.attempt} times, its worker dying: {_last_line(err)}"
                ) from None
            pending.append(dataclasses.replace(unit, attempt=unit.attempt + 1))  # next
            ray.kill(actor)
            give(_start(actor_class, job, 1)[0])
            continue
        except RayTaskError as err:  # the worker raised: the same error here, one line
            raise PaintersError(_last_line(err)) from None
        except RayError as err:  # anything else Ray reports (a node lost, out of memory)
            raise PaintersError(f"Ray: {_last_line(err)}") from None
        _commit(evaluator, unit, result, run_ids)
        on_unit(unit, result)
        give(actor)


def _start(actor_class: ActorClass, job: Job, n: int) -> list[Any]:
    """n new workers, each with the model loaded; a worker that cannot set up is an error here."""
    import ray
    from ray.exceptions import GetTimeoutError, RayError

    actors = [actor_class.remote(job) for _ in range(n)]
    try:
        ray.get([actor.ready.remote() for actor in actors], timeout=START_TIMEOUT)
    except GetTimeoutError:
        need = f"{job.threads} CPUs" + (" and a GPU" if job.settings.n_gpu_layers else "")
        raise PaintersError(
            f"Ray placed fewer than {n} workers of {need} each within {START_TIMEOUT} s: use fewer --ray-workers"
        ) from None
    except RayError as err:
        raise PaintersError(f"a Ray worker could not start: {_last_line(err)}") from None
    return actors


def _commit(evaluator: Evaluator, unit: WorkUnit, result: UnitResult, run_ids: dict[tuple[str, str], int]) -> None:
    """Store a unit's documents, once every one it was given is there."""
    for text, docs in unit.todo:
        returned = {i for i, _ in result.documents.get(text, [])}
        if not set(docs) <= returned:
            raise PaintersError(
                f"a worker returned {unit.task} under plan {text} without documents {sorted(set(docs) - returned)}"
            )
    for text, documents in result.documents.items():
        evaluator.store.add(run_ids[text, result.task], documents, result.seconds[text], result.machine)


def _last_line(err: Exception) -> str:
    """A Ray error's cause, as one line."""
    cause = getattr(err, "cause", None)
    lines = str(cause if isinstance(cause, Exception) else err).strip().splitlines()
    return lines[-1] if lines else type(err).__name__
