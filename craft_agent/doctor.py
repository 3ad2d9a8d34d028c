"""``craft-agent doctor``: what is configured and reachable, each with the fix when it is not.

A check is ``ok`` (configured and working), ``offline`` (not configured: the offline default is used,
which is fine), or ``error`` (configured but broken: the fix says what to do). Secrets are never shown.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Literal

from craft_agent import __version__
from craft_agent.catalog import Catalog
from craft_agent.errors import CraftError
from craft_agent.settings import Settings

Status = Literal["ok", "offline", "error"]


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _http_get(url: str, token: str | None, timeout: float) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


def _distribution_version(module: str) -> str:
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def check_python() -> Check:
    versions = [f"python {sys.version.split()[0]}", f"craft-agent {__version__}"]
    missing = []
    for module in ("torch", "torchvision", "rasterio", "cv2", "pycocotools"):
        try:
            imported = importlib.import_module(module)
            versions.append(f"{module} {getattr(imported, '__version__', None) or _distribution_version(module)}")
        except Exception as exc:  # a broken binary wheel raises more than ImportError
            missing.append(f"{module} ({type(exc).__name__}: {exc})")
    if missing:
        return Check(
            "python packages",
            "error",
            "cannot import " + "; ".join(missing),
            "re-create the environment with `make venv` (torch and torchvision must be the pinned pair).",
        )
    return Check("python packages", "ok", ", ".join(versions))


def check_workspace(settings: Settings) -> Check:
    workspace = settings.workspace
    try:
        workspace.mkdir(parents=True, exist_ok=True)
        probe = workspace / ".doctor-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return Check("workspace", "error", f"{workspace} is not writable ({exc})", "choose another --workspace.")
    free_gb = shutil.disk_usage(workspace).free / 1e9
    status: Status = "ok" if free_gb > 2 else "error"
    return Check(
        "workspace",
        status,
        f"{workspace.resolve()} ({free_gb:.1f} GB free)",
        "" if status == "ok" else "free disk space: images, caches and exports live here.",
    )


def check_catalog(settings: Settings) -> Check:
    try:
        with Catalog.from_settings(settings) as catalog:
            info = catalog.info()
    except CraftError as exc:
        return Check("catalog", "error", exc.message, exc.hint or "")
    return Check(
        "catalog",
        "ok",
        f"{info['catalog']} (schema v{info['schema_version']}, {info['pairs']} pairs)",
    )


def check_llm(settings: Settings, timeout: float) -> Check:
    if not settings.llm_base_url:
        return Check(
            "LLM endpoint",
            "offline",
            "no endpoint configured: the deterministic offline backend is used",
            "to use a model, set CRAFT_LLM_BASE_URL (any OpenAI-compatible /v1 URL), CRAFT_LLM_MODEL "
            "and CRAFT_LLM_API_KEY.",
        )
    url = settings.llm_base_url.rstrip("/") + "/models"
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    try:
        status = _http_get(url, key, timeout)
    except urllib.error.HTTPError as exc:
        hint = "check CRAFT_LLM_API_KEY." if exc.code in (401, 403) else "check the server's logs."
        return Check("LLM endpoint", "error", f"{url} answered HTTP {exc.code}", hint)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return Check(
            "LLM endpoint",
            "error",
            f"{url} is not reachable ({getattr(exc, 'reason', exc)})",
            "start the server or fix CRAFT_LLM_BASE_URL (it should end in /v1).",
        )
    model = settings.llm_model or "(no CRAFT_LLM_MODEL set)"
    return Check("LLM endpoint", "ok", f"{settings.llm_base_url} answered {status}; model {model}")


def check_sam(settings: Settings) -> Check:
    if settings.sam_checkpoint is None:
        return Check(
            "SAM checkpoint",
            "offline",
            "no checkpoint configured: the classical mask engine is used",
            f"to use Segment Anything, set CRAFT_SAM_CHECKPOINT to a {settings.sam_model_type} checkpoint file "
            "and CRAFT_SAM_MODEL_TYPE (vit_b, vit_l or vit_h).",
        )
    path = settings.sam_checkpoint
    if not path.is_file():
        return Check("SAM checkpoint", "error", f"{path} does not exist", "fix CRAFT_SAM_CHECKPOINT.")
    size_mb = path.stat().st_size / 1e6
    return Check("SAM checkpoint", "ok", f"{path} ({size_mb:.0f} MB, model type {settings.sam_model_type})")


def check_label_studio(settings: Settings, timeout: float) -> Check:
    from craft_agent.audit.server import SERVER_DIR, LabelStudioInstall, ServerInfo
    from craft_agent.localhost import health

    if not settings.label_studio_url:
        info = ServerInfo.read(settings.workspace / SERVER_DIR / "server.json")
        if info and info.alive and health(info.url, timeout):
            return Check("Label Studio", "ok", f"the workspace's own server runs at {info.url} (pid {info.pid})")
        install = LabelStudioInstall(settings.label_studio_home)
        installed = f"installed in {install.home}" if install.installed else f"not installed yet ({install.home})"
        return Check(
            "Label Studio",
            "offline",
            f"no server running for this workspace; local server {installed}",
            f"`craft-agent audit serve --workspace {settings.workspace} --detach` starts one (installing it on first "
            "use), or set CRAFT_LABEL_STUDIO_URL and CRAFT_LABEL_STUDIO_TOKEN for an existing server.",
        )
    base = settings.label_studio_url.rstrip("/")
    try:
        _http_get(base + "/health", None, timeout)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return Check(
            "Label Studio",
            "error",
            f"{base}/health is not reachable ({getattr(exc, 'reason', exc)})",
            "start the server or fix CRAFT_LABEL_STUDIO_URL.",
        )
    if not settings.label_studio_token:
        return Check("Label Studio", "error", f"{base} answers but no token is set", "set CRAFT_LABEL_STUDIO_TOKEN.")
    request = urllib.request.Request(
        base + "/api/current-user/whoami",
        headers={"Authorization": f"Token {settings.label_studio_token.get_secret_value()}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return Check("Label Studio", "error", f"{base} stopped answering ({exc})", "check the server.")
    if status != 200:
        return Check(
            "Label Studio",
            "error",
            f"{base} refused the token (HTTP {status})",
            "set CRAFT_LABEL_STUDIO_TOKEN to a legacy API token from Label Studio's Account & Settings page.",
        )
    return Check("Label Studio", "ok", f"{base} answers and accepts the token")


def run_checks(settings: Settings, timeout: float = 3.0) -> list[Check]:
    """Every check, in the order a user would fix them."""
    return [
        check_python(),
        check_workspace(settings),
        check_catalog(settings),
        check_llm(settings, timeout),
        check_sam(settings),
        check_label_studio(settings, timeout),
    ]
