"""`painters-gguf serve` (an OpenAI-compatible server) and `painters-gguf chat` (a terminal chat), any plan."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from painters_gguf import variants
from painters_gguf.abi import MAX_CELLS
from painters_gguf.cli import options
from painters_gguf.cli.console import err, out, untrusted, visible
from painters_gguf.cli.session import load_model
from painters_gguf.errors import PaintersError

if TYPE_CHECKING:
    from painters_gguf.plan import Plan
    from painters_gguf.plan_llama import PlanLlama
    from painters_gguf.server import PlanProxy

PlanSpecs = Annotated[
    list[str] | None,
    typer.Option(
        "--plan",
        help=f"A plan to serve, as [NAME=]PLAN; repeat for several (weights loaded once). PLAN: {variants.names_help()}; "
        "or a plan text like 0-3,{4-27}x3,28-29. Its model id is NAME, else the plan text. Default: full.",
    ),
]
ServeNCtx = Annotated[int, typer.Option("--n-ctx", "-c", min=16, max=MAX_CELLS, help="Context size of each plan, in tokens.")]


def serve(
    model: options.Model = None,
    plans: PlanSpecs = None,
    n: options.N = 0,
    seed: options.Seed = 0,
    iters: options.Iters = 3,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface, on purpose only).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one, printed at start-up).")] = 8080,
    n_ctx: ServeNCtx = 2048,
    threads: options.Threads = None,
    n_gpu_layers: options.NGpuLayers = 0,
    flash_attn: options.FlashAttn = options.FlashAttention.AUTO,
    api_key: Annotated[str | None, typer.Option("--api-key", help="Require this bearer key on every request.")] = None,
    alias: Annotated[str | None, typer.Option("--alias", help="Model id of the first plan given without a NAME=.")] = None,
    embedding: Annotated[
        bool, typer.Option("--embedding", metavar="", help="Also serve /v1/embeddings (each token's last hidden state, normed).")
    ] = False,
) -> None:
    """Serve plans over an OpenAI-compatible HTTP API (llama-cpp-python's server): /v1/models,
    /v1/completions (echo + logprobs, as lm-eval's completions backends use it), /v1/chat/completions,
    streaming, /v1/embeddings with --embedding. Each plan is its own model id; the weights are loaded once."""
    from painters_gguf import server

    path, llm = load_model(model, n_gpu_layers=n_gpu_layers)
    served = server.served_plans(plans or [], llm.n_layer, n=n, seed=seed, iters=iters, alias=alias)
    for s in served:
        if s.plan is not None:
            llm.validate_plan(s.plan)  # in Python and in C, before anything listens
    sock = server.bind(host, port)  # before the contexts: a port in use is said at once
    with err.status("creating a context per plan ..."):
        proxy = server.open_proxy(llm, served, n_ctx=n_ctx, threads=threads, flash_attn=flash_attn.value, embedding=embedding)
    try:
        app = server.create_app(proxy, api_key=api_key)
        shown_host = f"[{host}]" if ":" in host else host
        url = f"http://{shown_host}:{sock.getsockname()[1]}/v1"
        out.print(plans_table(proxy))
        out.print(f"{untrusted(path.name)} (sha256 {llm.sha256[:12]}) at {url}", soft_wrap=True, highlight=False)
        stopped_by = server.serve(app, sock, proxy)
        err.print(f"stopped ({stopped_by})" if stopped_by else "stopped")
    finally:
        proxy.close()


def plans_table(proxy: PlanProxy) -> Table:
    table = Table(title="plans served", title_justify="left")
    table.add_column("model id")
    table.add_column("plan")
    table.add_column("KV slots", justify="right")
    for model_id in proxy:
        card = proxy.card(model_id)
        table.add_row(untrusted(model_id), escape(card["meta"]["plan"]), str(card["meta"]["n_slots"]))
    return table


def chat(
    model: options.Model = None,
    plan: Annotated[
        str, typer.Option("--plan", help=f"A variant: {variants.names_help()}; or a plan text like 0-3,{{4-27}}x3,28-29.")
    ] = "full",
    n: options.N = 0,
    seed: options.Seed = 0,
    iters: options.Iters = 3,
    prompt: Annotated[str | None, typer.Option("--prompt", help="Print the reply to this message and exit.")] = None,
    system: Annotated[str | None, typer.Option("--system", help="A system message to start the conversation.")] = None,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="Sampling temperature (0: greedy).")] = 0.8,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=1, help="Longest reply (default: until it ends).")] = None,
    n_ctx: ServeNCtx = 4096,
    threads: options.Threads = None,
    n_gpu_layers: options.NGpuLayers = 0,
    flash_attn: options.FlashAttn = options.FlashAttention.AUTO,
) -> None:
    """Talk to a model under a plan, with its own chat template; replies stream. In the chat:
    /plan PLAN switches plans (the conversation is read again under it), /full, /reset, /quit;
    Ctrl-C stops a reply."""
    from painters_gguf.plan_llama import PlanLlama

    _, llm = load_model(model, n_gpu_layers=n_gpu_layers)
    layer_plan = variants.resolve(plan, llm.n_layer, n, seed=seed, iters=iters)
    with err.status("creating the context ..."):
        llama = PlanLlama(
            llm,
            layer_plan,
            n_ctx=n_ctx,
            threads=threads,
            flash_attn=flash_attn.value,
            reuse_prefix=True,  # each reply continues from the conversation in the cache
        )
    conversation = Conversation(llama, system=system, temperature=temperature, max_tokens=max_tokens, interactive=prompt is None)
    try:
        if prompt is not None:
            conversation.reply(prompt)
            return
        talk(conversation, lambda text: variants.resolve(text, llm.n_layer, n, seed=seed, iters=iters))
    finally:
        llama.close()
        llm.close()


class Conversation:
    """The messages so far and how replies are sampled; a reply streams to stdout."""

    def __init__(
        self, llama: PlanLlama, *, system: str | None, temperature: float, max_tokens: int | None, interactive: bool
    ) -> None:
        self.llama = llama
        self.interactive = interactive  # Ctrl-C stops a reply (else: the command)
        self.start = [{"role": "system", "content": system}] if system else []
        self.messages: list[dict[str, str]] = list(self.start)
        self.temperature = temperature
        self.max_tokens = max_tokens

    def reply(self, text: str) -> None:
        """Answer `text`, streaming; Ctrl-C stops the reply (what was shown stays in the history)."""
        self.messages.append({"role": "user", "content": text})
        parts: list[str] = []
        try:
            stream = self.llama.create_chat_completion(
                messages=self.messages,  # type: ignore[arg-type]
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                stream=True,
            )
            for chunk in stream:
                delta = chunk["choices"][0]["delta"].get("content")  # type: ignore[index, union-attr]
                if isinstance(delta, str) and delta:
                    parts.append(delta)
                    out.print(visible(delta, keep="\n\t"), end="", markup=False, highlight=False, soft_wrap=True)
        except KeyboardInterrupt:
            self.llama.reset()  # a pass may have stopped between llama.cpp and llama-cpp-python's bookkeeping
            out.print()
            if not self.interactive:
                raise
            err.print("[dim](reply stopped)[/]")
        except ValueError as error:
            if "Requested tokens" not in str(error):  # llama-cpp-python's words for a prompt too long
                raise
            self.messages.pop()
            raise PaintersError(f"{error}: /reset, or start again with a larger -c") from None
        out.print()
        self.messages.append({"role": "assistant", "content": "".join(parts)})

    def reset(self) -> None:
        self.messages = list(self.start)


HELP = "/plan PLAN: switch plans (the conversation is read again under it); /full; /reset; /quit"


def talk(conversation: Conversation, resolve: Callable[[str], Plan]) -> None:
    """The interactive loop: a message or a command per line."""
    llama = conversation.llama
    err.print(f"plan {escape(llama.plan.text if llama.plan else 'full')} ({llama.n_slots} KV slots). {HELP}")
    while True:
        try:
            line = out.input("[bold green]> [/]").strip()
        except EOFError:
            out.print()
            return
        except KeyboardInterrupt:
            out.print()
            err.print("(/quit to leave)")
            continue
        command, _, argument = line.partition(" ")
        try:
            if line in ("/quit", "/exit"):
                return
            if line == "/reset":
                conversation.reset()
                err.print("conversation cleared")
            elif command in ("/plan", "/full"):
                plan = resolve(argument or "full") if command == "/plan" else resolve("full")
                llama.set_plan(plan)
                err.print(f"plan {escape(plan.text)} ({llama.n_slots} KV slots); the conversation is read again under it")
            elif line.startswith("/"):
                err.print(HELP)
            elif line:
                conversation.reply(line)
        except PaintersError as error:
            err.print(f"[bold red]error:[/] {untrusted(error)}", soft_wrap=True)
