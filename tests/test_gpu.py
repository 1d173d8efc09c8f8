"""GPU memory accounting (runs everywhere) and layer plans on a CUDA device (skipped without one).

The CUDA tests run every layer on the GPU (n_gpu_layers=-1), on the tiny random llama and the
three catalog checkpoints, with the plan shapes their CPU tests use. `scripts/gpu-check.sh` builds
the CUDA library and runs this file with PAINTERS_GGUF_REQUIRE_GPU=1, which turns the skip into a
failure; it also shows the measured errors next to their tolerances (pytest -rP).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re

import numpy as np
import pytest
from conftest import catalog_path
from test_runtime_real import CHECKPOINTS, PLANS, PLANS_APART, rms_error
from test_runtime_real import PROMPT as CHECKPOINT_PROMPT
from test_runtime_smollm2 import PROMPT as SMOLLM2_PROMPT
from test_runtime_tiny import PLAN_TEXTS, TOKENS
from tiny_llama import chunked_logits

from painters_gguf import abi, variants
from painters_gguf.errors import PlanError
from painters_gguf.memory import backend_devices, gpu_free_memory, offloaded_slots
from painters_gguf.plan import Plan

# --- the memory check with layers on a GPU: runs on any build ---

N_CTX = 256  # llama.cpp pads a context to 256 cells: the tiny model's slot then holds 32 KiB


def test_the_device_query_reads_the_cpu_device() -> None:
    """ggml's backend device API, bound by hand, reads real numbers: the CPU device reports the
    machine's physical memory (ggml-cpu: sysconf pages x page size)."""
    cpus = [device for device in backend_devices() if device.kind == "cpu"]
    assert len(cpus) == 1
    assert cpus[0].total == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def test_a_build_without_gpu_offload_reports_no_gpu_memory() -> None:
    from painters_gguf.bindings import C

    if C.llama_supports_gpu_offload():
        pytest.skip("a GPU build: test_gpu_free_memory_sees_the_kv_cache checks what it reports")
    assert "gpu" not in [device.kind for device in backend_devices()]
    assert gpu_free_memory() is None


@pytest.mark.parametrize(("n_gpu_layers", "on_gpu"), [(-1, 30), (0, 0), (1, 0), (2, 1), (16, 15), (30, 29), (31, 30), (99, 30)])
def test_offloaded_slots_follow_llama_cpp_layer_placement(n_gpu_layers: int, on_gpu: int) -> None:
    """llama.cpp (llama-model.cpp, load_tensors) offloads block il when il >= n_layer + 1 - n_gpu_layers:
    the output layer goes first; the model's own order has one slot per block."""
    assert offloaded_slots(30, 30, n_gpu_layers) == on_gpu


def test_a_plans_slots_split_as_the_blocks_do() -> None:
    assert offloaded_slots(72, 30, 16) == 36  # looped parallel N=4 x3, half the blocks offloaded
    assert offloaded_slots(7, 30, 16) == 4  # rounded up: never less than the GPU may need


@pytest.fixture
def fake_gpu(tiny_model, monkeypatch):
    """The tiny model's real memory check as it runs with every layer on a GPU; the GPU's free
    memory is what the test gives `fake_gpu(free)`."""
    from painters_gguf import runtime

    monkeypatch.delenv("PAINTERS_GGUF_MEMORY_LIMIT", raising=False)
    monkeypatch.setattr(tiny_model, "n_gpu_layers", -1)
    return lambda free: monkeypatch.setattr(runtime, "gpu_free_memory", lambda: free)


def test_offloaded_kv_must_fit_the_gpu(tiny_model, fake_gpu) -> None:
    fake_gpu(tiny_model.kv_bytes(6, N_CTX))
    tiny_model.check_memory(6, N_CTX, "f16", what="plan 'a'")
    message = (
        "plan 'b': needs 224.0 KiB of GPU memory (KV cache of 7 slots x 256 cells on the GPU), more than the "
        "192.0 KiB free there; use a smaller --n-ctx or a shorter plan, or fewer --n-gpu-layers"
    )
    with pytest.raises(PlanError, match=f"^{re.escape(message)}$"):
        tiny_model.check_memory(7, N_CTX, "f16", what="plan 'b'")


def test_with_part_of_the_model_offloaded_its_share_of_the_kv_goes_to_the_gpu(tiny_model, fake_gpu, monkeypatch) -> None:
    fake_gpu(tiny_model.kv_bytes(3, N_CTX))
    monkeypatch.setattr(tiny_model, "n_gpu_layers", 4)  # the output layer and blocks 3-5 of 0-5
    tiny_model.check_memory(6, N_CTX, "f16", what="the model's own order")  # 3 slots on the GPU
    with pytest.raises(PlanError, match=r"KV cache of 4 slots x 256 cells on the GPU"):
        tiny_model.check_memory(7, N_CTX, "f16", what="plan")
    monkeypatch.setattr(tiny_model, "n_gpu_layers", -1)
    with pytest.raises(PlanError, match=r"KV cache of 6 slots x 256 cells on the GPU"):
        tiny_model.check_memory(6, N_CTX, "f16", what="the model's own order")


def test_the_kv_left_on_the_host_must_fit_its_memory(tiny_model, fake_gpu, monkeypatch) -> None:
    n_ctx = 2**31 - 1  # 3 host slots of these: 768 GiB, more than this machine has available
    fake_gpu(tiny_model.kv_bytes(3, n_ctx))  # the GPU holds its 3 slots
    monkeypatch.setattr(tiny_model, "n_gpu_layers", 4)
    with pytest.raises(PlanError, match=r"\(KV cache of 3 slots x 2147483647 cells\), more than the .* of memory available"):
        tiny_model.check_memory(6, n_ctx, "f16", what="plan")


def test_a_model_on_the_cpu_does_not_ask_the_gpu(tiny_model, fake_gpu, monkeypatch) -> None:
    fake_gpu(0)
    monkeypatch.setattr(tiny_model, "n_gpu_layers", 0)
    tiny_model.check_memory(6, N_CTX, "f16", what="plan")


def test_the_memory_limit_overrides_the_gpu_check(tiny_model, fake_gpu, monkeypatch) -> None:
    """PAINTERS_GGUF_MEMORY_LIMIT bounds the whole need (KV and logits) wherever it lives."""
    fake_gpu(0)  # not asked: the limit says how much there is
    monkeypatch.setenv("PAINTERS_GGUF_MEMORY_LIMIT", str(tiny_model.kv_bytes(6, N_CTX)))
    tiny_model.check_memory(6, N_CTX, "f16", what="plan 'a'")
    message = (
        "plan 'b': needs 224.0 KiB (KV cache of 7 slots x 256 cells), more than the 192.0 KiB of memory available; "
        "use a smaller --n-ctx or a shorter plan"
    )
    with pytest.raises(PlanError, match=f"^{re.escape(message)}$"):
        tiny_model.check_memory(7, N_CTX, "f16", what="plan 'b'")


def test_a_plan_too_big_for_the_gpu_is_refused_before_it_is_set(tiny_model, fake_gpu) -> None:
    fake_gpu(tiny_model.kv_bytes(6, N_CTX))
    small = Plan.parse("0,1,4,5")
    with tiny_model.context(n_ctx=N_CTX) as ctx:  # the model's own 6 slots fit
        ctx.set_plan(small)
        big = Plan.parse("0,1,3x3,4,5")  # 7 slots
        with pytest.raises(PlanError, match=f"^{re.escape(f'plan {big.text!r}: needs 224.0 KiB of GPU memory')}"):
            ctx.set_plan(big)
        assert ctx.plan == small and ctx.n_slots == 4


# --- layer plans on a CUDA device ---


@pytest.fixture(scope="module")
def cuda() -> None:
    """Skip without a CUDA device (fail instead under PAINTERS_GGUF_REQUIRE_GPU=1)."""
    from painters_gguf.bindings import C

    if not C.llama_supports_gpu_offload():
        reason = "this llama.cpp build has no GPU offload (scripts/gpu-check.sh builds and tests a CUDA one)"
    elif gpu_free_memory() is None:
        reason = "this CUDA build of llama.cpp finds no GPU device (see nvidia-smi and CUDA_VISIBLE_DEVICES)"
    else:
        return
    if os.environ.get("PAINTERS_GGUF_REQUIRE_GPU") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclasses.dataclass(frozen=True)
class GpuCase:
    plans: tuple[str, ...]  # the plan shapes the model's CPU tests use
    chunks: tuple[int, ...]  # tokens per decode when decoding through the KV cache
    tolerance: float  # RMS relative error of logits between two kernel paths (below)


# How far a plan's logits may move when only the kernels that compute them change (`rms_error`):
# the GPU against the CPU, and on the GPU chunked decoding against one pass (batches of up to 8
# tokens take the mat-vec kernels, larger ones the tiled matrix kernels; attention kernels too
# are chosen by batch size).
# - Tiny F32 llama: 5e-3. ggml-cuda multiplies F32 matrices on TF32 tensor cores (10-bit mantissa:
#   cuBLAS in CUBLAS_TF32_TENSOR_OP_MATH and its own mma kernels), 1 to 3 columns in exact FP32
#   mat-vec kernels. The float64 reference with the inputs of every product rounded to TF32 moves
#   these plans' logits by 2e-4 to 8e-4; 5e-3 is 6 times that and far below both the 0.55 between
#   any two of the plans and the 1e-2 (max relative) a KV slot shared by repeated blocks costs.
# - Quantized checkpoints: both sides multiply with 8-bit-quantized activations, where a last-bit
#   difference upstream flips a rounding downstream. On the CPU, where decoding in chunks of 1 or 5
#   tokens changes kernel paths too, that moved logits by 0 (SmolLM2, Q4_1), 0.009 to 0.015
#   (Qwen2.5) and 0.039 to 0.055 (Gemma 3, Q4_K_M). Each tolerance is at least 0.05 and twice the
#   CPU's own spread, and below half of PLANS_APART (0.25), which any two of the plans exceed.
GPU_CASES = {
    "tiny-llama": GpuCase(tuple(PLAN_TEXTS), (1, 4, 7), 5e-3),
    "smollm2-135m": GpuCase(("0-9,{10-19}x3,20-29", "0-3,26-29", "0,15x4,29"), (1, 5), 0.05),  # test_runtime_smollm2's
    "gemma3-270m": GpuCase(tuple(PLANS["gemma3-270m"]), (1, 5), 0.12),
    "qwen2.5-0.5b": GpuCase(tuple(PLANS["qwen2.5-0.5b"]), (1, 5), 0.05),
}


def prompt_tokens(name: str, model) -> list[int]:
    """The tokens the model's CPU tests use (the tiny model has no tokenizer)."""
    if name == "tiny-llama":
        return TOKENS
    if name == "smollm2-135m":
        return model.tokenize(SMOLLM2_PROMPT)
    return model.tokenize(CHECKPOINT_PROMPT, add_bos=CHECKPOINTS[name][4])


@pytest.fixture(scope="module", params=sorted(GPU_CASES))
def on_gpu_and_cpu(request: pytest.FixtureRequest, cuda, tiny_gguf):
    """(name, case, a context with every layer on the GPU, the same on the CPU, prompt tokens)."""
    from painters_gguf.runtime import Model

    name = request.param
    path = tiny_gguf if name == "tiny-llama" else catalog_path(name)
    # as the CPU tests: the tiny model with an F32 KV cache and no flash attention, the checkpoints as they come
    settings = {"kv_type": "f32", "flash_attn": "off"} if name == "tiny-llama" else {}
    with Model(path, n_gpu_layers=-1) as gpu_model, Model(path) as cpu_model:
        with gpu_model.context(n_ctx=N_CTX, **settings) as gpu, cpu_model.context(n_ctx=N_CTX, **settings) as cpu:
            yield name, GPU_CASES[name], gpu, cpu, prompt_tokens(name, gpu_model)


def report(name: str, what: str, errors: dict, tolerance: float) -> None:
    """The measured errors, for the record (scripts/gpu-check.sh shows them)."""
    for key, error in errors.items():
        print(f"{name}: {what} {key}: RMS relative {error:.1e} (tolerance {tolerance:g})")


def test_identity_plan_is_bitwise_no_plan_on_the_gpu(on_gpu_and_cpu) -> None:
    _, _, gpu, _, tokens = on_gpu_and_cpu
    gpu.set_plan(None)
    default = gpu.logits(tokens)
    gpu.set_plan(variants.full(gpu.model.n_layer))
    identity = gpu.logits(tokens)
    gpu.set_plan(None)
    again = gpu.logits(tokens)
    assert np.array_equal(default, again)  # the same bits run to run
    assert np.array_equal(default, identity)


def test_chunked_decode_equals_one_pass_on_the_gpu(on_gpu_and_cpu) -> None:
    name, case, gpu, _, tokens = on_gpu_and_cpu
    errors = {}
    for text in case.plans:
        gpu.set_plan(Plan.parse(text))
        whole = gpu.logits(tokens)
        for chunk in case.chunks:
            errors[text, chunk] = rms_error(chunked_logits(gpu, tokens, chunk), whole)
    report(name, "chunked vs one pass (plan, chunk)", errors, case.tolerance)
    assert max(errors.values()) < case.tolerance, errors


def test_plans_agree_with_the_cpu(on_gpu_and_cpu) -> None:
    name, case, gpu, cpu, tokens = on_gpu_and_cpu
    errors, outputs = {}, {}
    for text in case.plans:
        gpu.set_plan(Plan.parse(text))
        cpu.set_plan(Plan.parse(text))
        outputs[text] = gpu.logits(tokens)
        errors[text] = rms_error(outputs[text], cpu.logits(tokens))
    report(name, "GPU vs CPU, plan", errors, case.tolerance)
    assert max(errors.values()) < case.tolerance, errors
    apart = {pair: rms_error(outputs[pair[0]], outputs[pair[1]]) for pair in itertools.combinations(case.plans, 2)}
    assert min(apart.values()) > PLANS_APART, apart  # the agreement tells plans apart


@pytest.fixture(scope="module")
def smollm2_on_gpu(cuda, smollm2_path):
    from painters_gguf.runtime import Model

    with Model(smollm2_path, n_gpu_layers=-1) as model:
        yield model


def test_gpu_free_memory_sees_the_kv_cache(smollm2_on_gpu) -> None:
    """What gpu_free_memory() reads is the GPU's memory, live: a context's KV cache comes out of it."""
    model = smollm2_on_gpu
    n_ctx = 16384  # 30 slots: 360 MiB
    before = gpu_free_memory()
    with model.context(n_ctx=n_ctx):
        after = gpu_free_memory()
    assert before is not None and after is not None
    assert before - after >= model.kv_bytes(model.n_layer, n_ctx)


def test_a_plan_too_big_for_the_gpu_is_refused_up_front(smollm2_on_gpu, monkeypatch) -> None:
    """Refused by the memory check with one line, before llama.cpp allocates; the old plan stays."""
    monkeypatch.delenv("PAINTERS_GGUF_MEMORY_LIMIT", raising=False)
    model = smollm2_on_gpu
    free = gpu_free_memory()
    assert free is not None
    n_ctx = 256
    while model.kv_bytes(abi.MAX_SLOTS, n_ctx) <= free:  # the largest plan outgrows the GPU; 30 slots fit
        n_ctx *= 2
    tokens = model.tokenize(SMOLLM2_PROMPT)
    small = Plan.parse("0-3,26-29")
    with model.context(n_ctx=n_ctx) as ctx:
        ctx.set_plan(small)
        before = ctx.logits(tokens)
        with pytest.raises(PlanError, match=rf"of GPU memory \(KV cache of {abi.MAX_SLOTS} slots x {n_ctx} cells on the GPU\)"):
            ctx.set_plan(Plan.parse(f"15x{abi.MAX_SLOTS}"))
        assert ctx.plan == small
        assert np.array_equal(ctx.logits(tokens), before)


def test_shared_prefix_sweeps_store_what_plan_by_plan_stores_on_the_gpu(smollm2_on_gpu, shared_data, tmp_path) -> None:
    """The shared-prefix sweep reads hidden states out of the graph between kernels; on the GPU
    that must change no number either (kernel fusion across the read-out point would)."""
    from test_shared_prefix import middle_grids, sweep_store

    grids = {v: [p for p in points if p.n in (3, 12) and p.seed in (None, 0)] for v, points in middle_grids(30).items()}
    tasks = {"arc_easy": 10, "lambada_openai": 10}
    plain = sweep_store(smollm2_on_gpu, shared_data, tmp_path / "plain.db", grids, tasks, share=False)
    shared = sweep_store(smollm2_on_gpu, shared_data, tmp_path / "shared.db", grids, tasks, share=True)
    assert shared == plain
