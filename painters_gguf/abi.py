"""The C side of layer plans, defined once: mirrors `include/llama-layer-plan.h` of our patch.

A plan crosses into C as a flat int32 array of steps, each `repeat, n, layer_0 .. layer_{n-1}`.
"""

from __future__ import annotations

import enum

# the largest number of block executions (KV slots) the C side accepts
MAX_SLOTS = 16384
# llama.cpp keeps cell and token counts in uint32 and int32 fields
MAX_CELLS = 2**31 - 1


class PlanStatus(enum.IntEnum):
    """Return codes of llama_set_layer_plan / llama_layer_plan_validate."""

    OK = 0
    ERR_INVALID = -1  # malformed plan: header, empty step, layer id out of range, too large
    ERR_ARCH = -2  # the model's architecture (or this context's graph) does not run layer plans
    ERR_ALLOC = -3  # the KV cache or compute buffers for the plan could not be allocated
    ERR_CONTEXT = -4  # null argument, or a context without a plain or iSWA KV cache


STATUS_MESSAGES: dict[PlanStatus, str] = {
    PlanStatus.ERR_INVALID: "the runtime rejected the plan as malformed",
    PlanStatus.ERR_ARCH: "this model's architecture does not run layer plans",
    PlanStatus.ERR_ALLOC: "the KV cache or compute buffers for the plan could not be allocated",
    PlanStatus.ERR_CONTEXT: "the context cannot take a plan (no plain or iSWA KV cache)",
}
