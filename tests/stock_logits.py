"""Logits from the stock (unpatched) llama.cpp, through llama-cpp-python's own low-level API.

Run in a subprocess with LLAMA_CPP_LIB_PATH pointing at the stock library:
    python tests/stock_logits.py MODEL.gguf TOKENS.json OUT.npy N_CTX THREADS
It sets the same context parameters as painters_gguf.runtime.Context, so the logits of the
patched library's default order and identity plan must equal these bit for bit.
"""

import ctypes
import json
import sys

import numpy as np
from llama_cpp import llama_cpp as C


def main() -> None:
    model_path, tokens_path, out_path, n_ctx, threads = sys.argv[1:6]
    tokens = json.loads(open(tokens_path).read())
    assert not hasattr(C._lib, "llama_set_layer_plan"), "this must run on the stock library"
    quiet = C.llama_log_callback(lambda *args: None)  # referenced until exit: C calls it
    C.llama_log_set(quiet, ctypes.c_void_p(0))
    C.llama_backend_init()
    model = C.llama_model_load_from_file(model_path.encode(), C.llama_model_default_params())
    params = C.llama_context_default_params()
    params.n_ctx = int(n_ctx)
    params.n_batch = params.n_ubatch = 512
    params.n_seq_max = 1
    params.n_threads = params.n_threads_batch = int(threads)
    params.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_AUTO
    params.type_k = params.type_v = C.GGML_TYPE_F16
    params.kv_unified = True
    params.no_perf = True
    ctx = C.llama_init_from_model(model, params)
    batch = C.llama_batch_init(len(tokens), 0, 1)
    batch.n_tokens = len(tokens)
    for i, token in enumerate(tokens):
        batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, i, 1, 1
        batch.seq_id[i][0] = 0
    assert C.llama_decode(ctx, batch) == 0
    n_vocab = C.llama_vocab_n_tokens(C.llama_model_get_vocab(model))
    logits = np.ctypeslib.as_array(C.llama_get_logits(ctx), shape=(len(tokens), n_vocab)).copy()
    np.save(out_path, logits)


if __name__ == "__main__":
    main()
