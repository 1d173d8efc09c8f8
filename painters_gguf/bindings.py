"""llama-cpp-python's library with our patch's functions bound: the one place that talks ctypes
to `include/llama-layer-plan.h`, and llama.cpp's log kept off the terminal.

llama-cpp-python's own bindings (`llama_cpp.llama_cpp`) are used as they are; the functions our
patch adds are declared here on the same library.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from painters_gguf import abi
from painters_gguf.errors import PlanError, RuntimeMissingError
from painters_gguf.plan import Plan

BUILD_COMMAND = "python patches/build_wheel.py"

try:
    import llama_cpp
    from llama_cpp import _ggml
    from llama_cpp import llama_cpp as C
except (ImportError, OSError) as err:  # OSError: the shared library failed to load
    raise RuntimeMissingError(
        f"llama_cpp (the patched llama-cpp-python) is not usable here ({err}): run `{BUILD_COMMAND}`"
    ) from None

lib = C._lib
if not hasattr(lib, "llama_set_layer_plan"):
    raise RuntimeMissingError(
        f"the llama_cpp library at {Path(llama_cpp.__file__).parent} is a stock build without "
        f"layer plans: run `{BUILD_COMMAND}` to build and install the patched one"
    )

# our patch's functions (include/llama-layer-plan.h)
lib.llama_layer_plan_validate.argtypes = [C.llama_model_p_ctypes, ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t]
lib.llama_layer_plan_validate.restype = ctypes.c_int32
lib.llama_set_layer_plan.argtypes = [C.llama_context_p_ctypes, ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t]
lib.llama_set_layer_plan.restype = ctypes.c_int32
lib.llama_layer_plan_n_slots.argtypes = [C.llama_context_p_ctypes]
lib.llama_layer_plan_n_slots.restype = ctypes.c_int32
lib.llama_layer_plan_slot_layer.argtypes = [C.llama_context_p_ctypes, ctypes.c_int32]
lib.llama_layer_plan_slot_layer.restype = ctypes.c_int32
lib.llama_set_eval_callback.argtypes = [C.llama_context_p_ctypes, C.ggml_backend_sched_eval_callback, ctypes.c_void_p]
lib.llama_set_eval_callback.restype = None
lib.llama_layer_plan_supported.argtypes = [C.llama_model_p_ctypes]
lib.llama_layer_plan_supported.restype = ctypes.c_int32
lib.llama_layer_plan_arch.argtypes = [ctypes.c_int32]
lib.llama_layer_plan_arch.restype = ctypes.c_char_p
lib.llama_layer_plan_layer_swa.argtypes = [C.llama_model_p_ctypes, ctypes.c_int32]
lib.llama_layer_plan_layer_swa.restype = ctypes.c_int32

# ggml's functions we call: tensors the eval callback hands over, the backends' devices and memory
ggml = _ggml.libggml
ggml.ggml_get_name.argtypes = [ctypes.c_void_p]
ggml.ggml_get_name.restype = ctypes.c_char_p
ggml.ggml_nbytes.argtypes = [ctypes.c_void_p]
ggml.ggml_nbytes.restype = ctypes.c_size_t
ggml.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
ggml.ggml_backend_tensor_get.restype = None
ggml.ggml_backend_dev_count.argtypes = []
ggml.ggml_backend_dev_count.restype = ctypes.c_size_t
ggml.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
ggml.ggml_backend_dev_get.restype = ctypes.c_void_p
ggml.ggml_backend_dev_name.argtypes = [ctypes.c_void_p]
ggml.ggml_backend_dev_name.restype = ctypes.c_char_p
ggml.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
ggml.ggml_backend_dev_type.restype = ctypes.c_int
ggml.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)]
ggml.ggml_backend_dev_memory.restype = None


def plan_architectures() -> list[str]:
    """The architectures (general.architecture) whose graphs the library runs under a plan."""
    names: list[str] = []
    while (name := lib.llama_layer_plan_arch(len(names))) is not None:
        names.append(name.decode())
    return names


class LlamaLog:
    """Keeps llama.cpp's log off the terminal; the last error lines explain a failed call."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.callback = C.llama_log_callback(self._on_log)  # kept alive as long as C may call it
        C.llama_log_set(self.callback, ctypes.c_void_p(0))

    def _on_log(self, level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
        if level == 4:  # GGML_LOG_LEVEL_ERROR
            self.errors = [*self.errors[-9:], text.decode("utf-8", "replace").strip()]

    def take(self) -> str:
        """The first error line since the last take, without llama.cpp's function-name prefix."""
        lines = [line for line in self.errors if line]
        self.errors = []
        if not lines:
            return ""
        return lines[0].split(": error loading model: ", 1)[-1]


LOG = LlamaLog()
C.llama_backend_init()


def set_layer_plan(ctx: C.llama_context_p, plan: Plan | None) -> None:
    """Set `plan` on a context (None: the model's own order), raising a PlanError naming it if C refuses."""
    flat = plan.encode() if plan is not None else []
    status = lib.llama_set_layer_plan(ctx, (ctypes.c_int32 * len(flat))(*flat) if flat else None, len(flat))
    call_plan_status(status, plan)


def call_plan_status(status: int, plan: Plan | None) -> None:
    """Turn a C return code into an exception naming the plan."""
    if status == abi.PlanStatus.OK:
        return
    try:
        message = abi.STATUS_MESSAGES[abi.PlanStatus(status)]
    except ValueError:
        message = f"unknown status {status}"
    what = f"plan {plan.text!r}" if plan is not None else "the default plan"
    detail = LOG.take()
    raise PlanError(f"{what}: {message}" + (f" ({detail})" if detail else ""))


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C taken after the block, not inside it. While llama.cpp calls back into Python (its log
    callback, the eval callback), a KeyboardInterrupt raised there cannot cross into C: ctypes
    drops it. C code is not interrupted by Python's handler anyway: nothing comes later."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt
