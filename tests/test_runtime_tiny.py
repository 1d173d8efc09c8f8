"""The patched runtime on tiny random F32 llama models, against the numpy reference."""

from __future__ import annotations

import ctypes
import hashlib
from pathlib import Path

import numpy as np
import pytest
from tiny_llama import (
    Reference,
    TinyWeights,
    assert_continues_from_kept_state,
    assert_plans_differ,
    chunked_logits,
    relative_error,
    write_gguf,
)

from painters_gguf import abi, variants
from painters_gguf.engine.hidden_states import step_output
from painters_gguf.engine.shared_prefix import shared_steps
from painters_gguf.errors import PlanError
from painters_gguf.plan import Plan

# every plan shape: full, skip, reorder, repeat, parallel, looped parallel, and mixtures
PLAN_TEXTS = [
    "0-5",
    "0,1,4,5",  # skip
    "0,4-1,5",  # reverse the middle
    "0,3,1,4,2,5",  # shuffled
    "0,1,3x3,4,5",  # a repeated layer
    "0,{1-4},5",  # parallel
    "0,{1-4}x3,5",  # looped parallel
    "{0-5}",  # everything in one parallel step
    "2x2,{0,5,5},1-3,{4,0}x2",  # repeats, duplicate members, reuse across steps
]

TOKENS = [3, 17, 42, 8, 96, 0, 55, 23, 23, 71, 5, 64, 30, 12, 88, 1, 49, 77, 9, 33, 60, 2, 41]


@pytest.fixture(scope="module")
def ctx_f32(tiny_model):
    with tiny_model.context(n_ctx=128, n_batch=64, kv_type="f32", flash_attn="off") as ctx:
        yield ctx


@pytest.fixture(scope="module")
def reference(tiny_weights: TinyWeights) -> Reference:
    return Reference(tiny_weights)


def test_model_facts(tiny_model, tiny_gguf: Path, tiny_weights: TinyWeights) -> None:
    config = tiny_weights.config
    assert (tiny_model.n_layer, tiny_model.n_embd, tiny_model.n_vocab) == (config.n_layer, config.n_embd, config.n_vocab)
    assert tiny_model.arch == "llama"
    assert tiny_model.meta("general.name") == "tiny-random-llama"
    assert tiny_model.sha256 == hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()


def test_default_order_matches_reference(ctx_f32, reference: Reference) -> None:
    ctx_f32.set_plan(None)
    expected = reference.logits(TOKENS, [(layer,) for layer in range(6)])
    assert relative_error(ctx_f32.logits(TOKENS), expected) < 1e-3


@pytest.mark.parametrize("text", PLAN_TEXTS)
def test_plan_matches_reference(ctx_f32, reference: Reference, text: str) -> None:
    plan = Plan.parse(text)
    ctx_f32.set_plan(plan)
    assert ctx_f32.n_slots == plan.n_slots
    assert ctx_f32.slot_layers() == [layer for step in plan.executions() for layer in step]
    expected = reference.logits(TOKENS, plan.executions())
    assert relative_error(ctx_f32.logits(TOKENS), expected) < 1e-3


def test_plans_differ_from_each_other(ctx_f32) -> None:
    """The reference agreement above is not vacuous: the plans give clearly different logits."""
    assert_plans_differ(ctx_f32, PLAN_TEXTS, TOKENS)


def test_identity_plan_is_bitwise_the_default(tiny_model) -> None:
    with tiny_model.context(n_ctx=128) as ctx:
        default = ctx.logits(TOKENS)
        ctx.set_plan(variants.full(tiny_model.n_layer))
        identity = ctx.logits(TOKENS)
        ctx.set_plan(None)
        again = ctx.logits(TOKENS)
    assert np.array_equal(default, identity)
    assert np.array_equal(default, again)


@pytest.mark.parametrize("text", PLAN_TEXTS)
@pytest.mark.parametrize("chunk", [1, 4, 7])
def test_chunked_decode_equals_one_pass(ctx_f32, text: str, chunk: int) -> None:
    """Decoding through the KV cache in chunks gives the logits of one pass, for every plan.

    A plan whose repeated blocks shared one KV slot would pass the one-pass test and fail here.
    """
    ctx_f32.set_plan(Plan.parse(text))
    whole = ctx_f32.logits(TOKENS)
    pieces = chunked_logits(ctx_f32, TOKENS, chunk)
    assert relative_error(pieces, whole) < 1e-5


def test_switching_plans_back_and_forth(ctx_f32) -> None:
    a, b = Plan.parse("0,{1-4}x3,5"), Plan.parse("5-0")
    ctx_f32.set_plan(a)
    first = ctx_f32.logits(TOKENS)
    ctx_f32.set_plan(b)
    ctx_f32.logits(TOKENS)
    ctx_f32.set_plan(a)
    assert np.array_equal(ctx_f32.logits(TOKENS), first)


def test_out_of_range_plan_is_refused_and_the_old_plan_stays(ctx_f32) -> None:
    ctx_f32.set_plan(Plan.parse("0,{1-4},5"))
    before = ctx_f32.logits(TOKENS)
    with pytest.raises(PlanError, match="layer 6"):
        ctx_f32.set_plan(Plan.parse("0-6"))
    assert ctx_f32.plan == Plan.parse("0,{1-4},5")
    assert np.array_equal(ctx_f32.logits(TOKENS), before)


def _c_plan(values: list[int]):
    return (ctypes.c_int32 * max(len(values), 1))(*values), len(values)


HOSTILE_PLANS = {
    "empty step": [1, 0],
    "zero repeat": [0, 1, 0],
    "negative repeat": [-3, 1, 0],
    "negative count": [1, -1, 0],
    "layer past the end": [1, 1, 6],
    "negative layer": [1, 1, -5],
    "count past the data": [1, 5, 0, 1],
    "truncated header": [1],
    "huge count": [1, 2**31 - 1, 0],
    "huge repeat": [2**31 - 1, 1, 0],
    "too many slots": [abi.MAX_SLOTS + 1, 1, 0],
    "too many slots in total": [abi.MAX_SLOTS, 1, 0, 1, 1, 0],
}


@pytest.mark.parametrize("name", HOSTILE_PLANS)
def test_c_side_rejects_hostile_arrays(ctx_f32, tiny_model, name: str) -> None:
    from painters_gguf.bindings import lib as _lib

    ctx_f32.set_plan(None)
    before = ctx_f32.logits(TOKENS)
    array, n = _c_plan(HOSTILE_PLANS[name])
    assert _lib.llama_layer_plan_validate(tiny_model._model, array, n) == abi.PlanStatus.ERR_INVALID
    assert _lib.llama_set_layer_plan(ctx_f32._ctx, array, n) == abi.PlanStatus.ERR_INVALID
    assert ctx_f32.n_slots == tiny_model.n_layer
    assert np.array_equal(ctx_f32.logits(TOKENS), before)


def test_c_side_rejects_null_arguments(ctx_f32, tiny_model) -> None:
    from painters_gguf.bindings import lib as _lib

    array, n = _c_plan([1, 1, 0])
    assert _lib.llama_set_layer_plan(None, array, n) == abi.PlanStatus.ERR_CONTEXT
    assert _lib.llama_layer_plan_validate(None, array, n) == abi.PlanStatus.ERR_CONTEXT
    assert _lib.llama_set_layer_plan(ctx_f32._ctx, None, 3) == abi.PlanStatus.ERR_CONTEXT
    assert _lib.llama_layer_plan_n_slots(None) == -1
    assert _lib.llama_layer_plan_slot_layer(ctx_f32._ctx, 10_000) == -1
    assert _lib.llama_layer_plan_slot_layer(ctx_f32._ctx, -1) == -1
    assert _lib.llama_layer_plan_supported(None) == 0
    assert _lib.llama_layer_plan_layer_swa(None, 0) == -1
    assert _lib.llama_layer_plan_layer_swa(tiny_model._model, tiny_model.n_layer) == -1
    assert _lib.llama_layer_plan_layer_swa(tiny_model._model, -1) == -1
    assert _lib.llama_layer_plan_arch(-1) is None
    assert _lib.llama_layer_plan_arch(10_000) is None


def test_the_library_lists_the_architectures_it_covers(tiny_model) -> None:
    from painters_gguf.runtime import plan_architectures

    covered = plan_architectures()
    assert covered[0] == "llama"
    assert {"qwen3", "qwen2", "gemma3", "mistral3", "phi3", "gemma2", "olmo2", "gptneox"} <= set(covered)
    assert len(covered) == len(set(covered))
    assert tiny_model.runs_plans and tiny_model.swa_layers() == []


def test_c_side_accepts_the_largest_plan(tiny_model) -> None:
    from painters_gguf.bindings import lib as _lib

    array, n = _c_plan([abi.MAX_SLOTS, 1, 0])
    assert _lib.llama_layer_plan_validate(tiny_model._model, array, n) == abi.PlanStatus.OK


def test_unsupported_architecture_is_an_error(tiny_weights: TinyWeights, tmp_path: Path) -> None:
    from painters_gguf.bindings import lib as _lib
    from painters_gguf.runtime import Model

    with Model(write_gguf(tiny_weights, tmp_path / "tiny-baichuan.gguf", arch="baichuan")) as model:
        assert model.arch == "baichuan"
        with model.context(n_ctx=64) as ctx:
            ctx.logits(TOKENS[:5])  # the stock graph still runs without a plan
            with pytest.raises(PlanError, match="does not run layer plans"):
                ctx.set_plan(Plan.parse("0-5"))
            array, n = _c_plan([1, 1, 0])
            assert _lib.llama_set_layer_plan(ctx._ctx, array, n) == abi.PlanStatus.ERR_ARCH
            assert _lib.llama_set_layer_plan(ctx._ctx, None, 0) == abi.PlanStatus.OK  # no plan is fine


def test_kv_estimate_by_hand(tiny_model) -> None:
    # 2 KV heads x (16 + 16) dims x 2 bytes (f16) per token per slot
    assert tiny_model.kv_bytes(n_slots=6, n_ctx=128) == 6 * 128 * 2 * 32 * 2
    assert tiny_model.kv_bytes(n_slots=1, n_ctx=1, kv_type="f32") == 2 * 32 * 4


@pytest.mark.parametrize("text", [t for t in PLAN_TEXTS if shared_steps(Plan.parse(t), 6) > 0])
def test_plans_go_on_from_kept_states(ctx_f32, text: str) -> None:
    assert_continues_from_kept_state(ctx_f32, Plan.parse(text), TOKENS)


def test_ctrl_c_in_the_eval_callback_is_raised_after_a_whole_pass(ctx_f32) -> None:
    """A KeyboardInterrupt inside the callback cannot cross into C: the pass still runs to its end
    (a callback returning False would stop it midway), and the decode raises it afterwards."""
    from painters_gguf.engine.hidden_states import HiddenStates

    class InterruptedOnce(HiddenStates):
        raised = False

        def wanted(self, name: str) -> bool:
            if name == "plan_out-2" and not self.raised:
                self.raised = True
                raise KeyboardInterrupt
            return super().wanted(name)

    full = variants.full(6)
    ctx_f32.set_plan(full)
    expected = ctx_f32.logits(TOKENS)
    hidden = InterruptedOnce(ctx_f32.model.n_embd)
    ctx_f32.set_eval_callback(hidden.observe)
    try:
        with pytest.raises(KeyboardInterrupt):
            ctx_f32.logits(TOKENS)
        # every state but the one whose question raised was read: the pass ran to its end
        assert set(hidden.take()) == {"plan_inp", *(step_output(s) for s in range(6) if s != 2)}
        assert np.array_equal(ctx_f32.logits(TOKENS), expected)  # raised once; the next pass runs clean
        assert len(hidden.take()) == 7
    finally:
        ctx_f32.set_eval_callback(None)


def test_a_real_ctrl_c_during_a_pass_with_the_callback_ends_it_whole(ctx_f32) -> None:
    """SIGINT arriving while llama.cpp calls back into Python (at any bytecode, even before a try)
    is taken when the pass is over: every logit computed, then KeyboardInterrupt, then the usual
    handler again."""
    import os
    import signal

    from painters_gguf.engine.hidden_states import HiddenStates

    class SignalledMidway(HiddenStates):
        sent = False

        def wanted(self, name: str) -> bool:
            if name == "plan_out-2" and not self.sent:
                self.sent = True
                os.kill(os.getpid(), signal.SIGINT)  # delivered at the next bytecode, inside the callback
            return super().wanted(name)

    ctx_f32.set_plan(variants.full(6))
    expected = ctx_f32.logits(TOKENS)
    hidden = SignalledMidway(ctx_f32.model.n_embd)
    ctx_f32.set_eval_callback(hidden.observe)
    try:
        with pytest.raises(KeyboardInterrupt):
            ctx_f32.logits(TOKENS)
        assert len(hidden.take()) == 7  # the pass ran to its end: every state was read
    finally:
        ctx_f32.set_eval_callback(None)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert np.array_equal(ctx_f32.logits(TOKENS), expected)


def test_a_ctrl_c_while_llama_cpp_logs_is_taken_after_the_call(tiny_model) -> None:
    """llama.cpp logs through a Python callback while it makes a context: a SIGINT landing there
    would be dropped by ctypes; it is taken once the call is over."""
    import os
    import signal

    from llama_cpp import llama_cpp as C

    from painters_gguf.bindings import LOG

    sent: list[int] = []

    def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if not sent:
            sent.append(level)
            os.kill(os.getpid(), signal.SIGINT)  # delivered at the next bytecode, inside the callback

    callback = C.llama_log_callback(on_log)
    C.llama_log_set(callback, ctypes.c_void_p(0))
    try:
        with pytest.raises(KeyboardInterrupt):
            tiny_model.context(n_ctx=64, n_batch=64)
    finally:
        C.llama_log_set(LOG.callback, ctypes.c_void_p(0))
    assert sent and signal.getsignal(signal.SIGINT) is signal.default_int_handler
