"""Results as lm-evaluation-harness writes them: the results JSON and the per-document samples log."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from painters_gguf import __version__, metrics, outputs
from painters_gguf.evaluate import PreparedTask, TaskScores


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


def results_json(
    prepared: Sequence[PreparedTask],
    plan_scores: Sequence[TaskScores],
    full_scores: Sequence[TaskScores],
    config: dict,
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
    return {
        "results": {s.task.name: lm_eval_block(s) for s in plan_scores},
        "full_model_results": {s.task.name: lm_eval_block(s) for s in full_scores},
        "normalized": normalized,
        "baselines": {p.task.name: p.baseline for p in prepared},
        "versions": {p.task.name: p.task.version for p in prepared},
        "n-shot": {p.task.name: config["num_fewshot"].get(p.task.name, 0) for p in prepared},
        "higher_is_better": {p.task.name: {metric_key(m.name)[0]: m.higher_is_better for m in p.task.metrics} for p in prepared},
        "n-samples": {p.task.name: {"original": len(p.docs), "effective": len(p.indices)} for p in prepared},
        "config": config,
        "git_hash": git_hash(),
        "date": time.time(),
        "painters_gguf_version": __version__,
    }


def sample_records(prepared: PreparedTask, scores: TaskScores) -> list[dict]:
    """One record per document, like lm-eval's --log_samples."""
    task = prepared.task
    records = []
    for i in prepared.indices:
        result = scores.results[i]
        request = task.requests(prepared.docs[i], prepared.contexts[i])
        if task.generation:
            arguments: object = {"context": prepared.contexts[i]}
            resps: object = [result["generated"]]
        else:
            arguments = [[r.context, r.continuation] for r in request]  # type: ignore[union-attr]
            resps = [[ll, greedy] for ll, greedy in zip(result["loglikelihoods"], result["is_greedy"], strict=True)]
        records.append(
            {
                "task": task.name,
                "doc_id": i,
                "target": result.get("target"),
                "arguments": arguments,
                "resps": resps,
                "prediction": result.get("prediction"),
                **{m.name: result[m.name] for m in task.metrics},
            }
        )
    return records


def write_json(path: Path, data: object) -> None:
    """Valid JSON always (NaN and infinities as null), written whole or not at all."""
    outputs.write_text(path, [outputs.dumps(data, indent=2), "\n"])


def write_samples(path: Path, records: Sequence[dict]) -> None:
    outputs.write_text(path, (outputs.dumps(record) + "\n" for record in records))
