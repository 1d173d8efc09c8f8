from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_llama import TinyConfig, TinyWeights, Vocab, random_weights, write_gguf

REPO = Path(__file__).resolve().parent.parent
SETUP = "bash scripts/setup.sh"


@pytest.fixture(scope="session")
def tiny_weights() -> TinyWeights:
    return random_weights(TinyConfig(), seed=0)


@pytest.fixture(scope="session")
def tiny_gguf(tiny_weights: TinyWeights, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tiny_weights, tmp_path_factory.mktemp("tiny") / "tiny-llama.gguf")


@pytest.fixture(scope="session")
def tiny_model(tiny_gguf: Path):
    from painters_gguf.runtime import Model

    with Model(tiny_gguf) as model:
        yield model


def catalog_path(name: str) -> Path:
    """A real catalog model from the package registry (scripts/setup.sh fetches them all)."""
    from painters_gguf.fetch import model_path
    from painters_gguf.models import find

    entry = find(name)
    assert entry is not None
    path = model_path(entry)
    if not path.exists():
        pytest.fail(f"{path} is missing: run `{SETUP}` (or `painters-gguf models fetch {name}`)")
    return path


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The real SmolLM2-135M (llama); $PAINTERS_GGUF_SMOLLM2 may name another copy."""
    if "PAINTERS_GGUF_SMOLLM2" in os.environ:
        return Path(os.environ["PAINTERS_GGUF_SMOLLM2"])
    return catalog_path("smollm2-135m")


@pytest.fixture(scope="session")
def smollm2(smollm2_path: Path):
    from painters_gguf.runtime import Model

    with Model(smollm2_path) as model:
        yield model


@pytest.fixture(scope="session")
def stock_lib_dir() -> Path:
    """The unpatched libllama of the same pinned source, built by scripts/setup.sh."""
    if "PAINTERS_GGUF_STOCK_LIB" in os.environ:
        return Path(os.environ["PAINTERS_GGUF_STOCK_LIB"])
    result = subprocess.run(
        [sys.executable, str(REPO / "patches" / "build_wheel.py"), "--stock", "--lib-dir", "--cached-only"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(f"the stock reference library is not built: run `{SETUP}` ({result.stderr.strip()})")
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def tiny_bpe_model(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """A tiny random llama that tokenizes text with SmolLM2's real BPE vocabulary."""
    from painters_gguf.runtime import Model

    vocab = Vocab.from_gguf(smollm2_path)
    weights = random_weights(TinyConfig(n_vocab=len(vocab.tokens), n_layer=4), seed=1)
    path = write_gguf(weights, tmp_path_factory.mktemp("tiny-bpe") / "tiny-bpe.gguf", vocab=vocab)
    with Model(path) as model:
        yield model


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark JSONL files beside the checkout (../shared/data), or $PAINTERS_GGUF_DATA."""
    path = Path(os.environ.get("PAINTERS_GGUF_DATA") or REPO.parent / "shared" / "data")
    if not (path / "arc_easy" / "test.jsonl").exists():
        pytest.fail(f"benchmark data not found at {path}: set PAINTERS_GGUF_DATA")
    return path
