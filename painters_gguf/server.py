"""`painters-gguf serve`: llama-cpp-python's OpenAI-compatible server over layer plans.

The app is llama-cpp-python's own (its router: /v1/completions, /v1/chat/completions, streaming,
/v1/embeddings, its request types, errors and API-key check), with three pieces of glue:

- `PlanProxy` takes the place of its `LlamaProxy`: one `PlanLlama` per served plan, all over one
  loaded `Model`, each under its own model id; an id the server does not have is a 400 (its proxy
  would quietly answer with the default model);
- a check before every request: the model id, and for a stream the prompt's length (after the
  stream has started, an error can no longer be a 400);
- /v1/models lists each plan with its text, slots and the model's sha256.
"""

from __future__ import annotations

import dataclasses
import re
import signal
import socket
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from painters_gguf import variants
from painters_gguf.errors import PaintersError
from painters_gguf.plan import Plan
from painters_gguf.plan_llama import PlanLlama
from painters_gguf.runtime import Model

try:
    import uvicorn
    from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
    from fastapi.middleware import Middleware
    from fastapi.responses import JSONResponse
    from llama_cpp.server import app as server_app
    from llama_cpp.server import types as server_types
    from llama_cpp.server.settings import ServerSettings
    from starlette.concurrency import run_in_threadpool
    from starlette_context.middleware import RawContextMiddleware
    from starlette_context.plugins import RequestIdPlugin
except ImportError as missing:
    raise PaintersError(
        f"serving needs llama-cpp-python's server packages ({missing.name} is missing): pip install 'painters-gguf[serve]'"
    ) from None

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]*")
TOO_LONG = re.compile(r"Requested tokens \(\d+\) exceed context window")  # llama-cpp-python's words


@dataclasses.dataclass(frozen=True)
class ServedPlan:
    """A plan and the model id clients ask for it by (None: the model's own layer order)."""

    id: str
    plan: Plan | None

    @property
    def text(self) -> str:
        return self.plan.text if self.plan is not None else "full"


def served_plans(
    specs: list[str], n_layer: int, *, n: int = 0, seed: int = 0, iters: int = 3, alias: str | None = None
) -> list[ServedPlan]:
    """`--plan` values, each `[NAME=]SPEC` (SPEC: a variant or a plan text), as model ids and plans.

    An unnamed plan is known by its text (`full` for the model's own order); `alias` names the
    first unnamed one instead. Ids are unique."""
    if alias is not None and not NAME.fullmatch(alias):
        raise PaintersError(f"--alias {alias!r}: a model id is letters, digits and . _ : / + -")
    if alias is not None and all("=" in spec for spec in specs):
        raise PaintersError("--alias names the first plan given without a NAME=, and every --plan has a name")
    served: list[ServedPlan] = []
    for spec in specs or ["full"]:
        name, _, text = spec.rpartition("=")
        if name and not NAME.fullmatch(name):
            raise PaintersError(f"--plan {spec!r}: a plan's name is letters, digits and . _ : / + - (as NAME=PLAN)")
        plan = variants.resolve(text.strip(), n_layer, n, seed=seed, iters=iters)
        plan_or_none = None if plan.is_identity(n_layer) else plan
        if not name and alias is not None:
            name, alias = alias, None
        served.append(ServedPlan(name or (plan_or_none.text if plan_or_none else "full"), plan_or_none))
    ids = [s.id for s in served]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise PaintersError(f"model id {twice[0]!r} names two plans: give them different names (NAME=PLAN)")
    return served


class RequestRefused(HTTPException):
    """A request the server will not run: OpenAI's error shape, status 400."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(status_code=400, detail=message)
        self.code = code


class PlanProxy:
    """Model ids to `PlanLlama`s over one `Model` (llama-cpp-python's endpoints call it with the
    request's `model`; None is the first plan)."""

    def __init__(self, model: Model, served: list[ServedPlan], llamas: list[PlanLlama], *, embedding: bool) -> None:
        self.model = model
        self.served = {s.id: s for s in served}
        self.llamas = {s.id: llama for s, llama in zip(served, llamas, strict=True)}
        self.default = served[0].id
        self.embedding = embedding

    def __call__(self, model_id: str | None = None) -> PlanLlama:
        if model_id is None:
            return self.llamas[self.default]
        if model_id not in self.llamas:
            raise RequestRefused(
                f"model {model_id!r} is not served here; the plans served are: {', '.join(self.llamas)}", "model_not_found"
            )
        return self.llamas[model_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.llamas)

    def card(self, model_id: str) -> dict[str, Any]:
        """The /v1/models entry of a plan: OpenAI's fields, and ours under `meta`."""
        llama, served = self.llamas[model_id], self.served[model_id]
        return {
            "id": model_id,
            "object": "model",
            "owned_by": "painters-gguf",
            "permissions": [],
            "meta": {
                "plan": served.text,
                "n_slots": llama.n_slots,
                "n_layer": self.model.n_layer,
                "n_ctx": llama.n_ctx(),
                "model": self.model.path.name,
                "arch": self.model.arch,
                "sha256": self.model.sha256,
            },
        }

    def stop(self) -> None:
        """End the generations in flight at their next token (the server is stopping)."""
        for llama in self.llamas.values():
            llama.stopping = True

    def close(self) -> None:
        """Free every context, then the weights."""
        for llama in self.llamas.values():
            llama.close()
        self.model.close()


def open_proxy(
    model: Model, served: list[ServedPlan], *, n_ctx: int, threads: int | None, flash_attn: str, embedding: bool = False
) -> PlanProxy:
    """A `PlanLlama` (context, KV slots) per served plan over the loaded model; with `embedding`,
    contexts that also give embeddings (/v1/embeddings)."""
    llamas: list[PlanLlama] = []
    try:
        for s in served:
            llamas.append(PlanLlama(model, s.plan, n_ctx=n_ctx, threads=threads, flash_attn=flash_attn, embedding=embedding))
    except BaseException:
        for llama in llamas:
            llama.close()
        raise
    return PlanProxy(model, served, llamas, embedding=embedding)


def check_prompt_fits(llama: PlanLlama, body: dict[str, Any]) -> None:
    """A completion or chat request's prompt against the context, before its stream starts:
    llama-cpp-python's ValueError when it does not fit."""
    chat = "messages" in body
    request_type = server_types.CreateChatCompletionRequest if chat else server_types.CreateCompletionRequest
    try:
        request = request_type(**body)
    except ValueError:
        return  # the endpoint answers with its own validation error
    kwargs = request.model_dump(exclude={"n", "best_of", "logit_bias_type", "user", "min_tokens", "logit_bias", "grammar"})
    if not chat and isinstance(kwargs.get("prompt"), list):
        kwargs["prompt"] = kwargs["prompt"][0] if kwargs["prompt"] else ""
    llama.measure_prompt(kwargs, chat=chat)


def create_app(proxy: PlanProxy, *, api_key: str | None = None) -> FastAPI:
    """llama-cpp-python's FastAPI app (its middleware, router and settings) over `proxy`."""
    settings = ServerSettings(api_key=api_key, interrupt_requests=False)  # a new request never cuts a stream short
    server_app.set_server_settings(settings)
    server_app._llama_proxy = proxy  # type: ignore[assignment]  # where its endpoints take their Llama

    async def check_request(request: Request) -> None:
        if request.method != "POST" or "json" not in request.headers.get("content-type", ""):
            return
        try:
            body = await request.json()
        except ValueError:
            return  # the endpoint answers with its own validation error
        if not isinstance(body, dict):
            return
        if request.url.path.endswith("/embeddings") and not proxy.embedding:
            raise RequestRefused("this server gives no embeddings: start it with --embedding", "embeddings_off")
        llama = proxy(body.get("model") if isinstance(body.get("model"), str) else None)
        if body.get("stream") and ("prompt" in body or "messages" in body):
            try:
                await run_in_threadpool(check_prompt_fits, llama, body)
            except ValueError as error:
                if not TOO_LONG.search(str(error)):
                    return  # the endpoint answers it as llama-cpp-python does
                raise RequestRefused(str(error), "context_length_exceeded") from None

    ours = APIRouter()

    @ours.get("/v1/models", dependencies=[Depends(server_app.authenticate)], tags=["OpenAI V1"])
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [proxy.card(model_id) for model_id in proxy]}

    app = FastAPI(
        middleware=[Middleware(RawContextMiddleware, plugins=(RequestIdPlugin(),))],
        title="painters-gguf: llama.cpp under layer plans",
    )
    app.include_router(ours)  # before llama-cpp-python's router: its /v1/models knows no plans
    # the API key first: a request without it learns nothing, not even which ids are served
    app.include_router(server_app.router, dependencies=[Depends(server_app.authenticate), Depends(check_request)])

    @app.exception_handler(RequestRefused)
    async def refused(_request: Request, error: RequestRefused) -> JSONResponse:
        body = {"message": error.detail, "type": "invalid_request_error", "param": None, "code": error.code}
        return JSONResponse({"error": body}, status_code=error.status_code)

    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), or one line saying why not."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as error:
        raise PaintersError(f"--host {host!r}: {getattr(error, 'strerror', None) or error}") from None
    problem: OSError | None = None
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
            return sock
        except OSError as error:
            sock.close()
            problem = problem or error
    raise PaintersError(f"cannot listen on {host}:{port}: {problem.strerror if problem else 'no address'}")


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, telling `on_stop` as soon as a signal asks it to stop."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_stop = on_stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.on_stop()
        super().handle_exit(sig, frame)


def serve(app: FastAPI, sock: socket.socket, proxy: PlanProxy, *, log_level: str = "info") -> str | None:
    """Serve until SIGINT or SIGTERM (uvicorn's graceful stop: a generation in flight ends at its
    next token), then close the socket; the name of the signal that stopped it. A signal before
    uvicorn takes them stops it as well; after it, uvicorn raises it again: here it is only noted."""
    server = _Uvicorn(uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5), proxy.stop)
    received: list[int] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        server.should_exit = True
        proxy.stop()

    previous = {signum: signal.signal(signum, note) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sock.close()
    return signal.Signals(received[0]).name if received else None
