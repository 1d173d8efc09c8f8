"""Plans as data: the text form, validation with locations, and the paper's variants."""

from __future__ import annotations

import pytest

from painters_gguf import abi, variants
from painters_gguf.errors import PlanError
from painters_gguf.plan import Plan, Step


def steps(plan: Plan) -> list[tuple[int, ...]]:
    return list(plan.executions())


def test_parse_the_documented_example() -> None:
    plan = Plan.parse("0-3,{4-27}x3,28-29")
    assert plan.steps == (
        Step((0,)),
        Step((1,)),
        Step((2,)),
        Step((3,)),
        Step(tuple(range(4, 28)), 3),
        Step((28,)),
        Step((29,)),
    )
    assert plan.text == "0-3,{4-27}x3,28-29"
    assert plan.n_slots == 4 + 24 * 3 + 2
    assert plan.n_steps == 4 + 3 + 2


@pytest.mark.parametrize(
    ("text", "canonical", "executions"),
    [
        ("5", "5", [(5,)]),
        ("9-6", "9-6", [(9,), (8,), (7,), (6,)]),
        (" 0 - 2 , 7 ", "0-2,7", [(0,), (1,), (2,), (7,)]),
        ("3,4,5,9,8", "3-5,9-8", [(3,), (4,), (5,), (9,), (8,)]),
        ("16x3", "16x3", [(16,)] * 3),
        ("{5}", "5", [(5,)]),
        ("{4,1-2}x2", "{4,1-2}x2", [(4, 1, 2)] * 2),
        ("{3,3}", "{3,3}", [(3, 3)]),
        ("1x1,2", "1-2", [(1,), (2,)]),
        ("5,5,5", "5,5,5", [(5,), (5,), (5,)]),
    ],
)
def test_text_form(text: str, canonical: str, executions: list[tuple[int, ...]]) -> None:
    plan = Plan.parse(text)
    assert plan.text == canonical
    assert steps(plan) == executions
    assert Plan.parse(plan.text) == plan


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty plan text"),
        ("0-", "expected the end of the range, found the end at column 3"),
        ("{1-3", "missing '}' to close the '{' at column 1"),
        ("0,{1-3,4", "missing '}' to close the '{' at column 3"),
        ("1-3x2", "'x' repeats one step, but a range is several"),
        ("0,,1", "expected a layer id, found ',' at column 3"),
        ("a", "expected a layer id, found 'a' at column 1"),
        ("0x0", "a repeat count is at least 1 at column 3"),
        ("2x", "expected a repeat count after 'x', found the end at column 3"),
        ("{}", "expected a layer id, found '}' at column 2"),
        ("-1", "expected a layer id, found '-' at column 1"),
        ("1}", "expected ',' or the end, found '}' at column 2"),
        ("3 4", "expected ',' or the end, found '4' at column 3"),
        ("0-16383,0-1", "the most is 16384"),
        ("0-99999999999", "a range of 100000000000 layers is longer than a plan may run (16384) at column 3"),
        ("{5-999999999999}x2", "longer than a plan may run"),
    ],
)
def test_bad_text_names_problem_and_place(text: str, message: str) -> None:
    with pytest.raises(PlanError) as err:
        Plan.parse(text)
    assert message in str(err.value)


def test_bad_text_type() -> None:
    with pytest.raises(PlanError, match="a plan text is a string"):
        Plan.parse(3)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Plan(()), "at least one step"),
        (lambda: Plan((Step(()),)), "step 1: a step needs at least one layer"),
        (lambda: Plan((Step((0,)), Step((-1,)))), "step 2: layer ids are integers >= 0, found -1"),
        (lambda: Plan((Step((True,)),)), "found True"),
        (lambda: Plan((Step((0,), 0),)), "repeat counts are integers >= 1, found 0"),
        (lambda: Plan((Step((0,), abi.MAX_SLOTS + 1),)), "the most is 16384"),
        (lambda: Plan(((0,),)), "expected a Step, found tuple"),
    ],
)
def test_bad_values_are_refused_up_front(build, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        build()


def test_check_against_layer_count() -> None:
    plan = Plan.parse("0-3,{4-9}")
    assert plan.check(10) is plan
    with pytest.raises(PlanError, match=r"step 5 names layer 9, but the model has layers 0\.\.8"):
        plan.check(9)


def test_encode_is_the_c_layout() -> None:
    assert Plan.parse("0,{1-3}x2,5x3").encode() == [1, 1, 0, 2, 3, 1, 2, 3, 3, 1, 5]


def test_identity() -> None:
    assert Plan.parse("0-5").is_identity(6)
    assert not Plan.parse("0-5").is_identity(7)
    assert not Plan.parse("{0},1,{2,3},4,5").is_identity(6)


# --- the paper's variants, T = 32 as in Llama2-7B ---

T = 32


def test_middle_band_convention() -> None:
    assert variants.middle(T, 0) == list(range(1, 32))
    assert variants.middle(T, 15) == [16]  # N = 15 gives M = 1
    assert len(variants.middle(T, 7)) == T - 2 * 7 - 1
    with pytest.raises(PlanError, match="N goes from 0 to 15"):
        variants.middle(T, 16)
    with pytest.raises(PlanError, match="N counts from 0"):
        variants.middle(T, -1)


def test_variants_at_n_7() -> None:
    head, tail = [(i,) for i in range(8)], [(i,) for i in range(25, 32)]
    mid = list(range(8, 25))
    assert steps(variants.skip(T, 7)) == head + tail
    assert steps(variants.middle_repeat(T, 7)) == head + [(16,)] * 17 + tail
    assert steps(variants.reverse(T, 7)) == head + [(i,) for i in reversed(mid)] + tail
    assert steps(variants.parallel(T, 7)) == head + [tuple(mid)] + tail
    assert steps(variants.looped_parallel(T, 7, 3)) == head + [tuple(mid)] * 3 + tail
    assert variants.looped_parallel(T, 7, 3).text == "0-7,{8-24}x3,25-31"
    shuffled = steps(variants.random_order(T, 7, seed=3))
    assert shuffled[:8] == head and shuffled[-7:] == tail
    assert sorted(shuffled[8:-7]) == [(i,) for i in mid] and shuffled[8:-7] != [(i,) for i in mid]
    assert variants.random_order(T, 7, seed=3) == variants.random_order(T, 7, seed=3)
    assert variants.random_order(T, 7, seed=3) != variants.random_order(T, 7, seed=4)


def test_variants_at_the_narrowest_middle() -> None:
    full = steps(variants.full(T))
    assert steps(variants.parallel(T, 15)) == full
    assert steps(variants.reverse(T, 15)) == full
    assert steps(variants.middle_repeat(T, 15)) == full
    assert steps(variants.looped_parallel(T, 15, 3)) == full[:16] + [(16,)] * 3 + full[17:]
    assert steps(variants.skip(T, 15)) == full[:16] + full[17:]


def test_single_layer_probes() -> None:
    assert steps(variants.skip_one(T, 5)) == [(i,) for i in range(T) if i != 5]
    swapped = steps(variants.swap(T, 5))
    assert swapped[5:7] == [(6,), (5,)] and len(swapped) == T
    with pytest.raises(PlanError, match="swap takes n in 0..30"):
        variants.swap(T, 31)
    with pytest.raises(PlanError, match="layer 32 is not in 0..31"):
        variants.skip_one(T, 32)


def test_resolve_names_and_texts() -> None:
    assert variants.resolve("parallel", T, 15) == variants.parallel(T, 15)
    assert variants.resolve("looped-parallel", T, 4, iters=2) == variants.looped_parallel(T, 4, 2)
    assert variants.resolve("random", T, 2, seed=9) == variants.random_order(T, 2, 9)
    assert variants.resolve("0-3,{4-27}x3,28-31", T) == Plan.parse("0-3,{4-27}x3,28-31")
    with pytest.raises(PlanError, match="unknown plan variant 'paralel': use one of full, skip"):
        variants.resolve("paralel", T)
    with pytest.raises(PlanError, match="step 33 names layer 32, but the model has layers 0..31"):
        variants.resolve("0-40", T)
