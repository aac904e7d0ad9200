"""Settings every service shares; each service extends them in its own ``settings.py``.

Built once at the entry point and passed explicitly: nothing reads the environment at import time.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from castray.shared.names import Names


def split_csv(value: Any) -> Any:
    """A list setting from the environment: ``a,b,c`` (blanks dropped) or a JSON list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


# A list of strings, given in the environment comma-separated (or as JSON).
CsvList = Annotated[list[str], NoDecode, BeforeValidator(split_csv)]


class CommonSettings(BaseSettings):
    """Environment prefix ``CASTRAY_``; e.g. ``CASTRAY_NAMESPACE=test1``."""

    model_config = SettingsConfigDict(env_prefix="CASTRAY_", extra="ignore")

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("CASTRAY_REDIS_URL", "REDIS_URL", "redis_url"),
        description="Redis used for events, work streams and the view.",
    )
    namespace: str = Field(
        default="castray",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Prefix of every Redis key and channel.",
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_json: bool = Field(default=False, description='Log one JSON object per line (its fields: "Logs").')
    service_beat_s: float = Field(
        default=5.0, gt=0, description="Seconds between a service replica's heartbeats "
        "(<namespace>:services; GET /api/services, castray health --service).")
    service_stale_beats: int = Field(
        default=3, ge=1, description="A replica is stale after this many of its heartbeat intervals "
        "without a beat: marked in /api/services, and its castray health --service fails.")
    service_forget_s: float = Field(
        default=3600.0, gt=0, description="A replica silent this long is removed from <namespace>:services.")

    @property
    def names(self) -> Names:
        return Names(self.namespace)
