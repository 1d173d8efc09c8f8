"""Bad input through the Python API and the library's validators: a clear PaintersError, never a
crash in C, never a traceback from deeper in; data rows checked by each task's schema (property-
based: a row that passes the checks never fails later)."""

from __future__ import annotations

import errno
import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_llama import TinyConfig, random_weights, write_gguf

from painters_gguf import outputs
from painters_gguf.data import load_split
from painters_gguf.errors import PaintersError
from painters_gguf.memory import parse_size
from painters_gguf.runtime import Batch, Model
from painters_gguf.sweeps import parse_iters
from painters_gguf.tasks import TASKS

# --- the Python API ---


@pytest.fixture()
def model(tiny_gguf: Path):
    with Model(tiny_gguf) as m:
        yield m


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, c: c.eval([m.n_vocab]), "token id 97 is not in 0..96"),
        (lambda m, c: c.eval([-1]), "token id -1 is not in 0..96"),
        (lambda m, c: c.eval([True]), "token id"),
        (lambda m, c: c.eval([1.5]), "token id 1.5"),
        (lambda m, c: c.eval([1, 2], seq_id=-1), "sequence id -1 is not in 0..0"),
        (lambda m, c: c.eval([1], seq_id=1), "sequence id 1 is not in 0..0"),
        (lambda m, c: c.seq_cp(0, 5), "sequence id 5"),
        (lambda m, c: c.eval(list(range(1, 90)) * 4), "do not fit the context"),
        (lambda m, c: c.decode(Batch([1, 2], [0], [(0,)], [True])), "a position, sequence ids and an output flag"),
        (lambda m, c: c.decode(Batch([1], [10**6], [(0,)], [True])), "position 1000000 is not in"),
        (lambda m, c: c.decode(Batch([1], [0], [(0,)], [True], np.zeros((1, m.n_embd), np.float32))), "tokens or embeddings"),
        (lambda m, c: c.decode(Batch([], [0], [(0,)], [True], np.zeros((2, m.n_embd), np.float32))), "the batch needs (1, "),
        (lambda m, c: c.decode(Batch([], [0], [(0,)], [True], np.zeros((1, m.n_embd)))), "a 2-d float32 array"),
        (lambda m, c: c.decode(Batch([], [0], [(0,)], [True], np.full((1, m.n_embd), np.nan, np.float32))), "NaN or infinite"),
        (lambda m, c: c.decode(Batch([], [], [], [])), "a batch holds 1.."),
        (lambda m, c: m.context(n_ctx=64, n_batch=8, n_seq_max=64), "n_batch 8: give a whole number from 64"),
        (lambda m, c: m.context(n_ctx=4294967297), "n_ctx 4294967297"),
        (lambda m, c: m.context(n_ctx=0), "n_ctx 0"),
        (lambda m, c: m.context(n_batch=-1), "n_batch -1"),
        (lambda m, c: m.context(n_seq_max=0), "n_seq_max 0"),
        (lambda m, c: m.context(threads=0), "threads 0"),
        (lambda m, c: m.context(kv_type="f8"), "kv_type 'f8'"),
        (lambda m, c: m.context(n_ctx=2_000_000_000), "KV cache of 6 slots x 2000000000 cells"),
        (lambda m, c: m.detokenize([10**9]), "token id 1000000000"),
        (lambda m, c: m.token_text(-3), "token id -3"),
    ],
)
def test_api_misuse_raises(model: Model, call, message: str) -> None:
    with model.context(n_ctx=256, n_batch=64) as ctx:
        with pytest.raises(PaintersError, match=message.replace("(", r"\(").replace(".", r"\.")):
            call(model, ctx)
        assert ctx.logits([1, 2, 3]).shape == (3, 97)  # the context still works


def test_closed_objects_raise(model: Model) -> None:
    ctx = model.context(n_ctx=64)
    other = model.context(n_ctx=64)
    ctx.close()
    for call in (lambda: ctx.eval([1]), lambda: ctx.set_plan(None), lambda: ctx.clear(), lambda: ctx.n_slots):
        with pytest.raises(PaintersError, match="the context on tiny-llama.gguf is closed"):
            call()
    model.close()  # closes the contexts still open on it first
    for call in (lambda: model.tokenize("a"), lambda: model.bos, lambda: model.context(), lambda: model.meta("x")):
        with pytest.raises(PaintersError, match="the model is closed"):
            call()
    with pytest.raises(PaintersError, match="is closed"):
        other.eval([1])


def test_gpu_layers_on_a_cpu_build(tiny_gguf: Path) -> None:
    with pytest.raises(PaintersError, match="this llama.cpp build has no GPU offload"):
        Model(tiny_gguf, n_gpu_layers=5)
    with pytest.raises(PaintersError, match="n_gpu_layers -2"):
        Model(tiny_gguf, n_gpu_layers=-2)


def test_nan_logits_are_an_error_not_a_score(tmp_path: Path) -> None:
    weights = random_weights(TinyConfig(), seed=0)
    weights.tensors["output_norm.weight"][:] = np.nan
    with Model(write_gguf(weights, tmp_path / "nan.gguf")) as m, m.context(n_ctx=64) as ctx:
        with pytest.raises(PaintersError, match="NaN or infinite logits under the model's own layer order"):
            ctx.logits([1, 2, 3])


# --- validators ---


@given(st.text(max_size=12))
@settings(max_examples=300, deadline=None)
def test_sizes_parse_or_refuse(text: str) -> None:
    try:
        value = parse_size(text, "X")
    except PaintersError as err:
        assert str(err).startswith("X=")
        return
    assert isinstance(value, int) and 1 <= value < 2**63


@pytest.mark.parametrize("text, value", [("8G", 8 * 2**30), ("512m", 512 * 2**20), ("1.5K", 1536), ("4096", 4096)])
def test_sizes_by_hand(text: str, value: int) -> None:
    assert parse_size(text, "X") == value


@given(st.text(alphabet="0123456789-x ", max_size=14))
@settings(max_examples=300, deadline=None)
def test_iteration_ranges_parse_or_refuse(text: str) -> None:
    try:
        values = parse_iters(text)
    except PaintersError:
        return
    assert values and values == list(range(values[0], values[-1] + 1)) and 1 <= values[0] and values[-1] <= 16384


def test_json_outputs_are_always_valid(tmp_path: Path) -> None:
    from painters_gguf.lm_eval_format import write_json

    path = tmp_path / "r.json"
    write_json(path, {"ppl": math.inf, "acc": math.nan, "ok": [1.0, -math.inf]})
    parsed = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert parsed == {"ppl": None, "acc": None, "ok": [1.0, None]}


def test_a_failed_write_leaves_nothing_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "r.json"
    target.write_text("the old results")

    def full_disk(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs.os, "fsync", full_disk)
    with pytest.raises(PaintersError, match="could not write .*No space left on device.*run the same command again"):
        outputs.write_text(target, ["new"])
    assert target.read_text() == "the old results"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left


# --- data rows, property-based: whatever passes the checks can be prompted and scored ---

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=8,
)
PLAUSIBLE = {
    "question": st.text(min_size=1, max_size=20),
    "choices": st.one_of(
        st.builds(
            lambda texts, labels: {"text": texts, "label": labels},
            st.lists(st.text(max_size=5), max_size=5),
            st.lists(st.sampled_from("ABCDE"), max_size=5),
        ),  # fmt: skip
        st.lists(st.text(max_size=5), max_size=5),
    ),
    "answerKey": st.sampled_from(["A", "B", "C", "Z", ""]),
    "activity_label": st.text(max_size=10),
    "ctx_a": st.text(max_size=10),
    "ctx_b": st.text(max_size=10),
    "endings": st.lists(st.text(max_size=6), max_size=5),
    "label": st.sampled_from(["0", "3", "4", 2, -1, "x", True]),
    "sentence": st.sampled_from(["A _ b.", "no blank", "_", "x _ y _ z", ""]),
    "option1": st.text(max_size=6),
    "option2": st.text(max_size=6),
    "answer": st.one_of(st.sampled_from(["1", "2", "3", "#### 4", "42"]), st.integers(-1, 5)),
    "text": st.one_of(st.text(max_size=30), st.sampled_from(["a b", "word", " b", "a "])),
    "subject": st.text(max_size=10),
}


def row_strategy(fields: list[str]) -> st.SearchStrategy[dict]:
    values = {name: st.one_of(PLAUSIBLE.get(name, JSON_VALUES), JSON_VALUES) for name in fields}
    return st.fixed_dictionaries({}, optional=values)


@pytest.mark.parametrize("task_name", ["arc_easy", "hellaswag", "winogrande", "lambada_openai", "gsm8k", "mmlu"])
@given(data=st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_rows_pass_the_checks_or_name_the_problem(task_name: str, data: st.DataObject, tmp_path: Path) -> None:
    task = TASKS[task_name]
    fields = [field.name for field in task.eval_split.fields]
    row = data.draw(row_strategy(fields))
    split = task.eval_split
    path = tmp_path / split.folder / f"{split.split}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row) + "\n")
    try:
        rows = load_split(tmp_path, split, task.check_row)
    except PaintersError as err:
        assert str(err).startswith(f"{path}:1: ") and "field" in str(err)
        return
    for doc in task.process_docs(rows):  # a row that passed: prompts, requests and scores work
        context = task.context(doc, [])
        context.encode("utf-8")
        requests = task.requests(doc, context)
        if task.generation:
            task.score(doc, "#### 4")
        else:
            from painters_gguf.requests import LoglikelihoodResult

            task.score(doc, [LoglikelihoodResult(-1.0, True) for _ in requests])  # type: ignore[union-attr]


def test_written_files_get_the_usual_mode(tmp_path: Path) -> None:
    """Written through a private temporary file, a result still gets the mode a new file gets
    (not 0600), and a rewritten file keeps its own."""
    mask = os.umask(0o022)
    try:
        new = tmp_path / "new.json"
        outputs.write_text(new, ["{}"])
        assert stat.S_IMODE(new.stat().st_mode) == 0o644
        kept = tmp_path / "kept.json"
        kept.write_text("old")
        kept.chmod(0o600)
        outputs.write_text(kept, ["{}"])
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and kept.read_text() == "{}"
    finally:
        os.umask(mask)


# --- misuse that once reached a C abort or a segfault: now a Python exception ---

CHILD_PRELUDE = """
import gc, sys, threading
import numpy as np
from painters_gguf.errors import PaintersError
from painters_gguf.plan import Plan
from painters_gguf.runtime import Model
model = Model(sys.argv[1])
"""


def in_child(tiny_gguf: Path, code: str) -> str:
    """Run `code` in a fresh interpreter (a C abort there fails this test, not the whole run); its
    stdout, after checking it exited normally."""
    import subprocess
    import sys
    import textwrap

    result = subprocess.run(
        [sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(code), str(tiny_gguf)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    return result.stdout


def test_a_batch_larger_than_the_context_is_chunked_not_an_abort(tiny_gguf: Path) -> None:
    """llama.cpp clamps n_batch to n_ctx and aborts on a larger batch: the context takes its n_batch."""
    out = in_child(
        tiny_gguf,
        """
        ctx = model.context(n_ctx=16, n_batch=64)
        print(ctx.n_batch)
        tokens = [1 + i % 90 for i in range(ctx.n_ctx + 1)]
        assert ctx.logits(tokens[:-1]).shape == (ctx.n_ctx, 97)  # in chunks of what llama.cpp took
        try:
            ctx.logits(tokens)
        except PaintersError as error:
            print(error)
        """,
    )
    n_batch, message = out.splitlines()
    assert int(n_batch) < 64
    assert "do not fit the context of" in message


def test_a_vocab_only_model_makes_no_context(tiny_gguf: Path) -> None:
    out = in_child(
        tiny_gguf,
        """
        vocab = Model(sys.argv[1], vocab_only=True)
        try:
            vocab.context(n_ctx=64)
        except PaintersError as error:
            print(error)
        """,
    )
    assert "loaded with vocab_only (no weights): a context needs the whole model" in out


def test_a_plan_too_large_to_allocate_is_refused_and_the_context_keeps_working(tiny_gguf: Path) -> None:
    """A plan at the slot limit passes every check but needs a graph scheduler of tens of GiB: C
    returns an allocation error (it aborted in ggml before) and the previous plan still runs. The
    child's address space is bounded, so the allocation fails on any machine."""
    out = in_child(
        tiny_gguf,
        """
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))
        from painters_gguf.abi import MAX_SLOTS
        from painters_gguf.errors import PlanError
        ctx = model.context(n_ctx=64)
        plan = Plan.parse("0-2,3-5")
        ctx.set_plan(plan)
        before = ctx.logits([1, 2, 3])
        try:
            ctx.set_plan(Plan.parse("{0-5}x%d" % (MAX_SLOTS // 6)))
        except PlanError as error:
            print(error)
        assert ctx.plan == plan and ctx.n_slots == 6
        assert np.array_equal(ctx.logits([1, 2, 3]), before)
        """,
    )
    assert "could not be allocated (ggml_backend_sched_new: failed to allocate the scheduler for a graph of" in out


def test_an_eval_callback_need_not_be_kept_alive_by_the_caller(tiny_gguf: Path) -> None:
    out = in_child(
        tiny_gguf,
        """
        ctx = model.context(n_ctx=64)
        seen = []
        ctx.set_eval_callback(lambda tensor, ask: seen.append(ask) or True)
        gc.collect()
        ctx.logits([1, 2, 3])
        print(len(seen) > 0)
        """,
    )
    assert out.strip() == "True"


def test_an_eval_callback_cannot_stop_a_pass_silently(model: Model) -> None:
    """False for a computed tensor stopped the pass with the logits left as zeros: now the pass
    runs whole and the decode says what went wrong; the context works after."""
    with model.context(n_ctx=64) as ctx:
        expected = ctx.logits([1, 2, 3])
        ctx.set_eval_callback(lambda tensor, ask: bool(ask))  # wants every tensor, then says stop
        with pytest.raises(PaintersError, match="returned False for a computed tensor"):
            ctx.logits([1, 2, 3])
        ctx.set_eval_callback(None)
        assert np.array_equal(ctx.logits([1, 2, 3]), expected)


def test_a_context_is_used_by_one_call_at_a_time(model: Model) -> None:
    """Another thread (or the eval callback itself) calling a context that is decoding, or closing
    its model meanwhile, is an error, not a crash."""
    import threading

    from painters_gguf.runtime import Context

    with model.context(n_ctx=64) as ctx:
        expected = ctx.logits([1, 2, 3])
        decoding, tried = threading.Event(), threading.Event()
        errors: list[str] = []

        def observe(tensor: int, ask: bool) -> bool:
            if not decoding.is_set():
                decoding.set()
                assert tried.wait(timeout=120), "the main thread never tried"
            return False if ask else True

        ctx.set_eval_callback(observe)
        worker = threading.Thread(target=lambda: errors.append(str(ctx.logits([1, 2, 3]).shape)))
        worker.start()
        try:
            assert decoding.wait(timeout=120)
            calls: list = [lambda: ctx.eval([1]), ctx.clear, lambda: ctx.set_plan(None), model.close, ctx.close]
            for call in calls:
                with pytest.raises(PaintersError, match="is in use by another call"):
                    call()
        finally:
            tried.set()
            worker.join(timeout=120)
        assert errors == ["(3, 97)"]  # the decoding thread finished undisturbed

        def reenter(tensor: int, ask: bool) -> bool:
            Context.clear(ctx)  # from inside the pass
            return True

        ctx.set_eval_callback(reenter)
        with pytest.raises(PaintersError, match="do not call it from its eval callback"):
            ctx.logits([1, 2, 3])
        ctx.set_eval_callback(None)
        assert np.array_equal(ctx.logits([1, 2, 3]), expected)
