"""The gateway's features, in the order their routes are added."""

from __future__ import annotations

ALL: list = []  # filled as features land: each module has setup(app: web.Application) -> None
