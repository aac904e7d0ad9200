"""The original CastRay's shapes for its file surface: ``/api/upload``, ``/api/file-generator/*``,
``/api/file-transfers/*`` (manual, status, auto/toggle) and its demo files.

This module is the one place that knows those shapes (field names, units, the page's own keys); the
handlers (``files_api``, ``legacy_transfers_api``) pass our facts in and answer with what it returns.
Where the original's server and its page disagree (the page reads ``filename`` and ``formatted_size``
at the top level of a created file, the server sent them only inside ``file_info`` as ``file_name`` and
``size_formatted``), an answer carries both, so the original's scripts and its page both find theirs.

Sizes are bytes and formatted 1024-based (``1.50 KB``), as the original did. Deliberate differences:
the content hash is ``sha256`` (``md5_hash`` stays ``null``: the original's MD5 never matched its file),
files are exactly the requested size (no metadata header), and a ``create-demo`` file obeys the
generator's size limit and the storage quota (the original had no cap there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from castray.gateway import generated_files as gf
from castray.gateway.errors import ApiError
from castray.gateway.original import status as original_status
from castray.shared.sizes import PRESETS, UNITS_SHOWN, format_size
from castray.shared.transfers import TransferRecord, UploadRecord

GEN = "/api/file-generator"
EXAMPLES = ["1024", "1KB", "1.5MB", "100MB", "1GB", "64MiB"]
# The files the original wrote into demo_files/ at import time (NodeScheduler._create_demo_files),
# byte for byte: config.json through json.dump(ensure_ascii=False, indent=2), the others as written.
DEMO_FILES: dict[str, bytes] = {
    "config.json": json.dumps({"server": "localhost", "port": 8080, "timeout": 30}, ensure_ascii=False,
                              indent=2).encode(),
    "data.txt": "这是一个测试文件\n包含多行数据\n用于演示文件传输功能".encode(),
    "report.md": "# 系统报告\n\n## 状态\n- 系统运行正常\n- 所有节点在线".encode(),
}

@dataclass(frozen=True)
class Created:
    """A file the generator wrote: our facts, from which the original's ``file_info`` is built."""
    folder: str  # relative to the data directory
    file_name: str
    requested_size: int
    actual_size: int
    content_type: str
    sha256: str
    created_time: str
    download_url: str


def file_info(f: Created, **extra: Any) -> dict[str, Any]:
    """The original's ``file_info`` (``sha256`` added; ``md5_hash`` null, see the module docstring)."""
    return {"file_path": f"{f.folder}/{f.file_name}", "file_name": f.file_name,
            "requested_size": f.requested_size, "actual_size": f.actual_size, "content_type": f.content_type,
            "sha256": f.sha256, "md5_hash": None, "created": True, "includes_metadata": False,
            "download_url": f.download_url, "size_formatted": format_size(f.actual_size),
            "created_time": f.created_time, **extra}


def page_fields(f: Created) -> dict[str, Any]:
    """What the original page reads at the top level of a created file."""
    return {"filename": f.file_name, "formatted_size": format_size(f.actual_size),
            "actual_size": f.actual_size, "content_type": f.content_type}


def created(f: Created, **extra: Any) -> dict[str, Any]:
    """``POST …/create`` and ``…/create-preset``: ``file_info`` and the page's top-level fields."""
    info = file_info(f, **extra)
    return {"success": True, "message": f"created {f.file_name}", **page_fields(f), **extra,
            "file_info": info}


def created_and_queued(f: Created, transfer_id: str, valid: list[str],
                       failed: dict[str, str]) -> dict[str, Any]:
    """``POST …/create-and-transfer``: the file, the transfer it was queued as, and per-recipient results."""
    results = [queued(r, transfer_id) for r in valid] + not_sent(failed)
    return {"success": True, "message": f"created {f.file_name}, transfer {transfer_id} queued",
            **page_fields(f), "file_info": file_info(f), "transfer_id": transfer_id,
            "transfer_summary": {"total_recipients": len(results), "successful_transfers": len(valid),
                                 "failed_transfers": len(failed), "transfer_results": results}}


def demo_created(f: Created) -> dict[str, Any]:
    """``POST …/create-demo``: the original's flat answer; ``path`` is relative to the data directory."""
    return {"success": True, "message": f"created {f.file_name}", "filename": f.file_name,
            "actual_size": f.actual_size, "formatted_size": format_size(f.actual_size),
            "content_type": f.content_type, "path": f"{f.folder}/{f.file_name}", "sha256": f.sha256}


class UploadAnswer(BaseModel):
    """``POST /api/upload``: the original's ``{success, message, file_path, file_size}`` and our id."""

    upload_id: str
    file_name: str
    file_size: int
    sha256: str
    success: bool = True
    message: str
    file_path: str = Field(description="Where the gateway stored it, relative to its data directory "
                           "(the original's key).")


def uploaded(record: UploadRecord) -> UploadAnswer:
    return UploadAnswer(upload_id=record.upload_id, file_name=record.file_name, file_size=record.file_size,
                        sha256=record.sha256, file_path=record.path,
                        message=f"uploaded {record.file_name} ({format_size(record.file_size)})")


def presets(content_types: list[str]) -> dict[str, Any]:
    return {"success": True, "content_types": content_types, "presets": {
        name: {"size_bytes": size, "size_formatted": format_size(size), "description": text}
        for name, (size, text) in PRESETS.items()}}


def info(cap: int, content_types: list[str]) -> dict[str, Any]:
    return {"success": True, "max_file_size": cap, "max_file_size_formatted": format_size(cap),
            "supported_units": UNITS_SHOWN, "content_types": content_types, "examples": EXAMPLES}


def listing(files: list[gf.FileEntry]) -> dict[str, Any]:
    """``GET …/files``: the original's entries, with the page's ``filename`` and ``formatted_size``."""
    total = sum(f.file_size for f in files)
    return {"success": True, "files": [_entry(f) for f in files], "total_count": len(files),
            "total_size": total, "total_size_formatted": format_size(total)}


def _entry(f: gf.FileEntry) -> dict[str, Any]:
    size = format_size(f.file_size)
    return {"file_name": f.file_name, "filename": f.file_name, "file_size": f.file_size,
            "size_formatted": size, "formatted_size": size, "created_time": gf.iso(f.created),
            "modified_time": gf.iso(f.modified), "download_url": download_url(f.file_name),
            "is_generated": f.file_name.startswith(gf.GENERATED_PREFIXES)}


def download_url(name: str) -> str:
    return f"{GEN}/files/{name}"  # the original's list and delete path (the page's …/download/ works too)


def deleted(name: str, size: int) -> dict[str, Any]:
    return {"success": True, "message": f"deleted {name}", "deleted_size": size,
            "deleted_size_formatted": format_size(size)}


def queued(recipient: str, transfer_id: str) -> dict[str, Any]:
    """One recipient's entry in ``results`` / ``transfer_results``."""
    return {"recipient": recipient, "success": True, "message": f"queued as transfer {transfer_id}",
            "transfer_id": transfer_id}


def not_sent(failed: dict[str, str]) -> list[dict[str, Any]]:
    """The entries of recipients left out (unknown, not alive, another cluster), with the reason."""
    return [{"recipient": rid, "success": False, "message": reason} for rid, reason in failed.items()]


def manual_sent(name: str, transfer_id: str, valid: list[str], failed: dict[str, str]) -> dict[str, Any]:
    """``POST /api/file-transfers/manual``: ``{success, message, results}`` (and our transfer id)."""
    return {"success": True, "transfer_id": transfer_id,
            "results": [queued(r, transfer_id) for r in valid] + not_sent(failed),
            "message": f"transfer of {name} to {len(valid)} node(s) queued"}


def node_stats(node_ids: list[str], records: list[TransferRecord]) -> dict[str, dict[str, Any]]:
    """The original's ``/api/file-transfers/status`` body, counted now from ``records``: the counting and
    the shape are `original_status`'s (`transfer_stats`, `file_transfer_status`), as /api/status."""
    return original_status.file_transfer_status(node_ids, original_status.transfer_stats(node_ids, records))


def auto_refusal() -> ApiError:
    """The 409 for turning automatic transfers on, which this CastRay does not have."""
    return ApiError(409, "automatic transfers do not exist in this CastRay: nothing is sent unless asked "
                    "(queue one with POST /api/transfers or /api/file-transfers/manual)",
                    code="auto_transfer_unsupported", enabled=False)


def auto_toggled(node_id: str, *, enabled: bool) -> dict[str, Any]:
    """``POST /api/file-transfers/auto/toggle``: ``{success, message, enabled}``."""
    state = "on" if enabled else "off"
    return {"success": True, "message": f"automatic transfers of node {node_id} are {state}",
            "enabled": enabled}


def write_demo_files(folder: Path) -> None:
    """Create ``folder`` with the original's demo files, each only if missing (blocking: use a thread)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in DEMO_FILES.items():
        path = folder / name
        if path.exists() or path.is_symlink():
            continue
        tmp = folder / f".{name}.part"
        tmp.write_bytes(content)
        tmp.replace(path)  # complete or absent, for a concurrent reader
