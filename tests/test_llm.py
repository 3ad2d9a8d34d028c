"""The LLM layer through the real ``openai`` client against a scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import io
import logging
import random
import socket
import threading
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import BaseModel, Field, SecretStr

from craft_agent.bench.llm_server import Refusal, Reply, ScriptedLLMServer, Status, Truncated
from craft_agent.errors import ConfigError
from craft_agent.llm import (
    KNOWN_PRICES,
    LLM_BACKENDS,
    BudgetExceededError,
    LLMBackend,
    LLMError,
    LLMImage,
    LLMRefusalError,
    LLMRequest,
    LLMResponse,
    LLMResponseError,
    LLMUnavailableError,
    OpenAIBackend,
    ResponseCache,
    TokenUsage,
    UsageMeter,
    cache_key,
    create_llm_backend,
    llm_cache_path,
    prices_for,
)
from craft_agent.models import LLMUsage
from craft_agent.settings import Settings

API_KEY = "sk-test-7f3c9d2e1b8a4f6e"
MODEL = "test-model"


class Change(BaseModel):
    position: str
    change_type: int = Field(ge=0, le=2)
    expression: str


class GridReview(BaseModel):
    changes: list[Change]


ANSWER = {"changes": [{"position": "mid-right", "change_type": 0, "expression": "the newly placed white statues"}]}
EXPECTED = GridReview.model_validate(ANSWER)


class SleepRecorder:
    """Stands in for time.sleep: records each wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def image(value: int, size: int = 8) -> LLMImage:
    return LLMImage.from_array(np.full((size, size, 3), value, dtype=np.uint8))


def grid_request(*images: LLMImage, prompt: str = "List every change.") -> LLMRequest[GridReview]:
    return LLMRequest(
        task="grid_review",
        system="You compare two images of one place.",
        prompt=prompt,
        images=list(images),
        response_model=GridReview,
        prompt_hash="a" * 64,
    )


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer(models=[MODEL]) as running:
        yield running
    assert running.unexpected == 0, f"the backend made {running.unexpected} request(s) the script did not expect"
    assert running.remaining == 0, f"{running.remaining} scripted step(s) were never requested"


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


def make_backend(server: ScriptedLLMServer, sleeps: SleepRecorder, **options: Any) -> OpenAIBackend:
    defaults: dict[str, Any] = {
        "timeout_s": 5.0,
        "max_attempts": 3,
        "backoff_base_s": 1.0,
        "sleep": sleeps,
        "rng": random.Random(0),
    }
    return OpenAIBackend(server.base_url, MODEL, SecretStr(API_KEY), **{**defaults, **options})


def user_text(body: dict[str, Any]) -> str:
    """The text of the last user message of a recorded request."""
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else " ".join(p["text"] for p in content if p["type"] == "text")


# Requests and answers ---------------------------------------------------------------------------------


def test_happy_path_sends_both_images_and_the_schema(server: ScriptedLLMServer, sleeps: SleepRecorder) -> None:
    server.add(Reply(ANSWER, prompt_tokens=1234, completion_tokens=56))
    before, after = image(10), image(200)
    response = make_backend(server, sleeps).complete(grid_request(before, after))

    assert response.parsed == EXPECTED
    assert isinstance(response.parsed, GridReview)
    assert response.raw_text == '{"changes": [{"position": "mid-right", "change_type": 0, "expression": ' + (
        '"the newly placed white statues"}]}'
    )
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (1234, 56)
    assert (response.cached, response.attempts, response.model, response.cost_usd) == (False, 1, MODEL, 0.0)

    (sent,) = server.chat_requests
    body = sent.body
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert body["model"] == MODEL
    assert body["temperature"] == 0.0
    assert "max_tokens" not in body
    assert body["messages"][0] == {"role": "system", "content": "You compare two images of one place."}
    parts = body["messages"][1]["content"]
    assert parts[0] == {"type": "text", "text": "List every change."}
    assert [p["image_url"]["url"] for p in parts[1:]] == [before.data_url, after.data_url]
    assert all(p["image_url"]["url"].startswith("data:image/png;base64,") for p in parts[1:])
    assert before.data_url != after.data_url
    response_format = body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "GridReview"
    assert response_format["json_schema"]["strict"] is True
    schema = response_format["json_schema"]["schema"]
    assert schema["required"] == ["changes"]
    assert schema["additionalProperties"] is False
    assert sleeps.waits == []


def test_max_tokens_and_temperature_are_sent(server: ScriptedLLMServer, sleeps: SleepRecorder) -> None:
    server.add(ANSWER)
    request = LLMRequest(
        task="beautify",
        system="s",
        prompt="p",
        response_model=GridReview,
        prompt_hash="b" * 64,
        temperature=0.7,
        max_tokens=300,
    )
    make_backend(server, sleeps).complete(request)
    body = server.chat_requests[0].body
    assert (body["temperature"], body["max_tokens"]) == (0.7, 300)


def test_image_from_array_is_a_png_of_the_same_pixels() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    encoded = LLMImage.from_array(rgb)
    decoded = np.asarray(Image.open(io.BytesIO(encoded.png)))
    np.testing.assert_array_equal(decoded, rgb)
    assert encoded.sha256 == LLMImage.from_png(encoded.png).sha256
    assert len(encoded.sha256) == 64
    assert "png=" not in repr(encoded)
    with pytest.raises(ValueError, match="uint8"):
        LLMImage.from_array(rgb.astype(np.float32))
    with pytest.raises(ValueError, match="PNG"):
        LLMImage.from_png(b"GIF89a...")


def test_code_fenced_json_is_accepted_without_a_repair(server: ScriptedLLMServer, sleeps: SleepRecorder) -> None:
    server.add(Reply('```json\n{"changes": []}\n```'))
    response = make_backend(server, sleeps).complete(grid_request())
    assert response.parsed == GridReview(changes=[])
    assert response.attempts == 1


def test_served_models_lists_the_endpoint_models(server: ScriptedLLMServer, sleeps: SleepRecorder) -> None:
    assert make_backend(server, sleeps).served_models() == [MODEL]


# Retries ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("retry_after", "expected_wait"), [("3", 3.0), ("0", 0.0), ("120", 10.0)])
def test_rate_limit_is_retried_after_the_servers_retry_after(
    server: ScriptedLLMServer, sleeps: SleepRecorder, retry_after: str, expected_wait: float
) -> None:
    server.add(Status(429, {"Retry-After": retry_after}, "slow down"), ANSWER)
    response = make_backend(server, sleeps, max_retry_after_s=10.0).complete(grid_request(image(1)))
    assert response.parsed == EXPECTED
    assert response.attempts == 2
    assert sleeps.waits == [expected_wait]
    assert len(server.chat_requests) == 2


def test_server_errors_are_retried_with_jittered_exponential_backoff(
    server: ScriptedLLMServer, sleeps: SleepRecorder
) -> None:
    server.add(Status(500), Status(503), ANSWER)
    response = make_backend(server, sleeps, backoff_base_s=2.0).complete(grid_request())
    assert response.parsed == EXPECTED
    assert response.attempts == 3
    jitter = random.Random(0)
    expected = [2.0 * (0.5 + 0.5 * jitter.random()), 4.0 * (0.5 + 0.5 * jitter.random())]
    assert sleeps.waits == pytest.approx(expected)
    assert 1.0 <= sleeps.waits[0] <= 2.0 and 2.0 <= sleeps.waits[1] <= 4.0


def test_a_timeout_is_retried(server: ScriptedLLMServer, sleeps: SleepRecorder) -> None:
    server.add(Reply(ANSWER, delay_s=1.5), ANSWER)
    response = make_backend(server, sleeps, timeout_s=0.5).complete(grid_request())
    assert response.parsed == EXPECTED
    assert response.attempts == 2
    assert len(sleeps.waits) == 1


def test_exhausted_retries_raise_unavailable_naming_the_task(server: ScriptedLLMServer, sleeps: SleepRecorder) -> None:
    server.add(Status(500, message="model worker crashed"), Status(502), Status(500, message="model worker crashed"))
    with pytest.raises(LLMUnavailableError) as caught:
        make_backend(server, sleeps, max_attempts=3).complete(grid_request())
    message = str(caught.value)
    assert "'grid_review'" in message
    assert "after 3 attempt(s)" in message
    assert "HTTP 500: model worker crashed" in message
    assert "CRAFT_LLM_BASE_URL" in message
    assert caught.value.task == "grid_review"
    assert len(server.chat_requests) == 3
    assert len(sleeps.waits) == 2


def test_a_truncated_body_is_retried_like_a_server_error(server: ScriptedLLMServer, sleeps: SleepRecorder) -> None:
    server.add(Truncated(keep=0.6), ANSWER)
    response = make_backend(server, sleeps).complete(grid_request())
    assert response.parsed == EXPECTED and response.attempts == 2 and len(sleeps.waits) == 1


def test_bodies_truncated_every_time_raise_unavailable_without_blaming_the_url(
    server: ScriptedLLMServer, sleeps: SleepRecorder
) -> None:
    server.add(Truncated(keep=0.3), Truncated(keep=0.9))
    with pytest.raises(LLMUnavailableError) as caught:
        make_backend(server, sleeps, max_attempts=2).complete(grid_request())
    message = str(caught.value)
    assert "not whole JSON" in message and "2 time(s)" in message and "'grid_review'" in message
    assert "CRAFT_LLM_BASE_URL" not in message and "truncates answers" in message


def test_an_html_page_is_a_wrong_url_not_a_retry(sleeps: SleepRecorder) -> None:
    class Page(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b"<html><body>Welcome to nginx</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    with ThreadingHTTPServer(("127.0.0.1", 0), Page) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        backend = OpenAIBackend(f"http://127.0.0.1:{httpd.server_address[1]}", MODEL, None, sleep=sleeps)
        try:
            with pytest.raises(LLMError, match="not a chat completion") as caught:
                backend.complete(grid_request())
        finally:
            httpd.shutdown()
    assert not isinstance(caught.value, LLMUnavailableError) and "CRAFT_LLM_BASE_URL" in str(caught.value)
    assert sleeps.waits == []


def test_an_unreachable_endpoint_raises_unavailable(sleeps: SleepRecorder) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", MODEL, None, max_attempts=2, sleep=sleeps)
    with pytest.raises(LLMUnavailableError, match="connection failed") as caught:
        backend.complete(grid_request())
    assert "after 2 attempt(s)" in str(caught.value)
    assert len(sleeps.waits) == 1


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (401, "check CRAFT_LLM_API_KEY"),
        (403, "check CRAFT_LLM_API_KEY"),
        (404, "check CRAFT_LLM_MODEL"),
        (400, "accepts images and structured output"),
    ],
)
def test_client_errors_fail_at_once_with_a_hint(
    server: ScriptedLLMServer, sleeps: SleepRecorder, status: int, hint: str
) -> None:
    # Servers may echo the key they were given; it must not reach our message or traceback.
    server.add(Status(status, message=f"Incorrect API key provided: {API_KEY}"))
    with pytest.raises(LLMError) as caught:
        make_backend(server, sleeps).complete(grid_request())
    assert not isinstance(caught.value, LLMUnavailableError)
    message = str(caught.value)
    assert hint in message
    assert f"HTTP {status}" in message
    assert "'grid_review'" in message
    assert API_KEY not in message
    assert "[redacted]" in message
    assert API_KEY not in "".join(traceback.format_exception(caught.value))
    assert len(server.chat_requests) == 1
    assert sleeps.waits == []


def test_retry_logs_never_show_the_key(
    server: ScriptedLLMServer, sleeps: SleepRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    server.add(Status(500, message=f"upstream rejected {API_KEY}"), ANSWER)
    with caplog.at_level(logging.DEBUG):
        make_backend(server, sleeps).complete(grid_request())
    assert "retrying" in caplog.text
    assert "[redacted]" in caplog.text
    assert API_KEY not in caplog.text


# Repairs and refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_answer", "reported_problem"),
    [
        ("Sure! Here are the changes: the statues.", "Invalid JSON"),
        ('{"changes": [{"position": "center"}]}', "changes.0.change_type: Field required"),
        ('{"changes": [{"position": "center", "change_type": 7, "expression": "x"}]}', "changes.0.change_type"),
    ],
)
def test_an_invalid_answer_gets_one_repair_re_ask(
    server: ScriptedLLMServer, sleeps: SleepRecorder, bad_answer: str, reported_problem: str
) -> None:
    meter = UsageMeter()
    server.add(Reply(bad_answer, prompt_tokens=100, completion_tokens=20), Reply(ANSWER, 150, 30))
    response = make_backend(server, sleeps, usage=meter).complete(grid_request(image(5)))

    assert response.parsed == EXPECTED
    assert response.attempts == 2
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (250, 50)
    assert meter.calls == 2
    first, repair = server.chat_requests
    assert repair.body["messages"][:2] == first.body["messages"]
    assert repair.body["messages"][2] == {"role": "assistant", "content": bad_answer}
    repair_text = user_text(repair.body)
    assert reported_problem in repair_text
    assert '"changes"' in repair_text  # the schema is shown again
    assert repair.body["response_format"]["json_schema"]["name"] == "GridReview"


def test_two_invalid_answers_raise_a_response_error(server: ScriptedLLMServer, sleeps: SleepRecorder) -> None:
    server.add("not json", '{"changes": "none"}')
    with pytest.raises(LLMResponseError) as caught:
        make_backend(server, sleeps).complete(grid_request())
    message = str(caught.value)
    assert "'grid_review'" in message
    assert "GridReview" in message
    assert "changes: Input should be a valid array" in message
    assert caught.value.task == "grid_review"
    assert len(server.chat_requests) == 2


def test_a_refusal_raises_without_retrying(server: ScriptedLLMServer, sleeps: SleepRecorder) -> None:
    meter = UsageMeter()
    server.add(Refusal("I can't describe these images."))
    with pytest.raises(LLMRefusalError) as caught:
        make_backend(server, sleeps, usage=meter).complete(grid_request())
    assert "I can't describe these images." in str(caught.value)
    assert "'grid_review'" in str(caught.value)
    assert len(server.chat_requests) == 1
    assert meter.calls == 1  # the refusal still cost tokens


def test_a_server_without_json_schema_is_asked_in_json_mode(server: ScriptedLLMServer, sleeps: SleepRecorder) -> None:
    server.add(Status(400, message="response_format type json_schema is not supported"), ANSWER, ANSWER)
    backend = make_backend(server, sleeps)
    first = backend.complete(grid_request(prompt="first"))
    second = backend.complete(grid_request(prompt="second"))

    assert first.parsed == second.parsed == EXPECTED
    assert (first.attempts, second.attempts) == (2, 1)
    rejected, fallback, later = (r.body for r in server.chat_requests)
    assert rejected["response_format"]["type"] == "json_schema"
    assert fallback["response_format"] == {"type": "json_object"}
    assert later["response_format"] == {"type": "json_object"}
    system = fallback["messages"][0]["content"]
    assert system.startswith("You compare two images of one place.")
    assert '"changes"' in system and "JSON schema" in system
    assert sleeps.waits == []


# Cache ------------------------------------------------------------------------------------------------


def test_an_identical_request_is_answered_from_the_cache(
    server: ScriptedLLMServer, sleeps: SleepRecorder, tmp_path: Path
) -> None:
    meter = UsageMeter()
    server.add(ANSWER)
    with ResponseCache(tmp_path / "llm.sqlite") as cache:
        backend = make_backend(server, sleeps, cache=cache, usage=meter, price_per_1k_prompt=1.0)
        fresh = backend.complete(grid_request(image(1), image(2)))
        again = backend.complete(grid_request(image(1), image(2)))

    assert len(server.chat_requests) == 1
    assert (fresh.cached, again.cached) == (False, True)
    assert again.parsed == fresh.parsed == EXPECTED
    assert again.raw_text == fresh.raw_text
    assert (again.attempts, again.cost_usd) == (0, 0.0)
    assert again.usage == fresh.usage
    assert meter.snapshot() == LLMUsage(calls=1, prompt_tokens=100, completion_tokens=20, cost_usd=0.1)
    assert meter.cached_hits == 1


@pytest.mark.parametrize(
    "changed",
    [
        {"images": [image(1), image(3)]},
        {"prompt": "List every change, please."},
        {"prompt_hash": "c" * 64},
        {"temperature": 0.2},
    ],
)
def test_a_different_request_misses_the_cache(
    server: ScriptedLLMServer, sleeps: SleepRecorder, tmp_path: Path, changed: dict[str, Any]
) -> None:
    server.add(ANSWER, ANSWER)
    base = grid_request(image(1), image(2))
    other = LLMRequest(**{**base.__dict__, **changed})
    with ResponseCache(tmp_path / "llm.sqlite") as cache:
        backend = make_backend(server, sleeps, cache=cache)
        backend.complete(base)
        response = backend.complete(other)
        assert len(cache) == 2
    assert response.cached is False
    assert len(server.chat_requests) == 2


def test_the_cache_key_covers_backend_model_and_schema() -> None:
    class Other(BaseModel):
        changes: list[str]

    request = grid_request(image(1))
    key = cache_key("openai", MODEL, request)
    assert key == cache_key("openai", MODEL, grid_request(image(1)))
    assert key != cache_key("openai", "other-model", request)
    assert key != cache_key("offline", MODEL, request)
    other_schema = LLMRequest(**{**request.__dict__, "response_model": Other})
    assert key != cache_key("openai", MODEL, other_schema)


def test_the_cache_survives_reopening_the_file(sleeps: SleepRecorder, tmp_path: Path) -> None:
    path = tmp_path / "cache" / "llm.sqlite"
    with ScriptedLLMServer([ANSWER]) as first_server, ResponseCache(path) as cache:
        make_backend(first_server, sleeps, cache=cache).complete(grid_request(image(9)))
    with ScriptedLLMServer() as second_server, ResponseCache(path) as reopened:
        response = make_backend(second_server, sleeps, cache=reopened).complete(grid_request(image(9)))
        assert second_server.requests == []
    assert response.cached is True
    assert response.parsed == EXPECTED


def test_an_unusable_cache_entry_is_asked_again_and_overwritten(
    server: ScriptedLLMServer, sleeps: SleepRecorder, tmp_path: Path
) -> None:
    import sqlite3

    path = tmp_path / "llm.sqlite"
    request = grid_request(image(4))
    key = cache_key("openai", MODEL, request)
    with ResponseCache(path):
        pass
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO llm_responses (key, task, model, raw_text, usage) VALUES (?, ?, ?, ?, ?)",
            (key, "grid_review", MODEL, "{torn", "not json"),
        )
    server.add(ANSWER)
    with ResponseCache(path) as cache:
        backend = make_backend(server, sleeps, cache=cache)
        fresh = backend.complete(request)
        again = backend.complete(request)
        assert len(cache) == 1
    assert (fresh.cached, again.cached) == (False, True)
    assert again.parsed == EXPECTED
    assert len(server.chat_requests) == 1


def test_a_file_that_is_not_a_database_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "llm.sqlite"
    path.write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(LLMError, match="delete that file"):
        ResponseCache(path)


def test_the_key_is_never_stored_or_shown(server: ScriptedLLMServer, sleeps: SleepRecorder, tmp_path: Path) -> None:
    server.add(ANSWER, ANSWER)
    path = tmp_path / "llm.sqlite"
    with ResponseCache(path) as cache:
        backend = make_backend(server, sleeps, cache=cache)
        backend.complete(grid_request(image(1)))
        backend.complete(grid_request(image(2)))
        assert API_KEY not in repr(backend)
        assert "api_key=set" in repr(backend)
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("llm.sqlite"))
    assert b"mid-right" in stored  # the answers are there...
    assert API_KEY.encode() not in stored  # ...the key is not


# Usage and budget -------------------------------------------------------------------------------------


def test_usage_and_cost_are_metered_from_the_prices(server: ScriptedLLMServer, sleeps: SleepRecorder) -> None:
    meter = UsageMeter()
    server.add(Reply(ANSWER, 1000, 200), Reply(ANSWER, 3000, 100))
    backend = make_backend(server, sleeps, usage=meter, price_per_1k_prompt=0.5, price_per_1k_completion=2.0)
    first = backend.complete(grid_request(image(1)))
    second = backend.complete(grid_request(image(2)))
    assert first.cost_usd == pytest.approx(0.5 + 0.4)
    assert second.cost_usd == pytest.approx(1.5 + 0.2)
    snapshot = meter.snapshot()
    assert (snapshot.calls, snapshot.prompt_tokens, snapshot.completion_tokens) == (2, 4000, 300)
    assert snapshot.cost_usd == pytest.approx(2.6)
    assert meter.cached_hits == 0


def test_a_spent_money_budget_stops_the_next_call_before_any_request(
    server: ScriptedLLMServer, sleeps: SleepRecorder, tmp_path: Path
) -> None:
    meter = UsageMeter(budget_usd=0.10)
    server.add(Reply(ANSWER, 1000, 0))
    with ResponseCache(tmp_path / "llm.sqlite") as cache:
        backend = make_backend(server, sleeps, usage=meter, cache=cache, price_per_1k_prompt=0.25)
        backend.complete(grid_request(image(1)))  # costs $0.25: crosses the budget, still answered
        with pytest.raises(BudgetExceededError) as caught:
            backend.complete(grid_request(image(2)))
        # An answer already paid for stays free to read.
        assert backend.complete(grid_request(image(1))).cached is True
    message = str(caught.value)
    assert "$0.2500 of a $0.1000 budget" in message
    assert "'grid_review'" in message
    assert "raise the run's LLM budget" in message
    assert len(server.chat_requests) == 1
    assert meter.calls == 1


def test_a_spent_token_budget_stops_the_next_call(server: ScriptedLLMServer, sleeps: SleepRecorder) -> None:
    meter = UsageMeter(budget_tokens=100)
    server.add(Reply(ANSWER, 90, 20))
    backend = make_backend(server, sleeps, usage=meter)
    backend.complete(grid_request())
    with pytest.raises(BudgetExceededError, match="110 of a 100-token budget"):
        backend.complete(grid_request(image(7)))
    assert len(server.chat_requests) == 1


# Concurrency ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2])
def test_no_more_requests_in_flight_than_max_concurrency(
    server: ScriptedLLMServer, sleeps: SleepRecorder, limit: int
) -> None:
    calls = 6
    server.add(*[Reply(ANSWER, delay_s=0.25) for _ in range(calls)])
    backend = make_backend(server, sleeps, max_concurrency=limit)
    with ThreadPoolExecutor(max_workers=calls) as pool:
        responses = list(pool.map(lambda i: backend.complete(grid_request(image(i))), range(calls)))
    assert [r.parsed for r in responses] == [EXPECTED] * calls
    assert server.max_in_flight == limit
    assert len(server.chat_requests) == calls


# Registry ---------------------------------------------------------------------------------------------


def test_create_llm_backend_builds_openai_with_the_workspace_cache(tmp_path: Path) -> None:
    settings = Settings(
        workspace=tmp_path, llm_base_url="http://127.0.0.1:9/v1", llm_model=MODEL, llm_api_key=SecretStr(API_KEY)
    )
    meter = UsageMeter()
    backend = create_llm_backend(settings, usage=meter)
    assert isinstance(backend, OpenAIBackend)
    assert (backend.name, backend.model_id, backend.base_url) == ("openai", MODEL, "http://127.0.0.1:9/v1")
    assert backend.usage is meter
    assert backend.cache is not None and backend.cache.path == tmp_path / "cache" / "llm.sqlite"
    assert llm_cache_path(settings).is_file()
    assert create_llm_backend(settings, "openai").name == "openai"


def test_timeout_attempts_and_prices_come_from_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        workspace=tmp_path,
        llm_base_url="http://127.0.0.1:9/v1",
        llm_model="gpt-4o-mini-2024-07-18",
        llm_timeout_s=7.5,
        llm_max_attempts=2,
    )
    backend = create_llm_backend(settings, usage=UsageMeter(budget_usd=1.0))
    assert isinstance(backend, OpenAIBackend)
    assert (backend.timeout_s, backend.max_attempts) == (7.5, 2)
    # a dated id takes its family's list price (the longest matching prefix: gpt-4o-mini, not gpt-4o)
    assert (backend.price_per_1k_prompt, backend.price_per_1k_completion) == KNOWN_PRICES["gpt-4o-mini"]
    assert backend.priced
    configured = settings.model_copy(update={"llm_price_per_1k_prompt": 0.0, "llm_price_per_1k_completion": 0.0})
    free = create_llm_backend(configured, usage=UsageMeter(budget_usd=1.0))
    assert isinstance(free, OpenAIBackend) and free.priced and free.price_per_1k_completion == 0.0
    with pytest.raises(ConfigError, match="set both"):
        prices_for("x", 0.1, None)


def test_a_money_budget_on_a_model_without_a_price_refuses_to_start(tmp_path: Path) -> None:
    settings = Settings(workspace=tmp_path, llm_base_url="http://127.0.0.1:9/v1", llm_model="qwen2.5-vl-7b")
    with pytest.raises(ConfigError, match=r"price of model 'qwen2\.5-vl-7b' is not known") as caught:
        create_llm_backend(settings, usage=UsageMeter(budget_usd=0.01))
    assert "--budget-tokens" in str(caught.value) and "CRAFT_LLM_PRICE_PER_1K_PROMPT" in str(caught.value)
    # a token budget, or no budget, needs no price; the backend then says its cost is unknown
    unpriced = create_llm_backend(settings, usage=UsageMeter(budget_tokens=1000))
    assert isinstance(unpriced, OpenAIBackend) and not unpriced.priced


def test_openai_needs_an_endpoint_and_a_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CRAFT_LLM_MODEL not set"):
        create_llm_backend(Settings(workspace=tmp_path, llm_base_url="http://127.0.0.1:9/v1", llm_model=None))
    with pytest.raises(ConfigError, match="CRAFT_LLM_BASE_URL and CRAFT_LLM_MODEL not set"):
        create_llm_backend(Settings(workspace=tmp_path, llm_base_url=None, llm_model=None), "openai")


def test_without_an_endpoint_the_offline_backend_is_chosen(tmp_path: Path) -> None:
    settings = Settings(workspace=tmp_path, llm_base_url=None, llm_model=None)
    assert create_llm_backend(settings).name == "offline"
    with pytest.raises(ConfigError, match="unknown LLM backend 'gpt'"):
        create_llm_backend(settings, "gpt")


def test_other_modules_can_register_backends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Canned:
        name = "offline"
        model_id = "rules-v1"

        def complete(self, request: LLMRequest[Any]) -> LLMResponse[Any]:
            parsed = request.response_model.model_validate(ANSWER)
            return LLMResponse(parsed, "", TokenUsage(), 0.0, False, 0, self.model_id)

    def build(settings: Settings, usage: UsageMeter | None) -> LLMBackend:
        return Canned()

    monkeypatch.setitem(LLM_BACKENDS, "offline", build)
    backend = create_llm_backend(Settings(workspace=tmp_path, llm_base_url=None))
    assert backend.name == "offline"
    assert backend.complete(grid_request()).parsed == EXPECTED
