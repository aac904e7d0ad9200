"""The original CastRay's message shapes: the ``POST /api/send`` body (``CastMessage``), its answer
(``CastResponse``) and the message entry kept for ``GET /api/nodes/{id}/messages``.

``messages_api`` checks and delivers; ``message_store`` keeps the entries as built here.
"""

from __future__ import annotations

import time
from typing import Any

from castray.shared.api import CastMessage, CastResponse  # the bodies' one home, shared with castray.client

__all__ = ["CastMessage", "CastResponse", "cast_response", "message_entry"]


def message_entry(msg: CastMessage, content: Any, message_id: str) -> dict[str, Any]:
    """A delivered message as the original listed it for a node (``content`` already checked)."""
    return {"message_id": message_id, "cast_type": msg.cast_type, "message_type": msg.message_type,
            "content": content, "sender": msg.sender, "group_id": msg.group_id,
            "timestamp": msg.timestamp if msg.timestamp is not None else time.time()}


def cast_response(msg: CastMessage, *, delivered: list[str], failed: list[str], delivery_time: float,
                  message_id: str) -> dict[str, Any]:
    """The original's answer to ``POST /api/send``."""
    answer = CastResponse(success=True, recipients_count=len(delivered), failed_recipients=failed,
                          message=f"{msg.cast_type} message delivered to {len(delivered)} node(s)"
                          + (f", {len(failed)} failed" if failed else ""),
                          delivery_time=delivery_time, message_id=message_id)
    return answer.model_dump()
