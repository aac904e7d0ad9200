"""Every ``CASTRAY_*`` setting of every service, as a Markdown table (the README's "Settings").

``python -m castray.settings_table`` prints it; a test checks that the README lists every variable.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

# (who, module, class), in the order the table names them.
SETTINGS_CLASSES: list[tuple[str, str, str]] = [
    ("all", "castray.shared.settings", "CommonSettings"),
    ("discovery", "castray.discovery.settings", "DiscoverySettings"),
    ("registry", "castray.node_registry.settings", "RegistrySettings"),
    ("transfer", "castray.transfer.settings", "TransferSettings"),
    ("gateway", "castray.gateway.settings", "GatewaySettings"),
    ("up", "castray.settings", "UpSettings"),
    ("transfer", "castray.settings", "JoinSettings"),
]


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "(empty)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def settings() -> Iterator[tuple[str, str, list[str], str]]:
    """(variable, default, services, meaning) for every setting, each variable once."""
    seen: dict[str, tuple[str, list[str], str]] = {}
    common: set[str] = set()
    for who, module, cls_name in SETTINGS_CLASSES:
        cls = getattr(importlib.import_module(module), cls_name)
        for name, field in cls.model_fields.items():
            if who != "all" and name in common:
                continue
            var = f"CASTRAY_{name.upper()}"
            if who == "all":
                common.add(name)
            if var in seen:
                if who not in seen[var][1]:
                    seen[var][1].append(who)
            else:
                seen[var] = (_default(field), [who], (field.description or "").replace("|", "\\|"))
    for var, (default, users, meaning) in seen.items():
        yield var, default, users, meaning


def markdown() -> str:
    lines = ["| Variable | Default | Used by | Meaning |", "|---|---|---|---|"]
    for var, default, users, meaning in settings():
        lines.append(f"| `{var}` | `{default}` | {', '.join(users)} | {meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
