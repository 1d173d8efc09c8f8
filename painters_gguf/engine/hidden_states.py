"""Hidden states read out of llama.cpp's graph while it runs, through its eval callback.

Under a plan our patch names the states it produces: `plan_inp` (the embedding output) and
`plan_out-<step>` (each step's output, repeats unrolled). Asking for a tensor makes the scheduler
stop after it and hand it over; the values computed are the same.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from painters_gguf.bindings import ggml


def step_output(step: int) -> str:
    """The graph's name for the hidden state after a plan's step (0-based, repeats unrolled)."""
    return f"plan_out-{step}"


class HiddenStates:
    """Collects named hidden states as a pass computes them: every state of the plan, or `names`.
    A state computed over several micro-batches is concatenated, rows in token order."""

    def __init__(self, n_embd: int, names: Collection[str] | None = None) -> None:
        self.n_embd = n_embd
        self.names = names
        self.states: dict[str, np.ndarray] = {}

    def wanted(self, name: str) -> bool:
        if self.names is not None:
            return name in self.names
        return name == "plan_inp" or name.startswith("plan_out-")

    def observe(self, tensor: int, ask: bool) -> bool:
        """The eval callback (`Context.set_eval_callback`): asked for each tensor whether it is
        wanted, then given each wanted one once computed."""
        name = (ggml.ggml_get_name(tensor) or b"").decode()
        if ask:
            return self.wanted(name)
        if self.wanted(name):
            nbytes = ggml.ggml_nbytes(tensor)
            data = np.empty(nbytes // 4, dtype=np.float32)
            ggml.ggml_backend_tensor_get(tensor, data.ctypes.data, 0, nbytes)
            previous = self.states.get(name)
            rows = data.reshape(-1, self.n_embd)  # (tokens in this micro-batch, n_embd)
            self.states[name] = rows if previous is None else np.concatenate([previous, rows])
        return True

    def take(self) -> dict[str, np.ndarray]:
        """The states collected by the last pass (the next starts empty)."""
        states, self.states = self.states, {}
        return states

    def ordered(self, n_steps: int) -> list[np.ndarray]:
        states = self.take()
        return [states["plan_inp"], *(states[step_output(s)] for s in range(n_steps))]
