"""What every LLM backend takes and returns, and the errors it raises.

A backend turns one :class:`LLMRequest` (system text, prompt, images, the pydantic model the answer must
match) into one :class:`LLMResponse` holding the validated answer, its raw text and what it cost. The agent
only ever sees these shapes, so a hosted model, a local vLLM / Ollama server and the offline default are
interchangeable.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import numpy as np
from PIL import Image
from pydantic import BaseModel

from craft_agent.errors import CraftError

T = TypeVar("T", bound=BaseModel)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class LLMImage:
    """One image shown to the model, as PNG bytes plus their sha256 (the cache keys on the hash).

    Build it with :meth:`from_array` or :meth:`from_png` rather than by hand, so the hash always matches.
    """

    png: bytes = field(repr=False)
    sha256: str

    @classmethod
    def from_png(cls, png: bytes) -> LLMImage:
        """Wrap already-encoded PNG bytes.

        Raises:
            ValueError: when ``png`` does not start with the PNG signature.
        """
        if not png.startswith(PNG_SIGNATURE):
            raise ValueError(f"LLM images must be PNG; got {len(png)} bytes starting with {png[:8]!r}")
        return cls(png=png, sha256=hashlib.sha256(png).hexdigest())

    @classmethod
    def from_array(cls, image: np.ndarray) -> LLMImage:
        """Encode an RGB (H, W, 3) or grey (H, W) uint8 array as PNG.

        Raises:
            ValueError: for another shape or dtype.
        """
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise ValueError(
                f"an LLM image must be uint8 RGB (H, W, 3) or grey (H, W); got {image.dtype} {image.shape}"
            )
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
        return cls.from_png(buffer.getvalue())

    @property
    def data_url(self) -> str:
        """The image as a ``data:image/png;base64,...`` URL, the form chat APIs accept inline."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass(frozen=True)
class LLMRequest(Generic[T]):
    """One question to a multimodal model whose answer must validate as ``response_model``.

    Attributes:
        task: which step asks, e.g. ``grid_review``, ``correction``, ``beautify`` (named in errors and logs).
        system: the system message.
        prompt: the user message text (the filled-in prompt template).
        images: images shown after the prompt, in order.
        response_model: the pydantic model the answer is parsed into (its JSON schema is sent to the server).
        prompt_hash: sha256 of the prompt template file, recorded in provenance and part of the cache key.
        temperature: sampling temperature; 0 for the most repeatable answers.
        max_tokens: cap on the answer's length, or None for the server's default.
        context: the structured facts the prompt was written from (candidates, measured attributes).
            A remote model reads them in the prompt text; the offline backend decides from them directly.
            Not part of the cache key: the prompt already carries them.
    """

    task: str
    system: str
    prompt: str
    response_model: type[T]
    prompt_hash: str
    images: list[LLMImage] = field(default_factory=list)
    temperature: float = 0.0
    max_tokens: int | None = None
    context: BaseModel | None = None


@dataclass(frozen=True)
class TokenUsage:
    """Tokens one answer took, as the server reported them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class LLMResponse(Generic[T]):
    """A validated answer.

    Attributes:
        parsed: the answer as an instance of the request's ``response_model``.
        raw_text: the model's text the answer was parsed from.
        usage: tokens the answer took when it was made (for a cache hit: the original call's, not charged again).
        cost_usd: money this call spent (0 for a cache hit).
        cached: True when the answer came from the response cache without a request.
        attempts: HTTP requests this call made (retries and a repair re-ask included; 0 for a cache hit).
        model: the model that answered, as the server named it.
    """

    parsed: T
    raw_text: str
    usage: TokenUsage
    cost_usd: float
    cached: bool
    attempts: int
    model: str


class LLMBackend(Protocol):
    """Anything that answers an :class:`LLMRequest` with an :class:`LLMResponse`.

    ``name`` is the registry name (``openai``, ``offline``...); ``model_id`` the model it asks. Both go into
    each triplet's provenance.
    """

    name: str
    model_id: str

    def complete(self, request: LLMRequest[T]) -> LLMResponse[T]: ...


class LLMError(CraftError):
    """A language-model call failed.

    Args:
        message: what failed.
        hint: what the user can do about it.
        task: the request's task, when the failure belongs to one request.
    """

    def __init__(self, message: str, hint: str | None = None, task: str | None = None) -> None:
        self.task = task
        super().__init__(message, hint)


class LLMUnavailableError(LLMError):
    """The endpoint could not be reached or kept failing (connection, timeout, 429, 5xx) until retries ran out."""


class LLMRequestRejectedError(LLMError):
    """The server found this particular request invalid (HTTP 400/413/422: too long for the model's context,
    images or structured output it does not accept...). Another request may well succeed."""


class LLMResponseError(LLMError):
    """The model's answer was not valid JSON for the requested schema, even after a repair re-ask."""


class LLMRefusalError(LLMError):
    """The model refused to answer (``message.refusal`` or a content-filter stop)."""


class BudgetExceededError(LLMError):
    """The run's LLM budget (money or tokens) is spent; raised before a call, so no request is made."""
