"""Results as lm-evaluation-harness writes them: the results JSON and the per-document samples log."""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path

from painters_gguf import __version__, metrics, outputs
from painters_gguf.evaluate import PreparedTask, Settings, TaskScores
from painters_gguf.plan import Plan
from painters_gguf.tasks.base import MultipleChoiceTask, Task
from painters_gguf.tasks.mmlu import CATEGORIES, SUBJECT_CATEGORY


def metric_key(name: str) -> tuple[str, str]:
    """'exact_match,strict-match' -> ('exact_match', 'strict-match'); 'acc' -> ('acc', 'none')."""
    metric, _, filter_name = name.partition(",")
    return metric, filter_name or "none"


def lm_eval_block(scores: TaskScores) -> dict:
    block: dict[str, object] = {"alias": scores.task.name}
    for name, (value, stderr) in scores.scores.items():
        metric, filter_name = metric_key(name)
        block[f"{metric},{filter_name}"] = value
        block[f"{metric}_stderr,{filter_name}"] = "N/A" if stderr is None else stderr
    return block


def git_hash() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def output_type(task: Task) -> str:
    """lm-eval's name for how a task is scored."""
    if task.generation:
        return "generate_until"
    return "multiple_choice" if isinstance(task, MultipleChoiceTask) else "loglikelihood"


def _config(prep: PreparedTask, shots: int) -> dict:
    """A task's entry in lm-eval's `configs`: where its data comes from and how it is scored."""
    task, split = prep.task, prep.task.eval_split
    return {
        "task": task.name,
        "dataset_path": split.hf_path,
        "dataset_name": split.hf_name,
        "test_split": split.split,
        "fewshot_split": task.fewshot_split.split if task.fewshot_split is not None else None,
        "num_fewshot": shots,
        "output_type": output_type(task),
        "target_delimiter": task.target_delimiter,
        "fewshot_delimiter": task.fewshot_delimiter,
        "metric_list": [
            {"metric": metric_key(m.name)[0], "aggregation": m.aggregation, "higher_is_better": m.higher_is_better}
            for m in task.metrics
        ],
        "metadata": {"version": task.version},
    }


def _mmlu_groups(prep: PreparedTask, scores: TaskScores) -> tuple[dict[str, dict], dict[str, dict], dict[str, list[str]]]:
    """MMLU as lm-eval reports it: each subject a task (mmlu_<subject>), the four category groups
    and mmlu, each group the size-weighted mean of its subjects with lm-eval's pooled standard error."""
    by_subject: dict[str, list[float]] = {}
    for i in prep.indices:
        by_subject.setdefault(prep.docs[i]["subject"], []).append(scores.results[i]["acc"])
    subjects: dict[str, dict] = {}
    members: dict[str, list[str]] = {f"mmlu_{c}": [] for c in CATEGORIES}
    for subject in sorted(by_subject):
        values = by_subject[subject]
        category = f"mmlu_{SUBJECT_CATEGORY.get(subject, 'other')}"
        members[category].append(f"mmlu_{subject}")
        subjects[f"mmlu_{subject}"] = _acc_block(f"  - {subject}", statistics.fmean(values), _stderr(values), len(values))
    groups: dict[str, dict] = {}
    for category in list(members):
        if not members[category]:
            del members[category]
            continue
        groups[category] = _pooled(f" - {category[5:]}", [subjects[s] for s in members[category]])
    groups = {"mmlu": _pooled("mmlu", [subjects[s] for names in members.values() for s in names]), **groups}
    return subjects, groups, {"mmlu": list(members), **members}


def _stderr(values: Sequence[float]) -> float | None:
    return metrics.mean_stderr(values) if len(values) > 1 else None


def _acc_block(alias: str, value: float, stderr: float | None, n: int) -> dict:
    return {"alias": alias, "acc,none": value, "acc_stderr,none": "N/A" if stderr is None else stderr, "samples": n}


def _pooled(alias: str, blocks: Sequence[dict]) -> dict:
    """A group: the size-weighted mean of its members' acc, and the pooled sample standard error
    sqrt(sum((n_i - 1) n_i se_i^2) / (N - k) / N) that lm-eval reports for size-weighted groups."""
    sizes = [b["samples"] for b in blocks]
    total = sum(sizes)
    value = sum(b["acc,none"] * n for b, n in zip(blocks, sizes, strict=True)) / total
    errors = [b["acc_stderr,none"] for b in blocks]
    stderr: float | str = "N/A"  # as lm-eval: unknown when a member's is (a subject of one question)
    if total > len(blocks) and "N/A" not in errors:
        variance = sum((n - 1) * se**2 * n for n, se in zip(sizes, errors, strict=True)) / (total - len(blocks))
        stderr = math.sqrt(variance / total)
    return {"alias": alias, "acc,none": value, "acc_stderr,none": stderr, "samples": total}


def _results(prepared: Sequence[PreparedTask], scores: Sequence[TaskScores]) -> tuple[dict, dict, dict]:
    """lm-eval's results, groups and group_subtasks for one plan's scores."""
    results: dict[str, dict] = {}
    groups: dict[str, dict] = {}
    subtasks: dict[str, list[str]] = {}
    for prep, s in zip(prepared, scores, strict=True):
        if prep.task.name == "mmlu":
            subjects, mmlu_groups, mmlu_subtasks = _mmlu_groups(prep, s)
            groups.update(mmlu_groups)
            subtasks.update(mmlu_subtasks)
            results.update({**mmlu_groups, **subjects})
        else:
            results[prep.task.name] = lm_eval_block(s)
    return results, groups, subtasks


def eval_config(
    model: Path,
    model_sha256: str,
    plan: Plan,
    plan_spec: str,
    n: int,
    seed: int,
    iters: int,
    limit: int | float | None,
    settings: Settings,
    prepared: Sequence[PreparedTask],
) -> dict:
    """The `config` of eval's results JSON: what was run, with which settings (as lm-eval names them)."""
    return {
        "model": str(model),
        "model_sha256": model_sha256,
        "plan": plan.text,
        "plan_spec": plan_spec,
        "n": n,
        "seed": seed,
        "iters": iters,
        "limit": limit,
        "n_ctx": settings.n_ctx,
        "add_bos": settings.add_bos,
        "batch_size": settings.batch_size,
        "num_fewshot": {p.task.name: settings.shots(p.task) for p in prepared},
    }


def results_json(
    prepared: Sequence[PreparedTask],
    plan_scores: Sequence[TaskScores],
    full_scores: Sequence[TaskScores],
    config: dict,
    *,
    model_name: str,
    start_time: float,
    end_time: float,
) -> dict:
    """lm-eval's results layout for the plan, plus the full model's and the normalized scores."""
    normalized: dict[str, dict[str, float | None]] = {}
    for prep, plan_s, full_s in zip(prepared, plan_scores, full_scores, strict=True):
        baseline = prep.baseline
        normalized[prep.task.name] = {
            f"{metric_key(m.name)[0]},{metric_key(m.name)[1]}": (
                metrics.normalized(plan_s.scores[m.name][0], baseline, full_s.scores[m.name][0]) if m.higher_is_better else None
            )
            for m in prep.task.metrics
        }
    results, groups, subtasks = _results(prepared, plan_scores)
    full_results, full_groups, _ = _results(prepared, full_scores)
    shots = {p.task.name: config["num_fewshot"].get(p.task.name, 0) for p in prepared}
    versions: dict[str, object] = {p.task.name: p.task.version for p in prepared}
    if "mmlu" in subtasks:  # the subjects and groups as lm-eval versions them
        versions.update(
            {name: 2 for name in groups} | {name: 1.0 for name in results if name.startswith("mmlu_") and name not in groups}
        )
        shots.update({name: shots["mmlu"] for name in results if name.startswith("mmlu_")})
    return {
        "results": results,
        **({"groups": groups, "group_subtasks": subtasks} if groups else {}),
        "full_model_results": full_results,
        **({"full_model_groups": full_groups} if full_groups else {}),
        "normalized": normalized,
        "baselines": {p.task.name: p.baseline for p in prepared},
        "configs": {p.task.name: _config(p, shots[p.task.name]) for p in prepared},
        "versions": versions,
        "n-shot": shots,
        "higher_is_better": {p.task.name: {metric_key(m.name)[0]: m.higher_is_better for m in p.task.metrics} for p in prepared},
        "n-samples": {p.task.name: {"original": len(p.docs), "effective": len(p.indices)} for p in prepared},
        "config": config,
        "git_hash": git_hash(),
        "date": start_time,
        "model_name": model_name,
        "model_name_sanitized": sanitize(model_name),
        "start_time": start_time,
        "end_time": end_time,
        "total_evaluation_time_seconds": str(end_time - start_time),
        "painters_gguf_version": __version__,
    }


def sanitize(name: str) -> str:
    """A name for a folder or file, as lm-eval sanitizes model names."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)


def sample_records(prepared: PreparedTask, scores: TaskScores) -> list[dict]:
    """Records as lm-eval's --log_samples writes them: one per document, and for a generation task
    one per filter (its filtered response and its metric under the metric's own name)."""
    task = prepared.task
    records = []
    for i in prepared.indices:
        result, doc, context = scores.results[i], prepared.docs[i], prepared.contexts[i]
        target = str(result.get("target"))
        common = {
            "doc_id": i,
            "doc": doc,
            "target": target,
            "doc_hash": _hash(json.dumps(doc, indent=2, ensure_ascii=False)),
            "prompt_hash": _hash(context),
            "target_hash": _hash(target),
        }
        if task.generation:
            arguments = {"gen_args_0": {"arg_0": context, "arg_1": {"until": list(task.until)}}}  # type: ignore[attr-defined]
            for metric in task.metrics:
                name, filter_name = metric_key(metric.name)
                records.append(
                    {
                        **common,
                        "arguments": arguments,
                        "resps": [[result["generated"]]],
                        "filtered_resps": [result["prediction"][filter_name]],
                        "filter": filter_name,
                        "metrics": [name],
                        name: result[metric.name],
                    }
                )
            continue
        request = task.requests(doc, context)
        pairs = [[ll, greedy] for ll, greedy in zip(result["loglikelihoods"], result["is_greedy"], strict=True)]
        records.append(
            {
                **common,
                "arguments": {f"gen_args_{k}": {"arg_0": r.context, "arg_1": r.continuation} for k, r in enumerate(request)},  # type: ignore[arg-type]
                "resps": [[pair] for pair in pairs],
                "filtered_resps": pairs,
                "filter": "none",
                "metrics": [metric_key(m.name)[0] for m in task.metrics],
                "prediction": result.get("prediction"),
                **{m.name: result[m.name] for m in task.metrics},
            }
        )
    return records


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_json(path: Path, data: object) -> None:
    """Valid JSON always (NaN and infinities as null), written whole or not at all."""
    outputs.write_text(path, [outputs.dumps(data, indent=2), "\n"])


def write_samples(path: Path, records: Sequence[dict]) -> None:
    outputs.write_text(path, (outputs.dumps(record) + "\n" for record in records))
