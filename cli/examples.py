"""The examples each command's --help ends with: real commands, checked by tests/test_docs.py."""

from __future__ import annotations

EXAMPLES: dict[str, tuple[str, ...]] = {
    "": (
        "painters-gguf eval --plan random --seed 3 --limit 100",
        "painters-gguf sweep --variant skip,reverse --limit 100",
        "painters-gguf chat --plan '0-4,{5-25}x3,26-29'",
    ),
    "eval": (
        "painters-gguf eval --plan random --seed 3 --limit 100",
        "painters-gguf eval -m gemma3-270m --plan '0-4,{5-12}x2,13-17' --tasks all",
        "painters-gguf eval --plan skip --n 8 --limit 50 -o results --log-samples",
    ),
    "sweep": (
        "painters-gguf sweep --variant skip,reverse --limit 100",
        "painters-gguf sweep --variant looped-parallel --iters 1-6 --limit 50",
        "painters-gguf sweep --plan 0-9,20-29 --plan '0-4,{5-25}x3,26-29' --ray local",
    ),
    "report": (
        "painters-gguf report --variant skip,reverse --limit 100",
        "painters-gguf report --limit 100 --plot figures",
        "painters-gguf store",
    ),
    "store": (
        "painters-gguf store",
        "painters-gguf store --db results.db",
    ),
    "similarity": (
        "painters-gguf similarity --docs 100 -o similarity.npy",
        "painters-gguf report --similarity similarity.npy --plot figures",
    ),
    "plan": (
        "painters-gguf plan looped-parallel --n 4",
        "painters-gguf plan '0-4,{5-25}x3,26-29' -m smollm2-135m",
    ),
    "export": (
        "painters-gguf export 0-5,7-11,14,20-29 -o smollm2-22-layers.gguf",
        "painters-gguf export skip --n 10 -m gemma3-270m -o gemma3-skip.gguf",
    ),
    "search": (
        "painters-gguf search --budget 0.75 --tasks arc_easy,hellaswag,lambada_openai",
        "painters-gguf search --budget 0.75 --exportable -o search",
        "painters-gguf search --budgets 0.6,0.75,0.9 --plot figures -o search",
    ),
    "serve": (
        "painters-gguf serve --plan 'loop=0-4,{5-25}x3,26-29' --plan full --port 8080",
        "painters-gguf serve -m gemma3-270m --plan skip --n 6 --api-key secret",
    ),
    "chat": (
        "painters-gguf chat --plan '0-4,{5-25}x3,26-29'",
        "painters-gguf chat --plan skip --n 10 --prompt 'Name three primary colours.'",
    ),
    "models list": ("painters-gguf models list",),
    "models fetch": ("painters-gguf models fetch gemma3-270m",),
}


def epilog(command: str) -> str:
    """The help's last section: click prints a paragraph that starts with \\b as written."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[command])
