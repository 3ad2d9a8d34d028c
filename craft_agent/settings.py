"""One settings object for the whole tool (pydantic-settings, env prefix ``CRAFT_``, ``.env`` supported).

Every command builds one :class:`Settings` and passes it down; no module reads the environment on its
own. Secrets are ``SecretStr`` so they never print in logs, reprs or JSON summaries.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from craft_agent.errors import ConfigError

CATALOG_FILENAME = "catalog.sqlite"
DEFAULT_MAX_IMAGE_PIXELS = 2 * 89_478_485
"""Pillow's own refusal point (twice its ``Image.MAX_IMAGE_PIXELS`` warning level), kept as the default limit."""
DEFAULT_WINDOWED_READ_PIXELS = 4096 * 4096
"""GeoTIFF pairs over this many pixels are read window by window (a whole read of one costs about 1 GB at most)."""


class Settings(BaseSettings):
    """Configuration, read from arguments, then ``CRAFT_*`` environment variables, then ``.env``."""

    model_config = SettingsConfigDict(env_prefix="CRAFT_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    workspace: Path = Field(default=Path("workspace"), description="Folder holding catalog, images, caches.")
    catalog_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the catalog; default: SQLite file catalog.sqlite in the workspace. "
        "Use postgresql+psycopg://user@host/db for many workers.",
    )

    # Ingestion
    default_domain: Literal["rs", "ns"] = Field(default="rs", description="Domain when a source does not say.")
    tile_size: int = Field(default=1024, ge=128, description="Pairs larger than this are cut into tiles (px).")
    tile_overlap: int = Field(default=128, ge=0, description="Overlap between neighbouring tiles (px).")
    stretch_percentiles: tuple[float, float] = Field(
        default=(2.0, 98.0), description="Percentile stretch applied to imagery deeper than 8 bits."
    )
    max_nodata_fraction: float = Field(
        default=0.95, ge=0, le=1, description="Tiles with more nodata than this are refused."
    )
    max_image_pixels: int = Field(
        default=DEFAULT_MAX_IMAGE_PIXELS,
        ge=1,
        description="Largest PNG/JPEG (width x height) read; Pillow refuses larger ones as possible decompression "
        "bombs. GeoTIFFs are read through rasterio and have no such limit.",
    )
    windowed_read_pixels: int = Field(
        default=DEFAULT_WINDOWED_READ_PIXELS,
        ge=1,
        description="GeoTIFF (GDAL raster) pairs of more pixels than this (width x height) are read window by "
        "window, never whole, and their stretch percentiles come from a decimated read: a 10980 x 10980 "
        "Sentinel-2 tile ingests in under 2 GB of memory.",
    )

    # Language model (issue 4 uses these; doctor reports them)
    llm_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1"
    )
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = Field(
        default=60.0, gt=0, description="Seconds one LLM request may take before it counts as a (retried) timeout."
    )
    llm_max_attempts: int = Field(
        default=4, ge=1, description="HTTP attempts per LLM request for transient failures, the first included."
    )
    llm_price_per_1k_prompt: float | None = Field(
        default=None, ge=0, description="USD per 1,000 prompt tokens; default: the table of well-known models."
    )
    llm_price_per_1k_completion: float | None = Field(
        default=None, ge=0, description="USD per 1,000 completion tokens; default: the table of well-known models."
    )

    # Change detection
    change_checkpoint: Path | None = Field(
        default=None,
        description="A change.pt from `craft-agent train --stage change`; a checkpoint set here makes `learned` "
        "the default change detector in that workspace.",
    )

    # Segment Anything
    sam_checkpoint: Path | None = Field(default=None, description="Path of a segment-anything checkpoint.")
    sam_model_type: Literal["vit_b", "vit_l", "vit_h"] = "vit_b"

    # Label Studio (audit). An existing server: URL and token. Unset: `craft-agent audit serve` runs one locally.
    label_studio_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("label_studio_url", "CRAFT_LABEL_STUDIO_URL", "LABEL_STUDIO_URL"),
        description="URL of an existing Label Studio server; unset: the workspace's own local server.",
    )
    label_studio_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("label_studio_token", "CRAFT_LABEL_STUDIO_TOKEN", "LABEL_STUDIO_API_KEY"),
        description="API token for label_studio_url (legacy token); generated for the local server when unset.",
    )
    label_studio_username: str | None = Field(
        default=None, description="Admin e-mail of the local server; generated and stored in the workspace if unset."
    )
    label_studio_password: SecretStr | None = Field(
        default=None, description="Admin password of the local server; generated and stored if unset."
    )
    label_studio_home: Path | None = Field(
        default=None,
        description="Virtual environment of the local Label Studio server (installed on first use); "
        "default: ~/.cache/craft-agent/label-studio-<version>.",
    )
    label_studio_port: int | None = Field(default=None, ge=1, le=65535, description="Port; default: a free one.")
    label_studio_database_url: SecretStr | None = Field(
        default=None,
        description="postgresql://user:password@host:port/db for the local server; default: SQLite in the workspace.",
    )
    label_studio_document_root: Path | None = Field(
        default=None,
        description="The folder the server serves local files from (its LOCAL_FILES_DOCUMENT_ROOT); it must contain "
        "the workspace. Default: the workspace.",
    )
    label_studio_project: str | None = Field(default=None, description="Project title; default: from the workspace.")
    label_studio_images: Literal["auto", "local", "inline"] = Field(
        default="auto",
        description="How tasks reference images: local files served by a server on this machine, or inline "
        "data URIs (for a remote server); auto picks local for the workspace's own server.",
    )
    audit_policy: Literal["first", "majority", "two_agree"] = Field(
        default="first", description="How several annotations of one task decide its verdict."
    )

    @field_validator("stretch_percentiles")
    @classmethod
    def _ordered_percentiles(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 <= low < high <= 100:
            raise ValueError(f"stretch percentiles must satisfy 0 <= low < high <= 100, got {value}")
        return value

    @property
    def resolved_catalog_url(self) -> str:
        """The catalog URL to connect to (SQLite in the workspace unless configured)."""
        if self.catalog_url:
            return self.catalog_url
        return f"sqlite:///{(self.workspace / CATALOG_FILENAME).resolve()}"

    def redacted(self) -> dict[str, Any]:
        """Settings as plain JSON-able values with every secret masked, for summaries and provenance."""
        data = self.model_dump(mode="json")
        for key, value in list(data.items()):
            if isinstance(getattr(self, key), SecretStr) and value:
                data[key] = "**********"
        if self.catalog_url and "@" in self.catalog_url:
            data["catalog_url"] = _redact_url_password(self.catalog_url)
        return data


def _redact_url_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment with explicit overrides (None values are ignored).

    Raises:
        ConfigError: when a value is invalid, naming the setting and its environment variable.
    """
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        problems = "; ".join(_setting_problem(error) for error in exc.errors())
        raise ConfigError(
            f"invalid configuration: {problems}.",
            hint="check the CRAFT_* environment variables, .env and the command-line options named above.",
        ) from exc


def _setting_problem(error: Any) -> str:
    """One validation error as a sentence: the setting, its variable, the value and what is allowed."""
    name = str(error["loc"][0]) if error["loc"] else "settings"
    variable = name.upper() if name.upper().startswith(("CRAFT_", "LABEL_STUDIO_")) else f"CRAFT_{name.upper()}"
    where = f"{name} (option or {variable})"
    field = Settings.model_fields.get(name)
    annotation = field.annotation if field else None
    if get_origin(annotation) is Literal:
        choices = ", ".join(str(choice) for choice in get_args(annotation))
        return f"{where} is {error['input']!r}, not one of: {choices}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where} is {error['input']!r}: {message}"


def require_workspace(settings: Settings) -> None:
    """Refuse a workspace without a catalog, so a mistyped ``--workspace`` is not taken for a new, empty one.

    Only ``ingest`` and ``import`` fill a workspace; every command that reads one calls this first. A catalog
    elsewhere than a SQLite file (``catalog_url`` to PostgreSQL) says nothing about the folder: not checked.

    Raises:
        ConfigError: naming the workspace and listing the workspaces next to it and in the current folder.
    """
    url = settings.resolved_catalog_url
    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        return
    catalog_file = Path(url.removeprefix("sqlite:///"))
    if catalog_file.is_file():
        return
    workspace = settings.workspace
    if settings.catalog_url:
        problem = f"the catalog {catalog_file} (CRAFT_CATALOG_URL) does not exist."
    elif not workspace.exists():
        problem = f"workspace {workspace} does not exist."
    else:
        problem = f"workspace {workspace} holds no catalog ({CATALOG_FILENAME}): nothing was ingested into it."
    found = workspaces_near(workspace)
    create = f"create it with `craft-agent ingest SRC --workspace {workspace}`"
    if found:
        hint = f"workspaces found nearby: {', '.join(str(p) for p in found)}; pass one with --workspace, or {create}."
    else:
        hint = f"no workspace found next to it or in the current folder; check the path, or {create}."
    raise ConfigError(problem, hint=hint)


def workspaces_near(workspace: Path, limit: int = 10) -> list[Path]:
    """Folders next to ``workspace`` and in the current folder that hold a catalog, nearest first (at most limit)."""
    found: list[Path] = []
    for parent in dict.fromkeys([workspace.absolute().parent, Path.cwd()]):
        try:
            entries = sorted(os.scandir(parent), key=lambda entry: entry.name)
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir() and (path / CATALOG_FILENAME).is_file() and path not in found:
                found.append(path)
    shown = []
    for path in found[:limit]:
        try:
            shown.append(path.relative_to(Path.cwd()))
        except ValueError:
            shown.append(path)
    return shown
