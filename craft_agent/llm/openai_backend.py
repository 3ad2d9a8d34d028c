"""A multimodal LLM behind any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp's server...).

The official ``openai`` client sends each request; everything around it is ours so that it can be tested
and reasoned about: retries with backoff, one repair re-ask for an answer that does not match the schema,
a bound on concurrent requests, the response cache and the usage meter.

Structured output: ``client.chat.completions.parse(response_format=<pydantic model>)`` sends the model's
strict JSON schema (``response_format: {"type": "json_schema", ...}``). Servers that reject json_schema
(HTTP 400, or 500 as llama.cpp's server does, naming response_format) are asked again in JSON mode
(``{"type": "json_object"}``) with the schema in the system message; the backend remembers that and uses
JSON mode from then on. The answer's text is always validated here with ``response_model.model_validate_json``,
so a bad answer can be shown back to the model.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import openai
from openai.types.chat import ChatCompletionContentPartParam, ChatCompletionMessageParam
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from craft_agent.llm.base import (
    LLMError,
    LLMImage,
    LLMRefusalError,
    LLMRequest,
    LLMRequestRejectedError,
    LLMResponse,
    LLMResponseError,
    LLMUnavailableError,
    T,
    TokenUsage,
)
from craft_agent.llm.cache import CachedAnswer, ResponseCache, cache_key
from craft_agent.llm.usage import UsageMeter, cost_usd

logger = logging.getLogger(__name__)

_NO_KEY = "no-key"
"""Sent as the bearer token when no key is configured: local servers ignore it, and the client needs one."""

_RETRIED_STATUSES = frozenset({408, 409, 429})


@dataclass
class _Answer:
    """One chat-completion answer, reduced to what the backend uses."""

    content: str | None
    refusal: str | None
    finish_reason: str | None
    usage: TokenUsage
    model: str | None


@dataclass
class _Tally:
    """What one ``complete`` call has spent so far."""

    requests: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost_usd: float = 0.0


class _WireUsage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _WireMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    content: str | None = None
    refusal: str | None = None


class _WireChoice(BaseModel):
    model_config = ConfigDict(extra="ignore")
    message: _WireMessage
    finish_reason: str | None = None


class _WireCompletion(BaseModel):
    """The few fields of a ``chat.completion`` body the backend reads (servers differ in the rest)."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    choices: list[_WireChoice]
    usage: _WireUsage | None = None


class OpenAIBackend:
    """Answers :class:`LLMRequest` s through an OpenAI-compatible chat-completions endpoint.

    Args:
        base_url: the endpoint, e.g. ``http://127.0.0.1:8000/v1`` (``CRAFT_LLM_BASE_URL``).
        model: the model to ask (``CRAFT_LLM_MODEL``).
        api_key: bearer token (``CRAFT_LLM_API_KEY``), or None for servers without authentication. It is
            never logged, cached, shown in a repr or put into an exception message.
        timeout_s: seconds one HTTP request may take before it counts as a (retried) timeout.
        max_attempts: HTTP attempts per request, first one included, for transient failures (connection
            errors, timeouts, 408, 409, 429, 5xx). Other statuses fail at once.
        backoff_base_s: first retry waits between half and all of this; each later one doubles it.
        max_backoff_s: cap on one backoff wait.
        max_retry_after_s: cap on a server's ``Retry-After`` wait (honoured when present).
        max_concurrency: most HTTP requests in flight at once from this backend, over all threads.
        cache: response cache, or None to always ask.
        usage: meter charged for every answer and checked against its budget before every request.
        price_per_1k_prompt / price_per_1k_completion: USD per 1,000 tokens, for the meter and ``cost_usd``.
        priced: whether those prices are known (False: the model's price is unknown and ``cost_usd`` is 0
            for want of a price, which summaries must say rather than claim the run was free).
        sleep: how to wait between retries (tests pass a recorder).
        rng: source of the backoff jitter; pass ``random.Random(seed)`` for repeatable waits.
        send_images: send images as content parts. Servers of text-only models refuse them; such a refusal
            (an error naming images or content lists) also switches this off for the backend's lifetime.

    Raises:
        ValueError: for a non-positive ``max_attempts``, ``max_concurrency`` or ``timeout_s``.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: SecretStr | None = None,
        *,
        timeout_s: float = 60.0,
        max_attempts: int = 4,
        backoff_base_s: float = 1.0,
        max_backoff_s: float = 30.0,
        max_retry_after_s: float = 60.0,
        max_concurrency: int = 4,
        cache: ResponseCache | None = None,
        usage: UsageMeter | None = None,
        price_per_1k_prompt: float = 0.0,
        price_per_1k_completion: float = 0.0,
        priced: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        send_images: bool = True,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.base_url = base_url
        self.model_id = model
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_after_s = max_retry_after_s
        self.max_concurrency = max_concurrency
        self.cache = cache
        self.usage = usage
        self.price_per_1k_prompt = price_per_1k_prompt
        self.price_per_1k_completion = price_per_1k_completion
        self.priced = priced
        self._secret = api_key.get_secret_value() if api_key is not None else ""
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._json_schema_supported = True
        self._images_supported = send_images
        self._client = openai.OpenAI(
            base_url=base_url, api_key=self._secret or _NO_KEY, max_retries=0, timeout=timeout_s
        )

    def __repr__(self) -> str:
        key = "set" if self._secret else "none"
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model_id!r}, api_key={key})"

    def complete(self, request: LLMRequest[T]) -> LLMResponse[T]:
        """Answer ``request``: from the cache when possible, else from the endpoint.

        Returns:
            the validated answer with its raw text, tokens, cost and the number of HTTP requests made.

        Raises:
            BudgetExceededError: the meter's budget was spent before a request had to be sent.
            LLMUnavailableError: the endpoint kept failing (connection, timeout, 429, 5xx) for
                ``max_attempts`` attempts.
            LLMRefusalError: the model refused.
            LLMResponseError: the answer did not match ``request.response_model``, twice.
            LLMError: the endpoint refused the request (400, 401, 403, 404...), with what to check.
        """
        key = cache_key(self.name, self.model_id, request) if self.cache is not None else None
        if key is not None:
            cached = self._from_cache(key, request)
            if cached is not None:
                return cached

        tally = _Tally()
        messages = self._messages(request)
        answer = self._ask(request, messages, tally)
        parsed, problem = _validate(request.response_model, answer.content)
        raw_text = answer.content or ""
        if parsed is None:
            logger.info(
                "LLM answer for task %r did not match %s (%s); asking for a repair",
                request.task,
                request.response_model.__name__,
                problem,
            )
            repair: list[ChatCompletionMessageParam] = [
                *messages,
                {"role": "assistant", "content": raw_text},
                {"role": "user", "content": _repair_prompt(problem or "invalid", request.response_model)},
            ]
            answer = self._ask(request, repair, tally)
            parsed, problem = _validate(request.response_model, answer.content)
            raw_text = answer.content or ""
            if parsed is None:
                cut = " The answer was cut off at max_tokens." if answer.finish_reason == "length" else ""
                raise LLMResponseError(
                    f"model {self.model_id!r} gave no valid {request.response_model.__name__} for task "
                    f"{request.task!r}, even after a repair re-ask: {problem}.{cut}",
                    hint="make the prompt template spell out the JSON shape, raise max_tokens, or use a model "
                    "that supports structured output (json_schema).",
                    task=request.task,
                )

        model = answer.model or self.model_id
        if key is not None and self.cache is not None:
            self.cache.put(key, request.task, CachedAnswer(raw_text=raw_text, usage=tally.usage, model=model))
        return LLMResponse(
            parsed=parsed,
            raw_text=raw_text,
            usage=tally.usage,
            cost_usd=tally.cost_usd,
            cached=False,
            attempts=tally.requests,
            model=model,
        )

    def served_models(self) -> list[str]:
        """Model ids the endpoint lists (``GET /models``), one attempt; a quick check that it is reachable.

        Raises:
            LLMUnavailableError / LLMError: as for :meth:`complete`.
        """
        try:
            with self._slots:
                return [model.id for model in self._client.models.list()]
        except (openai.APIStatusError, openai.APIConnectionError) as exc:
            raise self._failure(exc, "list models", 1) from self._safe_cause(exc)

    # Cache ------------------------------------------------------------------------------------------

    def _from_cache(self, key: str, request: LLMRequest[T]) -> LLMResponse[T] | None:
        assert self.cache is not None
        entry = self.cache.get(key)
        if entry is None:
            return None
        parsed, problem = _validate(request.response_model, entry.raw_text)
        if parsed is None:
            # Written by an older schema or torn: ask again, and the fresh answer overwrites it.
            logger.warning("ignoring an unusable cached LLM answer for task %r: %s", request.task, problem)
            return None
        if self.usage is not None:
            self.usage.record_cache_hit()
        return LLMResponse(
            parsed=parsed,
            raw_text=entry.raw_text,
            usage=entry.usage,
            cost_usd=0.0,
            cached=True,
            attempts=0,
            model=entry.model,
        )

    # Requests ---------------------------------------------------------------------------------------

    def _messages(self, request: LLMRequest[Any]) -> list[ChatCompletionMessageParam]:
        if not self._images_supported or not request.images:
            return [{"role": "system", "content": request.system}, {"role": "user", "content": request.prompt}]
        content: list[ChatCompletionContentPartParam] = [{"type": "text", "text": request.prompt}]
        content += [_image_part(image) for image in request.images]
        return [{"role": "system", "content": request.system}, {"role": "user", "content": content}]

    def _ask(self, request: LLMRequest[Any], messages: list[ChatCompletionMessageParam], tally: _Tally) -> _Answer:
        """One answer (with retries), charged to the meter; a refusal raises after it is charged."""
        if self.usage is not None:
            self.usage.check(request.task)
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._backoff,
            retry=retry_if_exception(_is_transient),
            sleep=self._sleep,
            before_sleep=lambda state: self._log_retry(request.task, state),
            reraise=True,
        )
        try:
            answer = retrying(self._post, request, messages, tally)
        except (openai.APIStatusError, openai.APIConnectionError) as exc:
            raise self._failure(exc, request.task, tally.requests) from self._safe_cause(exc)
        except UnreadableBodyError as exc:
            raise LLMUnavailableError(
                f"LLM endpoint {self.base_url} (model {self.model_id!r}) answered task {request.task!r} with a "
                f"body that is not whole JSON ({exc.size} bytes, cut off or garbled) {tally.requests} time(s).",
                hint="something between here and the server truncates answers (a proxy, a server closing the "
                "connection early); check the server's log. Steps it fails are decided by the offline backend.",
                task=request.task,
            ) from None

        cost = cost_usd(answer.usage, self.price_per_1k_prompt, self.price_per_1k_completion)
        tally.usage += answer.usage
        tally.cost_usd += cost
        if self.usage is not None:
            self.usage.charge(answer.usage, cost)
        if answer.refusal or answer.finish_reason == "content_filter":
            reason = answer.refusal or "stopped by the content filter"
            raise LLMRefusalError(
                f"model {self.model_id!r} refused task {request.task!r}: {self._redact(reason)[:300]}",
                hint="check the images and the prompt template for this task; refusals are not retried.",
                task=request.task,
            )
        return answer

    def _post(self, request: LLMRequest[Any], messages: list[ChatCompletionMessageParam], tally: _Tally) -> _Answer:
        """One HTTP request (more when the server turns out to reject images or json_schema)."""
        if not self._images_supported:
            messages = _text_only(messages)  # also for retries and repairs of a conversation begun with images
        try:
            return self._post_once(request, messages, tally)
        except (openai.BadRequestError, openai.InternalServerError) as exc:
            if not (self._images_supported and request.images and _rejects_content_parts(exc)):
                raise
            logger.warning(
                "%s refused image content (%s); sending text only from now on (the model cannot see the images)",
                self.base_url,
                self._redact(_error_text(exc))[:200],
            )
            self._images_supported = False
            return self._post_once(request, _text_only(messages), tally)

    def _post_once(
        self, request: LLMRequest[Any], messages: list[ChatCompletionMessageParam], tally: _Tally
    ) -> _Answer:
        with self._slots:
            tally.requests += 1
            if self._json_schema_supported:
                try:
                    raw = self._client.chat.completions.with_raw_response.parse(
                        **self._options(request), messages=messages, response_format=request.response_model
                    )
                    return self._answer(raw.http_response, request.task)
                except (openai.BadRequestError, openai.InternalServerError) as exc:
                    # llama.cpp's server answers an unsupported response_format with HTTP 500, not 400.
                    if not _rejects_json_schema(exc):
                        raise
                    logger.warning(
                        "%s rejected json_schema structured output (%s); using JSON mode from now on",
                        self.base_url,
                        self._redact(exc.message)[:200],
                    )
                    self._json_schema_supported = False
                    tally.requests += 1
            raw = self._client.chat.completions.with_raw_response.create(
                **self._options(request),
                messages=_with_schema_instruction(messages, request.system, request.response_model),
                response_format={"type": "json_object"},
            )
            return self._answer(raw.http_response, request.task)

    def _options(self, request: LLMRequest[Any]) -> dict[str, Any]:
        options: dict[str, Any] = {"model": self.model_id, "temperature": request.temperature}
        if request.max_tokens is not None:
            options["max_tokens"] = request.max_tokens
        return options

    def _answer(self, http_response: Any, task: str) -> _Answer:
        if _is_unreadable_json(http_response):
            # A JSON body cut off or garbled on the way (a proxy, a server that dropped the connection after
            # the headers): the next attempt will most likely be whole, so this is retried like a 5xx.
            raise UnreadableBodyError(len(http_response.content))
        try:
            completion = _WireCompletion.model_validate(http_response.json())
            choice = completion.choices[0]
        except (ValueError, IndexError) as exc:
            raise LLMError(
                f"{self.base_url} answered task {task!r} with something that is not a chat completion "
                f"(HTTP {http_response.status_code}, {len(http_response.content)} bytes).",
                hint="check CRAFT_LLM_BASE_URL: it must be the OpenAI-compatible API root, usually ending in /v1.",
                task=task,
            ) from exc
        usage = completion.usage or _WireUsage()
        return _Answer(
            content=choice.message.content,
            refusal=choice.message.refusal,
            finish_reason=choice.finish_reason,
            usage=TokenUsage(usage.prompt_tokens, usage.completion_tokens),
            model=completion.model,
        )

    # Retries and errors -----------------------------------------------------------------------------

    def _backoff(self, state: RetryCallState) -> float:
        """Seconds before the next attempt: the server's Retry-After (capped) or jittered exponential backoff."""
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = _retry_after_s(exc)
        if retry_after is not None:
            return min(retry_after, self.max_retry_after_s)
        backoff = min(self.max_backoff_s, self.backoff_base_s * 2 ** (state.attempt_number - 1))
        return backoff * (0.5 + 0.5 * self._rng.random())

    def _log_retry(self, task: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "LLM request for task %r failed (%s); attempt %d of %d, retrying in %.1f s",
            task,
            self._describe(exc),
            state.attempt_number,
            self.max_attempts,
            wait,
        )

    def _describe(self, exc: BaseException | None) -> str:
        if isinstance(exc, UnreadableBodyError):
            return str(exc)
        if isinstance(exc, openai.APITimeoutError):
            return f"no answer within {self.timeout_s:g} s"
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            return f"connection failed: {self._redact(str(cause))[:200]}"
        if isinstance(exc, openai.APIStatusError):
            return f"HTTP {exc.status_code}: {self._redact(_error_text(exc))[:300]}"
        return self._redact(repr(exc))[:300]

    def _failure(self, exc: openai.APIError, task: str, requests: int) -> LLMError:
        what = self._describe(exc)
        if _is_transient(exc):
            return LLMUnavailableError(
                f"LLM endpoint {self.base_url} (model {self.model_id!r}) failed task {task!r} after "
                f"{requests} attempt(s); last error: {what}.",
                hint="check CRAFT_LLM_BASE_URL and that the server is running and serving the model; "
                "for a busy server raise timeout_s / max_attempts or lower max_concurrency.",
                task=task,
            )
        status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
        message = f"LLM endpoint {self.base_url} refused task {task!r} for model {self.model_id!r} ({what})."
        if status in (401, 403):
            hint = "check CRAFT_LLM_API_KEY (the key is missing, wrong or lacks access to this model)."
        elif status == 404:
            hint = (
                "check CRAFT_LLM_MODEL (the server must serve that model id) and CRAFT_LLM_BASE_URL "
                "(the API root, usually ending in /v1)."
            )
        elif status in (400, 413, 422):
            hint = (
                f"the server found the request invalid; check that {self.model_id!r} accepts images and "
                "structured output, and that the images are not too large."
            )
        else:
            hint = "check the server's log for this request."
        if status in (400, 413, 422):
            return LLMRequestRejectedError(message, hint=hint, task=task)
        return LLMError(message, hint=hint, task=task)

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "[redacted]") if self._secret else text

    def _safe_cause(self, exc: BaseException) -> BaseException | None:
        """``exc`` to chain as the cause, unless its text would show the API key (servers may echo it)."""
        if self._secret and (self._secret in str(exc) or self._secret in repr(getattr(exc, "body", ""))):
            return None
        return exc


def _rejects_content_parts(exc: openai.APIStatusError) -> bool:
    text = _error_text(exc).lower()
    return "image" in text or "list" in text or "content" in text


def _text_only(messages: list[ChatCompletionMessageParam]) -> list[ChatCompletionMessageParam]:
    """The messages with every list of content parts reduced to its text."""
    reduced: list[ChatCompletionMessageParam] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            text = "\n".join(str(part.get("text", "")) for part in content if part.get("type") == "text")
            reduced.append(cast(ChatCompletionMessageParam, {**message, "content": text}))
        else:
            reduced.append(message)
    return reduced


def _image_part(image: LLMImage) -> ChatCompletionContentPartParam:
    return {"type": "image_url", "image_url": {"url": image.data_url}}


class UnreadableBodyError(Exception):
    """HTTP 200 with a JSON content type whose body does not parse: cut off or garbled on the way."""

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(f"a {size}-byte answer that is not whole JSON")


def _is_unreadable_json(http_response: Any) -> bool:
    """Whether the body claims (by content type, or by its first character) to be JSON and does not parse.

    An HTML page or plain text is not this: that is a wrong URL, reported as such by the caller.
    """
    content = http_response.content
    kind = http_response.headers.get("content-type", "")
    if "json" not in kind and not content.lstrip().startswith((b"{", b"[")):
        return False
    try:
        json.loads(content)
    except ValueError:
        return True
    return False


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, UnreadableBodyError):
        return True
    if isinstance(exc, openai.APIConnectionError):  # timeouts included
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _RETRIED_STATUSES or exc.status_code >= 500
    return False


def _retry_after_s(exc: BaseException | None) -> float | None:
    """The server's requested wait in seconds (Retry-After as seconds or HTTP date, or retry-after-ms)."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_text(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return exc.message


def _rejects_json_schema(exc: openai.APIStatusError) -> bool:
    text = _error_text(exc).lower()
    return "response_format" in text or "json_schema" in text


def _strip_code_fence(text: str) -> str:
    """Drop a Markdown code fence around a JSON answer (local models often add one)."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```") and stripped.count("\n") >= 1:
        first_newline = stripped.index("\n")
        return stripped[first_newline + 1 : -3].strip()
    return stripped


def _validate(model: type[T], content: str | None) -> tuple[T, None] | tuple[None, str]:
    """The content parsed as ``model``, or None and a short account of what is wrong."""
    if not content or not content.strip():
        return None, "the answer was empty"
    try:
        return model.model_validate_json(_strip_code_fence(content)), None
    except ValidationError as exc:
        return None, _describe_validation(exc)


def _describe_validation(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False)[:10]:
        location = ".".join(str(part) for part in error["loc"]) or "answer"
        problems.append(f"{location}: {error['msg']}")
    more = f" (and {exc.error_count() - 10} more)" if exc.error_count() > 10 else ""
    return "; ".join(problems) + more


def _schema_text(model: type[BaseModel]) -> str:
    return json.dumps(model.model_json_schema(), separators=(",", ":"))


def _repair_prompt(problem: str, model: type[BaseModel]) -> str:
    return (
        f"Your previous answer could not be used: {problem}. Reply again with only one JSON object (no prose, "
        f"no code fences) that matches this JSON schema exactly:\n{_schema_text(model)}"
    )


def _with_schema_instruction(
    messages: list[ChatCompletionMessageParam], system: str, model: type[BaseModel]
) -> list[ChatCompletionMessageParam]:
    """The messages with the schema spelled out in the system message, for servers without json_schema."""
    instruction = f"Answer with only one JSON object that matches this JSON schema:\n{_schema_text(model)}"
    return [{"role": "system", "content": f"{system}\n\n{instruction}"}, *messages[1:]]
