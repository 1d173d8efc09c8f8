"""Hostile inputs and faults (tests/faults.py holds the scenarios), and property-based plan tests."""

from __future__ import annotations

import ctypes
from pathlib import Path

import faults
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tiny_llama import TinyConfig, TinyWeights, random_weights, write_gguf

from painters_gguf import abi
from painters_gguf.errors import PlanError
from painters_gguf.plan import Plan, Step

# --- plans, property-based ---

PLAN_ALPHABET = st.sampled_from(list("0123456789,-{}x ") + ["17", "999", "99999999999", "{", "}", "x3", "-"])


@given(st.one_of(st.text(max_size=40), st.lists(PLAN_ALPHABET, max_size=25).map("".join)))
@example("0-99999999999")  # once built a list of 10^11 ids and ran the machine out of memory
@settings(max_examples=400, deadline=None)
def test_parsing_raises_only_plan_errors(text: str) -> None:
    try:
        plan = Plan.parse(text)
    except PlanError:
        return
    assert Plan.parse(plan.text) == plan  # whatever parses, round-trips


steps = st.builds(Step, st.lists(st.integers(0, 40), min_size=1, max_size=6).map(tuple), st.integers(1, 4))


@given(st.lists(steps, min_size=1, max_size=12).map(tuple))
@settings(max_examples=300, deadline=None)
def test_every_valid_plan_round_trips(plan_steps: tuple[Step, ...]) -> None:
    plan = Plan(plan_steps)
    again = Plan.parse(plan.text)
    assert list(again.executions()) == list(plan.executions())
    assert again.text == plan.text and again.n_slots == plan.n_slots


@given(
    st.lists(st.lists(st.integers(-3, 12), min_size=0, max_size=5), min_size=0, max_size=6),
    st.lists(st.integers(-2, 5), max_size=6),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_plan_value_reaches_c_in_a_rejected_form(tiny_model, layers: list[list[int]], repeats: list[int]) -> None:
    """Built through the Python API, a plan either fails in Python or C accepts it."""
    from painters_gguf.bindings import lib as _lib

    try:
        padded = repeats + [1] * len(layers)  # one repeat count per step, 1 where hypothesis drew none
        plan = Plan(tuple(Step(tuple(ids), repeat) for ids, repeat in zip(layers, padded, strict=False))).check(6)
    except PlanError:
        return
    flat = plan.encode()
    assert _lib.llama_layer_plan_validate(tiny_model._model, (ctypes.c_int32 * len(flat))(*flat), len(flat)) == abi.PlanStatus.OK


INT32 = st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(-2, 8))


@given(st.lists(INT32, max_size=40))
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_c_function_survives_any_array(tiny_model, values: list[int]) -> None:
    from painters_gguf.bindings import lib as _lib

    array = (ctypes.c_int32 * max(len(values), 1))(*values)
    status = _lib.llama_layer_plan_validate(tiny_model._model, array, len(values))
    assert status in (abi.PlanStatus.OK, abi.PlanStatus.ERR_INVALID)


# --- files, data, memory, interruptions, concurrency (the scenarios of tests/faults.py) ---


@pytest.fixture(scope="module")
def other_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("archs")
    weights = random_weights(TinyConfig(), seed=0)
    return write_gguf(weights, folder / "tiny-baichuan.gguf", arch="baichuan"), write_gguf(
        weights, folder / "tiny-x.gguf", arch="painterz"
    )


def assert_clean(outcome: faults.Outcome) -> None:
    assert outcome.crashes == 0 and outcome.lost == 0, outcome.notes
    assert outcome.expected == outcome.tried, outcome.notes


def test_bad_model_files(smollm2_path: Path, other_models: tuple[Path, Path], shared_data: Path) -> None:
    outcome = faults.scenario_model_files(smollm2_path, *other_models, shared_data)
    assert outcome.tried == 20
    assert_clean(outcome)


def test_bad_data_files(tiny_bpe_model, shared_data: Path) -> None:
    assert_clean(faults.scenario_data_files(tiny_bpe_model.path, shared_data))


def test_bad_plans_and_memory(tiny_bpe_model, shared_data: Path) -> None:
    assert_clean(faults.scenario_plans(tiny_bpe_model.path, shared_data))


def test_interruptions(tiny_bpe_model, shared_data: Path) -> None:
    for outcome in faults.scenario_interruptions(tiny_bpe_model.path, shared_data):
        assert_clean(outcome)


def test_two_writers(tiny_bpe_model, shared_data: Path) -> None:
    assert_clean(faults.scenario_concurrency(tiny_bpe_model.path, shared_data))


def test_metadata_prints_literally(tiny_weights: TinyWeights, tmp_path: Path, shared_data: Path) -> None:
    import gguf

    path = write_gguf(tiny_weights, tmp_path / "markup.gguf")
    reader_bytes = path.read_bytes()
    assert b"tiny-random-llama" in reader_bytes
    evil = tmp_path / "evil.gguf"
    writer = gguf.GGUFWriter(str(evil), "llama")
    writer.add_name("[bold red]pwned[/] {{ 7*7 }}")
    for key, field in gguf.GGUFReader(str(path)).fields.items():
        if key.startswith("llama.") or key.startswith("tokenizer."):
            writer.add_key_value(key, field.contents(), field.types[0], field.types[-1] if len(field.types) > 1 else None)
    for tensor in gguf.GGUFReader(str(path)).tensors:
        writer.add_tensor(tensor.name, tensor.data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    result = faults.cli("plan", "skip", "--n", "1", "-m", str(evil), env=faults.environment(shared_data))
    assert result.returncode == 0, result.stderr
    assert "'[bold red]pwned[/] {{ 7*7 }}'" in result.stdout  # neither markup nor a template


def test_bad_data_rows_and_files(tiny_bpe_model) -> None:
    outcome = faults.scenario_data_rows(tiny_bpe_model.path)
    assert outcome.tried == len(faults.BAD_ROWS) + 5
    assert_clean(outcome)


def test_bad_option_values(tiny_bpe_model, shared_data: Path) -> None:
    assert_clean(faults.scenario_options(tiny_bpe_model.path, shared_data))


def test_bad_environment(tiny_bpe_model, shared_data: Path) -> None:
    assert_clean(faults.scenario_environment(tiny_bpe_model.path, shared_data))


def test_outputs_never_destroy_inputs(tiny_bpe_model, shared_data: Path) -> None:
    assert_clean(faults.scenario_outputs(tiny_bpe_model.path, shared_data))


def test_no_command_writes_over_an_input(tiny_bpe_model, shared_data: Path) -> None:
    assert_clean(faults.scenario_every_output(tiny_bpe_model.path, shared_data))


def test_damaged_and_locked_stores(tiny_bpe_model, shared_data: Path) -> None:
    assert_clean(faults.scenario_stores(tiny_bpe_model.path, shared_data))


def test_untrusted_text_is_made_visible(tiny_bpe_model, shared_data: Path) -> None:
    assert_clean(faults.scenario_untrusted_text(tiny_bpe_model.path, shared_data))
