"""LLM answers cached in one SQLite file, so a re-run pays nothing for questions already answered.

The key covers everything that shapes an answer: backend, model, task, system text, prompt, the prompt
template's hash, the images' hashes, the response schema, temperature and the token cap. Only the answer's
text and token counts are stored; never the endpoint's credentials.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from craft_agent.llm.base import LLMError, LLMRequest, TokenUsage


def cache_key(backend_name: str, model_id: str, request: LLMRequest[Any]) -> str:
    """sha256 naming one request to one model: equal keys mean the cached answer can be reused."""
    payload = {
        "backend": backend_name,
        "model": model_id,
        "task": request.task,
        "system": request.system,
        "prompt": request.prompt,
        "prompt_hash": request.prompt_hash,
        "images": [image.sha256 for image in request.images],
        "schema": request.response_model.model_json_schema(),
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    """A stored answer: the model's raw text, its token counts and the model that wrote it."""

    raw_text: str
    usage: TokenUsage
    model: str


_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_responses (
    key TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    raw_text TEXT NOT NULL,
    usage TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)
"""


class ResponseCache:
    """A SQLite file of LLM answers keyed by :func:`cache_key` (WAL mode; safe to share between threads).

    Entries that cannot be read back (torn rows, bad JSON) are treated as misses; the backend then asks
    again and :meth:`put` overwrites them. Whether a stored text still matches the response schema is the
    backend's check, which also treats a failure as a miss.

    Args:
        path: the SQLite file (created with its folder when missing).

    Raises:
        LLMError: when the file exists but is not a SQLite database.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise LLMError(
                f"the LLM response cache {path} cannot be opened: {exc}.",
                hint="delete that file (it only holds cached answers; they are asked again).",
            ) from exc

    def get(self, key: str) -> CachedAnswer | None:
        """The answer stored under ``key``, or None when absent or unreadable."""
        with self._lock:
            row = self._db.execute("SELECT raw_text, usage, model FROM llm_responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        raw_text, usage_json, model = row
        try:
            usage = json.loads(usage_json)
            return CachedAnswer(
                raw_text=str(raw_text),
                usage=TokenUsage(int(usage["prompt_tokens"]), int(usage["completion_tokens"])),
                model=str(model),
            )
        except (TypeError, ValueError, KeyError):
            return None

    def put(self, key: str, task: str, answer: CachedAnswer) -> None:
        """Store (or overwrite) the answer under ``key``."""
        usage = json.dumps(
            {"prompt_tokens": answer.usage.prompt_tokens, "completion_tokens": answer.usage.completion_tokens}
        )
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO llm_responses (key, task, model, raw_text, usage) VALUES (?, ?, ?, ?, ?)",
                (key, task, answer.model, answer.raw_text, usage),
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM llm_responses").fetchone()
        return int(count)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"
