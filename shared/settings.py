"""Settings every service shares; each service extends them in its own ``settings.py``.

Built once at the entry point and passed explicitly: nothing reads the environment at import time.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from castray.shared.names import Names


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
    log_json: bool = Field(default=False, description="Log one JSON object per line.")

    @property
    def names(self) -> Names:
        return Names(self.namespace)
