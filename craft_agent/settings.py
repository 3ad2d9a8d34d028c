"""One settings object for the whole tool (pydantic-settings, env prefix ``CRAFT_``, ``.env`` supported).

Every command builds one :class:`Settings` and passes it down; no module reads the environment on its
own. Secrets are ``SecretStr`` so they never print in logs, reprs or JSON summaries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from craft_agent.errors import ConfigError

CATALOG_FILENAME = "catalog.sqlite"


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

    # Language model (issue 4 uses these; doctor reports them)
    llm_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1"
    )
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None

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
    except ValueError as exc:
        raise ConfigError(
            f"invalid configuration: {exc}",
            hint="check the CRAFT_* environment variables, .env and the command-line options named above.",
        ) from exc
