"""What tasks ask of a model, and what comes back: plain data, no runtime needed."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LoglikelihoodRequest:
    context: str
    continuation: str


@dataclasses.dataclass(frozen=True)
class TokensRequest:
    """A log-likelihood request already in tokens (lm-eval's rolling windows): the context, then
    the tokens scored."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class LoglikelihoodResult:
    loglikelihood: float
    is_greedy: bool  # every continuation token is the argmax


@dataclasses.dataclass(frozen=True)
class Generation:
    """Greedy generation from a context until a stop string or max_tokens."""

    context: str
    until: tuple[str, ...]
    max_tokens: int
