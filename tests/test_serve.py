"""`painters-gguf serve` and `chat`: real server processes on 127.0.0.1, real HTTP clients, against
the project's own Python API under the same plans (SmolLM2 and Gemma 3 270M)."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import catalog_path
from serving import CLI, Server, log_softmax

from painters_gguf.engine.scoring import Scorer
from painters_gguf.plan import Plan
from painters_gguf.runtime import Model

N_CTX = 512
PLANS = {  # a sequential plan (a repeat), a parallel one, a looped-parallel one
    "smollm2-135m": {"seq": "0-14,10-29", "par": "0-4,{5-25},26-29", "loop": "0-4,{5-25}x3,26-29"},
    "gemma3-270m": {"seq": "0-8,6-17", "par": "0-5,{6-11},12-17", "loop": "0-5,{6-11}x2,12-17"},
}
# greedy: temperature 0, and no repeat penalty (llama-cpp-python's server defaults to 1.1; the Python API has none)
GREEDY = {"temperature": 0, "repeat_penalty": 1.0}
PROMPTS = ["The capital of France is", "Once upon a time, a painter", "def fibonacci(n):"]


def plan_args(plans: dict[str, str]) -> list[str]:
    return [arg for name, text in plans.items() for arg in ("--plan", f"{name}={text}")]


@pytest.fixture(scope="module", params=sorted(PLANS))
def served(request: pytest.FixtureRequest):
    """A server of every plan of PLANS and the full model, and the model in this process."""
    path = catalog_path(request.param)
    with Server("-m", str(path), "-c", str(N_CTX), *plan_args(PLANS[request.param]), "--plan", "full") as server:
        with Model(path) as model:
            yield server, model, PLANS[request.param]


def reference(model: Model, plan: Plan | None) -> Scorer:
    """The Python API under `plan`, its context set as the server's (flash attention as llama.cpp
    decides; BOS as the GGUF says)."""
    scorer = Scorer(
        model,
        n_ctx=N_CTX,
        n_batch=N_CTX,
        n_seq_max=1,
        threads=2,
        add_bos=model.meta("tokenizer.ggml.add_bos_token") == "true",
        flash_attn="auto",
    )
    scorer.set_plan(plan or Plan.sequential(range(model.n_layer)))
    return scorer


def echo_logprobs(server: Server, model_id: str, prompt: str) -> list[float | None]:
    body = {"model": model_id, "prompt": prompt, "max_tokens": 1, "temperature": 0, "echo": True, "logprobs": 3}
    return server.complete(body)["choices"][0]["logprobs"]["token_logprobs"]


def streamed_text(server: Server, path: str, body: dict) -> str:
    """The text of a streamed completion or chat reply, read as server-sent events."""
    parts = []
    with requests.post(f"{server.url}/{path}", json={**body, "stream": True}, stream=True, timeout=300) as response:
        assert response.status_code == 200, response.text
        for line in response.iter_lines(decode_unicode=True):
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choice = json.loads(line[len("data: ") :])["choices"][0]
            parts.append(choice["text"] if "text" in choice else choice["delta"].get("content") or "")
    return "".join(parts)


def test_completions_equal_the_python_api(served):
    """Greedy text (plain and streamed) and echo log-probabilities of every plan equal the Python API's."""
    server, model, plans = served
    answers = {}
    for model_id, text in [*plans.items(), ("full", None)]:
        plan = Plan.parse(text).check(model.n_layer) if text else None
        scorer = reference(model, plan)
        for prompt in PROMPTS[:2]:
            body = {"model": model_id, "prompt": prompt, "max_tokens": 16, **GREEDY}
            expected = scorer.generate(prompt, until=[], max_tokens=16)
            assert server.complete(body)["choices"][0]["text"] == expected, (model_id, prompt)
            assert streamed_text(server, "completions", body) == expected, (model_id, prompt)
        tokens = scorer.encode(PROMPTS[0])
        lls = log_softmax(scorer.ctx.logits(tokens))
        start = 1 if tokens[0] == model.bos and model.meta("tokenizer.ggml.add_bos_token") == "true" else 0
        # each prompt token from the row before it (llama-cpp-python 0.3.36 alone: from its own row)
        expected_lls = [float(lls[i - 1, tokens[i]]) for i in range(start + 1, len(tokens))]
        got = echo_logprobs(server, model_id, PROMPTS[0])
        assert got[0] is None and len(got) == len(tokens) - start + 1  # the prompt and the one generated token
        assert got[1 : len(tokens) - start] == pytest.approx(expected_lls, abs=1e-4), model_id
        answers[model_id] = tuple(round(x, 4) for x in got[1:])
        scorer.ctx.close()
    assert len(set(answers.values())) == len(answers), "every plan answers differently"


def test_models_lists_each_plan(served):
    server, model, plans = served
    cards = {card["id"]: card for card in requests.get(f"{server.url}/models", timeout=60).json()["data"]}
    assert list(cards) == [*plans, "full"]
    for model_id, text in plans.items():
        plan = Plan.parse(text)
        assert cards[model_id]["meta"]["plan"] == plan.text
        assert cards[model_id]["meta"]["n_slots"] == plan.n_slots
    assert cards["full"]["meta"]["n_slots"] == model.n_layer
    assert {card["meta"]["sha256"] for card in cards.values()} == {model.sha256}
    assert model.sha256[:12] in "".join(server.stdout)  # and in the start-up line


def test_chat_endpoint_streams_what_it_answers(served):
    server, _, plans = served
    body = {"model": "loop", "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 20, **GREEDY}
    response = server.post("chat/completions", body)
    assert response.status_code == 200, response.text
    reply = response.json()["choices"][0]["message"]["content"]
    assert reply and streamed_text(server, "chat/completions", body) == reply


@pytest.fixture(scope="module")
def smollm2_server(smollm2_path: Path):
    plans = PLANS["smollm2-135m"]
    with Server("-m", str(smollm2_path), "-c", str(N_CTX), *plan_args(plans), "--plan", "full") as server:
        yield server


def test_one_plan_server_answers_as_the_many_plan_server(smollm2_server: Server, smollm2_path: Path):
    plans = PLANS["smollm2-135m"]
    with Server("-m", str(smollm2_path), "-c", str(N_CTX), "--plan", plans["loop"]) as alone:
        for prompt in PROMPTS:
            body = {"prompt": prompt, "max_tokens": 12, **GREEDY}
            together = smollm2_server.complete({**body, "model": "loop"})
            assert alone.complete(body)["choices"][0]["text"] == together["choices"][0]["text"]
            assert echo_logprobs(alone, plans["loop"], prompt) == echo_logprobs(smollm2_server, "loop", prompt)


def test_chat_prompt_replies_as_the_server(smollm2_server: Server, smollm2_path: Path):
    message = "What do painters use?"
    body = {"model": "loop", "messages": [{"role": "user", "content": message}], "max_tokens": 24, **GREEDY}
    reply = smollm2_server.post("chat/completions", body).json()["choices"][0]["message"]["content"]
    result = subprocess.run(
        [CLI, "chat", "-m", str(smollm2_path), "--plan", PLANS["smollm2-135m"]["loop"], "-c", str(N_CTX), "-t", "2"]
        + ["--prompt", message, "--temperature", "0", "--max-tokens", "24"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == reply + "\n"


def test_chat_commands_switch_plans(smollm2_path: Path):
    """/plan, /full and /reset in an interactive chat fed through stdin; a bad plan is one line and
    the chat goes on; end of input leaves."""
    script = "\n".join(["Hi", "/plan 0-99", "/plan 0-4,{5-25}x3,26-29", "Hi", "/reset", "/full", "Hi", ""])
    result = subprocess.run(
        [CLI, "chat", "-m", str(smollm2_path), "-c", str(N_CTX), "-t", "2", "--temperature", "0", "--max-tokens", "12"],
        input=script,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "0-4,{5-25}x3,26-29 (72 KV slots)" in result.stderr
    assert "error:" in result.stderr and "0-99" in result.stderr
    assert "conversation cleared" in result.stderr


# --- bad input ---


def one_line_error(result: subprocess.CompletedProcess[str], part: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and part in lines[0], result.stderr


def serve_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "serve", "--threads", "2", *args], capture_output=True, text=True, timeout=300)


def test_bad_plans_at_start_up(smollm2_path: Path):
    one_line_error(serve_cli("-m", str(smollm2_path), "--port", "0", "--plan", "0-99"), "0-99")
    twice = serve_cli("-m", str(smollm2_path), "--port", "0", "--plan", "a=0-3", "--plan", "a=full")
    one_line_error(twice, "'a' names two plans")
    one_line_error(serve_cli("-m", str(smollm2_path), "--port", "0", "--plan", "a b=0-3"), "a plan's name")


def test_port_in_use_or_unbindable(smollm2_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        one_line_error(serve_cli("-m", str(smollm2_path), "--port", str(port)), f"cannot listen on 127.0.0.1:{port}")
    # an address of no interface here (TEST-NET-1, RFC 5737): nothing is sent anywhere
    one_line_error(serve_cli("-m", str(smollm2_path), "--host", "192.0.2.1", "--port", "0"), "cannot listen on 192.0.2.1")


def test_refused_requests_leave_the_server_serving(smollm2_server: Server):
    good = {"model": "loop", "prompt": PROMPTS[0], "max_tokens": 8, **GREEDY}
    expected = smollm2_server.complete(good)["choices"][0]["text"]
    long_prompt = "paint " * (N_CTX + 10)
    long_chat = {"model": "loop", "messages": [{"role": "user", "content": long_prompt}]}
    refused = [
        ("completions", {**good, "model": "nope"}, "model_not_found"),
        ("completions", {**good, "model": "nope", "stream": True}, "model_not_found"),
        ("chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "Hi"}]}, "model_not_found"),
        ("completions", {**good, "prompt": long_prompt}, "context_length_exceeded"),
        ("completions", {**good, "prompt": long_prompt, "stream": True}, "context_length_exceeded"),
        ("chat/completions", long_chat, "context_length_exceeded"),
        (
            "chat/completions",
            {**long_chat, "stream": True},
            "context_length_exceeded",
        ),
    ]
    for path, body, code in refused:
        response = smollm2_server.post(path, body)
        assert response.status_code == 400, (path, body.get("stream"), response.text)
        assert response.json()["error"]["code"] == code
        if code == "model_not_found":  # names what is served
            message = response.json()["error"]["message"]
            assert "'nope'" in message and "seq, par, loop, full" in message
    assert smollm2_server.complete(good)["choices"][0]["text"] == expected


def test_a_client_leaving_mid_stream(smollm2_server: Server):
    body = {"model": "par", "prompt": PROMPTS[1], "max_tokens": 12, **GREEDY}
    expected = smollm2_server.complete(body)["choices"][0]["text"]
    with requests.post(
        f"{smollm2_server.url}/completions", json={**body, "max_tokens": 200, "stream": True}, stream=True, timeout=300
    ) as response:
        first = next(line for line in response.iter_lines() if line.startswith(b"data: "))
        assert json.loads(first[len(b"data: ") :])["choices"]
    # the connection is closed here, mid-stream; the server goes on and answers the same as before
    assert smollm2_server.complete(body)["choices"][0]["text"] == expected
    assert streamed_text(smollm2_server, "completions", body) == expected


def test_concurrent_requests_are_not_mixed_up(smollm2_server: Server):
    bodies = [
        {"model": model_id, "prompt": prompt, "max_tokens": 10, **GREEDY}
        for model_id in ("seq", "loop", "full")
        for prompt in PROMPTS
    ][:8]
    expected = [smollm2_server.complete(body)["choices"][0]["text"] for body in bodies]

    def ask(index: int) -> str:
        if index % 2:
            return streamed_text(smollm2_server, "completions", bodies[index])
        return smollm2_server.complete(bodies[index])["choices"][0]["text"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, range(len(bodies))))
    assert len(bodies) == 8 and answers == expected


def test_api_key(smollm2_path: Path):
    with Server("-m", str(smollm2_path), "-c", "128", "--api-key", "sesame") as server:
        body = {"prompt": "Hi", "max_tokens": 2}
        assert server.post("completions", body).status_code == 401
        assert server.post("completions", body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert requests.get(f"{server.url}/models", timeout=60).status_code == 401
        assert server.post("completions", body, headers={"Authorization": "Bearer sesame"}).status_code == 200
        wrong = {"Authorization": "Bearer wrong"}  # the key is checked before anything else is said
        assert server.post("completions", {**body, "model": "nope"}, headers=wrong).status_code == 401
        assert server.post("completions", {**body, "stream": True}, headers=wrong).status_code == 401
        assert server.post("embeddings", {"input": "Hi"}, headers=wrong).status_code == 401


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_stop_cleanly_and_free_the_port(smollm2_path: Path, signum: int):
    server = Server("-m", str(smollm2_path), "-c", "128")
    assert server.complete({"prompt": "Hi", "max_tokens": 2})["choices"]
    code, stderr = server.stop(signum)
    assert code == 0 and f"stopped ({signal.Signals(signum).name})" in stderr and "Traceback" not in stderr
    with socket.socket() as again:  # the port is free again
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", server.port))


def test_embeddings_are_each_tokens_last_hidden_state(smollm2_server: Server, smollm2_path: Path, smollm2: Model):
    """With --embedding, /v1/embeddings under a plan gives each token's normed last hidden state,
    as the Python API reads it from the graph (`result_norm`); without it, a 400 that says so."""
    from painters_gguf.engine.hidden_states import HiddenStates

    refused = smollm2_server.post("embeddings", {"model": "loop", "input": "The painter"})
    assert refused.status_code == 400 and "--embedding" in refused.json()["error"]["message"]
    plans = PLANS["smollm2-135m"]
    text = "The painter mixed his colours."
    with Server("-m", str(smollm2_path), "-c", "128", "--embedding", *plan_args(plans), "--plan", "full") as server:
        got = {}
        for model_id in ("loop", "full"):
            response = server.post("embeddings", {"model": model_id, "input": text})
            assert response.status_code == 200, response.text
            got[model_id] = np.array(response.json()["data"][0]["embedding"])
    for model_id, plan in (("loop", Plan.parse(plans["loop"])), ("full", None)):
        with smollm2.context(n_ctx=128, threads=2) as ctx:
            ctx.set_plan(plan)
            states = HiddenStates(smollm2.n_embd, names={"result_norm"})
            ctx.set_eval_callback(states.observe)
            ctx.logits(smollm2.tokenize(text))
            expected = states.take()["result_norm"]
        assert got[model_id].shape == expected.shape
        assert np.allclose(got[model_id], expected, atol=1e-4), model_id
    assert not np.allclose(got["loop"], got["full"], atol=0.1)


def test_offsets_and_text_of_the_echo(served):
    """Each echoed token's text sits at its offset in the echoed text, the prompt as given (Gemma:
    SentencePiece after BOS; SmolLM2: byte pairs, no BOS)."""
    server, _, _ = served
    for prompt in PROMPTS:
        choice = server.complete({"prompt": prompt, "max_tokens": 3, "echo": True, "logprobs": 2, **GREEDY})["choices"][0]
        text, logprobs = choice["text"], choice["logprobs"]
        assert text.startswith(prompt)
        for offset, token in zip(logprobs["text_offset"], logprobs["tokens"], strict=True):
            assert text[offset : offset + len(token)] == token, (prompt, offset, token)


def test_streamed_logprobs_equal_the_plain_ones(smollm2_server: Server):
    body = {"model": "par", "prompt": PROMPTS[2], "max_tokens": 6, "logprobs": 2, **GREEDY}
    smollm2_server.complete({**body, "logprobs": None})  # a request without logits kept, first
    plain = smollm2_server.complete(body)["choices"][0]["logprobs"]["token_logprobs"]
    streamed = []
    with requests.post(f"{smollm2_server.url}/completions", json={**body, "stream": True}, stream=True, timeout=300) as response:
        assert response.status_code == 200, response.text
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("data: {"):
                logprobs = json.loads(line[len("data: ") :])["choices"][0]["logprobs"]
                streamed += logprobs["token_logprobs"] if logprobs else []
    assert streamed == pytest.approx(plain, abs=1e-5) and len(plain) == 6


def test_alias_names_the_first_unnamed_plan(smollm2_path: Path):
    with Server("-m", str(smollm2_path), "-c", "128", "--plan", "0-14,10-29", "--plan", "full", "--alias", "mine") as server:
        ids = [card["id"] for card in requests.get(f"{server.url}/models", timeout=60).json()["data"]]
        assert ids == ["mine", "full"]
    one_line_error(serve_cli("-m", str(smollm2_path), "--port", "0", "--alias", "a b"), "--alias 'a b'")
    one_line_error(serve_cli("-m", str(smollm2_path), "--port", "0", "--plan", "x=full", "--alias", "y"), "--alias names")


def test_chat_with_a_bad_plan_or_host(smollm2_path: Path):
    chat = subprocess.run(
        [CLI, "chat", "-m", str(smollm2_path), "--plan", "0-99", "--prompt", "Hi"], capture_output=True, text=True, timeout=300
    )
    one_line_error(chat, "0-99")
    one_line_error(serve_cli("-m", str(smollm2_path), "--host", "a" * 300, "--port", "0"), "--host")


def test_stopping_with_a_generation_in_flight(smollm2_path: Path):
    """SIGTERM while a long reply streams: the reply ends at its next token, the server stops."""
    server = Server("-m", str(smollm2_path), "-c", "2048")
    body = {"prompt": "Once upon a time", "max_tokens": 2000, "stream": True, **GREEDY, "stop": []}
    with requests.post(f"{server.url}/completions", json=body, stream=True, timeout=300) as response:
        lines = response.iter_lines()
        next(line for line in lines if line.startswith(b"data: "))
        code, stderr = server.stop(signal.SIGTERM)
        tokens = sum(1 for line in lines if line.startswith(b"data: {"))
    assert code == 0 and "stopped (SIGTERM)" in stderr, stderr[-2000:]
    assert tokens < 1900  # cut short, not run to the end


def test_llama_cpp_pythons_own_echo_is_shifted_and_ours_is_not(smollm2: Model):
    """llama-cpp-python 0.3.36 alone (its issue #1983): " painter" after "The" scored from its own
    logits row, not the row before it; PlanLlama scores it from the row before (the model's value)."""
    import llama_cpp

    from painters_gguf.plan_llama import PlanLlama, _built_on

    with smollm2.context(n_ctx=64, threads=2) as ctx:
        tokens = smollm2.tokenize("The painter")
        true_value = float(log_softmax(ctx.logits(tokens))[0, tokens[1]])
    with _built_on(smollm2, "auto"):
        stock = llama_cpp.Llama(str(smollm2.path), n_ctx=64, n_threads=2, logits_all=True, verbose=False)
    ours = PlanLlama(smollm2, None, n_ctx=64, threads=2)
    try:
        echo = {"max_tokens": 1, "echo": True, "logprobs": 1, **GREEDY}
        theirs = stock.create_completion("The painter", **echo)["choices"][0]["logprobs"]["token_logprobs"]
        mine = ours.create_completion("The painter", **echo)["choices"][0]["logprobs"]["token_logprobs"]
    finally:
        stock.close()
        ours.close()
    assert mine[1] == pytest.approx(true_value, abs=1e-4)
    assert abs(theirs[1] - true_value) > 1.0  # measured: -8.84 against -17.86
