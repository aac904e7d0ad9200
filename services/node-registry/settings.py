"""Node-registry settings (``CASTRAY_`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from castray.shared.settings import CommonSettings


class RegistrySettings(CommonSettings):
    check_interval: float = Field(
        default=1.0, gt=0, le=60,
        description="Seconds between checks that the view has caught up with discovery's state "
                    "(pub/sub can drop messages); a view still behind at the next check is resynced.",
    )
    log_maxlen: int = Field(default=10_000, ge=100, description="Approximate cap of the view-changed log.")
