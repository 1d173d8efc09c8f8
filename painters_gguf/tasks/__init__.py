"""The benchmark tasks by name (lm-eval's names)."""

from __future__ import annotations

from painters_gguf.errors import PaintersError
from painters_gguf.tasks.arc import ARC_CHALLENGE, ARC_EASY
from painters_gguf.tasks.base import Task
from painters_gguf.tasks.gsm8k import GSM8K_TASK
from painters_gguf.tasks.hellaswag import HELLASWAG
from painters_gguf.tasks.lambada import LAMBADA_OPENAI
from painters_gguf.tasks.mmlu import MMLU_TASK
from painters_gguf.tasks.winogrande import WINOGRANDE

TASKS: dict[str, Task] = {
    task.name: task for task in (ARC_CHALLENGE, ARC_EASY, HELLASWAG, WINOGRANDE, LAMBADA_OPENAI, GSM8K_TASK, MMLU_TASK)
}


def select(spec: str) -> list[Task]:
    """A comma list of task names, or `all`."""
    if spec.strip() == "all":
        return list(TASKS.values())
    chosen = []
    for name in (part.strip() for part in spec.split(",")):
        if name not in TASKS:
            raise PaintersError(f"unknown task {name!r}: use {', '.join(TASKS)} or all")
        if TASKS[name] not in chosen:
            chosen.append(TASKS[name])
    if not chosen:
        raise PaintersError("no task given: use a comma list or all")
    return chosen
