"""A scripted OpenAI-compatible HTTP server: the LLM backend's tests and ``bench reliability``'s fault injection.

It listens on 127.0.0.1 (a free port), answers ``POST /v1/chat/completions`` by replaying a script of steps
and ``GET /v1/models`` with the configured model names, and records every request (path, headers, parsed
JSON body) plus how many requests were in flight at once. When the script runs out it answers HTTP 500
saying so, and counts the request in ``unexpected``, so a test that makes an extra call fails loudly.

Steps:
    - :class:`Reply`: a ``chat.completion`` whose message content is the given object as JSON, or the
      given string as is (for malformed answers); optional delay (longer than the client's timeout to
      simulate a timeout).
    - :class:`Status`: an HTTP error status with headers and a JSON error body (429 with Retry-After, 500...).
    - :class:`Refusal`: a ``chat.completion`` with ``message.refusal`` set and no content.
    - :class:`Truncated`: HTTP 200 whose JSON body is cut off part-way (a proxy or a server that drops the
      connection mid-answer), with a Content-Length that matches what is sent.
    Any other object is shorthand for ``Reply(content=object)``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass
class Reply:
    content: Any
    prompt_tokens: int = 100
    completion_tokens: int = 20
    delay_s: float = 0.0
    finish_reason: str = "stop"


@dataclass
class Status:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "scripted error"
    delay_s: float = 0.0


@dataclass
class Refusal:
    text: str = "I'm sorry, I can't help with that."
    prompt_tokens: int = 100
    completion_tokens: int = 10
    delay_s: float = 0.0


@dataclass
class Truncated:
    keep: float = 0.5
    """Share of the body's bytes that are sent."""
    delay_s: float = 0.0


Step = Reply | Status | Refusal | Truncated


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class ScriptedLLMServer:
    """The server; use it as a context manager (``with ScriptedLLMServer([...]) as server:``).

    Args:
        script: steps answered in order, one per chat-completion request.
        models: model ids listed by ``GET /v1/models``.
        fallback: when the script is exhausted, answers computed from the request body by this function
            (for long conversations such as the agent's): a step, or the content of a :class:`Reply`;
            without it, an exhausted script answers 500.
    """

    def __init__(
        self,
        script: Iterable[Any] = (),
        models: Iterable[str] = ("test-model",),
        fallback: Callable[[Any], Any] | None = None,
    ) -> None:
        self.models = list(models)
        self.fallback = fallback
        self.fallback_answers = 0
        self.requests: list[RecordedRequest] = []
        self.unexpected = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._script: deque[Step] = deque()
        self.add(*script)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="scripted-llm-server", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """Recorded chat-completion requests, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._script)

    def add(self, *steps: Any) -> None:
        """Append steps to the script."""
        with self._lock:
            self._script.extend(s if isinstance(s, Reply | Status | Refusal | Truncated) else Reply(s) for s in steps)

    def start(self) -> ScriptedLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedLLMServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # Called from handler threads.
    def _record(self, request: RecordedRequest) -> Step | None:
        with self._lock:
            self.requests.append(request)
            if not request.path.endswith("/chat/completions"):
                return None
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            if self._script:
                return self._script.popleft()
            if self.fallback is not None:
                self.fallback_answers += 1
                answer = self.fallback(request.body)
                return answer if isinstance(answer, Reply | Status | Refusal | Truncated) else Reply(answer)
            self.unexpected += 1
            return Status(500, message=f"scripted LLM server: script exhausted (unexpected request #{self.unexpected})")

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1


def completion_body(model: str, content: str | None, refusal: str | None, step: Reply | Refusal) -> dict[str, Any]:
    """A ``chat.completion`` object as an OpenAI-compatible server sends it."""
    return {
        "id": f"chatcmpl-scripted-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": step.finish_reason if isinstance(step, Reply) else "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": step.prompt_tokens,
            "completion_tokens": step.completion_tokens,
            "total_tokens": step.prompt_tokens + step.completion_tokens,
        },
    }


def _handler_for(server: ScriptedLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read ``server.requests`` instead."""

        def _send_json(
            self, status: int, payload: Any, headers: dict[str, str] | None = None, keep: float = 1.0
        ) -> None:
            data = json.dumps(payload).encode()
            data = data[: int(len(data) * keep)]
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (a timeout test); nothing to answer.
                self.close_connection = True

        def _headers(self) -> dict[str, str]:
            return {name.lower(): value for name, value in self.headers.items()}

        def do_GET(self) -> None:
            server._record(RecordedRequest("GET", self.path, self._headers(), None))
            if self.path.rstrip("/").endswith("/models"):
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "scripted"} for m in server.models]
                self._send_json(200, {"object": "list", "data": data})
            else:
                self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            if not self.path.endswith("/chat/completions"):
                server._record(RecordedRequest("POST", self.path, self._headers(), body))
                self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            step = server._record(RecordedRequest("POST", self.path, self._headers(), body))
            try:
                self._answer(step, body)
            finally:
                server._done()

        def _answer(self, step: Step | None, body: Any) -> None:
            assert step is not None
            if step.delay_s:
                time.sleep(step.delay_s)
            model = body.get("model", "unknown") if isinstance(body, dict) else "unknown"
            if isinstance(step, Status):
                error = {"error": {"message": step.message, "type": "scripted", "code": str(step.status)}}
                self._send_json(step.status, error, step.headers)
            elif isinstance(step, Refusal):
                self._send_json(200, completion_body(model, None, step.text, step))
            elif isinstance(step, Truncated):
                self._send_json(200, completion_body(model, "{}", None, Reply({})), keep=step.keep)
            else:
                content = step.content if isinstance(step.content, str) else json.dumps(step.content)
                self._send_json(200, completion_body(model, content, None, step))

    return Handler


# Answers of a cooperative model to the agent's requests ------------------------------------------------


def schema_name(body: dict[str, Any]) -> str:
    """The name of the answer schema a request asks for (``GridReview``, ``CorrectionVerdict``...)."""
    return str(body["response_format"]["json_schema"]["name"])


def prompt_text(body: dict[str, Any]) -> str:
    """The first user message's text (a repair re-ask appends messages after it)."""
    parts = next(m for m in body["messages"] if m["role"] == "user")["content"]
    return "".join(p.get("text", "") for p in parts) if isinstance(parts, list) else str(parts)


def cooperative_answer(body: dict[str, Any]) -> dict[str, Any]:
    """What a cooperative model would answer to one of the agent's requests, computed from the request (the
    prompt carries the facts): every candidate confirmed, every mask accepted, plain expressions."""
    name = schema_name(body)
    text = prompt_text(body)
    if name == "GridReview":
        cell = re.search(r"looking at the (.+?) cell", text)
        candidates = json.loads(text.split("Candidates:\n", 1)[1].strip())
        return {
            "changes": [
                {
                    "candidate_id": c["candidate_id"],
                    "verdict": "confirm",
                    "nuisance": None,
                    "change_type": c["detector_type"],
                    "category": c["category_hint"] or "building",
                    "description": f"the {c['colour_after']} {c['category_hint'] or 'building'} in the "
                    f"{cell.group(1) if cell else 'center'}",
                    "box": None,
                }
                for c in candidates
            ]
        }
    if name == "CorrectionVerdict":
        return {"action": "accept", "reason": "the mask covers the target"}
    return {
        "expressions": [
            "the newly built structure beside the lane",
            "the structure that appeared near the lane",
            "the freshly added structure by the lane",
        ]
    }
