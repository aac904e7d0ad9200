"""Logging set-up, once per process, and the ids every line carries.

Each line names its ``service`` and ``instance`` (the replica's name, as in its heartbeat and as the source
of its events) and, when the code that logs runs inside `log_context` (or after `bind`), the
``transfer_id``, ``cluster_id`` and ``node_id`` it is about. The ids live in a `contextvars.ContextVar`:
an asyncio task inherits them from the code that created it, ``asyncio.to_thread`` passes them on, and a
plain `threading.Thread` starts without them (set them in the thread, or run it in
``contextvars.copy_context()``). JSON lines are python-json-logger's; text lines end with the ids.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time
from collections.abc import Iterator
from typing import Final, TextIO

from pythonjsonlogger.json import JsonFormatter

from castray.shared.bus import instance_name

IDS: Final = ("transfer_id", "cluster_id", "node_id")
_Ids = tuple[tuple[str, str], ...]  # (key, value) pairs, immutable: a copied context never changes another's
_ids: contextvars.ContextVar[_Ids] = contextvars.ContextVar("castray_log_ids", default=())


def _merged(transfer_id: str | None, cluster_id: str | None, node_id: str | None) -> _Ids:
    given = {"transfer_id": transfer_id, "cluster_id": cluster_id, "node_id": node_id}
    merged = {**dict(_ids.get()), **{k: v for k, v in given.items() if v is not None}}
    return tuple(merged.items())


@contextlib.contextmanager
def log_context(*, transfer_id: str | None = None, cluster_id: str | None = None,
                node_id: str | None = None) -> Iterator[None]:
    """Every line logged inside (and in the tasks created inside) carries these ids, besides those of an
    enclosing context; ``None`` leaves an id as it was."""
    token = _ids.set(_merged(transfer_id, cluster_id, node_id))
    try:
        yield
    finally:
        _ids.reset(token)


def bind(*, transfer_id: str | None = None, cluster_id: str | None = None,
         node_id: str | None = None) -> None:
    """Like `log_context`, for the rest of the current task (or thread): for a task of its own, such as a
    transfer's job or a cluster's watcher, whose ids are known only once it runs."""
    _ids.set(_merged(transfer_id, cluster_id, node_id))


def log_ids() -> dict[str, str]:
    """The ids a line logged here would carry."""
    return dict(_ids.get())


def without_ids() -> contextvars.Context:
    """A copy of the current context with no ids: for a task that outlives the request or transfer that
    starts it and serves others too (``asyncio.create_task(..., context=without_ids())``)."""
    ctx = contextvars.copy_context()
    ctx.run(_ids.set, ())
    return ctx


def _printable(value: object) -> str:
    """An id as a text line may show it: one with a newline or another control character (a gateway route
    id is decoded from the request's path: ``%0A``) is shown escaped, so no id can forge a line."""
    text = str(value)
    return text if text.isprintable() else ascii(text)


class _Identity(logging.Filter):
    """Puts service, instance and the context's ids on each record (an id passed in ``extra`` wins)."""

    def __init__(self, service: str, instance: str, *, text: bool) -> None:
        super().__init__()
        self.service, self.instance, self.text = service, instance, text

    def filter(self, record: logging.LogRecord) -> bool:
        record.service, record.instance = self.service, self.instance
        ids = dict(_ids.get())
        for key in IDS:
            if key in ids and getattr(record, key, None) is None:
                setattr(record, key, ids[key])
        if self.text:
            shown = " ".join(f"{k}={_printable(getattr(record, k))}" for k in IDS
                             if getattr(record, k, None) is not None)
            record.ids = f" [{shown}]" if shown else ""
        return True


def json_formatter() -> JsonFormatter:
    """One JSON object per line: time (ISO 8601, UTC), level, service, instance, logger, message, then
    the ids there are, ``exc_info`` with a traceback, and any ``extra``."""
    formatter = JsonFormatter(["asctime", "levelname", "service", "instance", "name", "message"],
                              rename_fields={"asctime": "time", "levelname": "level", "name": "logger"})
    formatter.converter = time.gmtime
    formatter.default_time_format, formatter.default_msec_format = "%Y-%m-%dT%H:%M:%S", "%s.%03dZ"
    return formatter


class _MalformedRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot even parse (a NUL in a header, a broken request line) at ERROR
    with a traceback. It is the client's fault and already answered 400: one line at INFO is enough, and
    a client sending garbage cannot fill the logs with tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and type(exc).__name__ in ("BadHttpMessage", "BadStatusLine", "InvalidHeader",
                                                        "LineTooLong", "BadHttpMethod", "InvalidURLError"):
            record.msg, record.args = "malformed HTTP request refused (400): %s", (str(exc).splitlines()[0],)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def log_handler(stream: TextIO, *, json_lines: bool, service: str, instance: str) -> logging.Handler:
    """A handler writing to ``stream`` lines that carry ``service``, ``instance`` and the context's ids."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(_Identity(service, instance, text=not json_lines))
    if json_lines:
        handler.setFormatter(json_formatter())
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"
                                               "%(ids)s"))
    return handler


def setup_logging(level: str = "INFO", *, json_lines: bool = False, service: str = "castray",
                  instance: str | None = None) -> str:
    """Log to stderr, as JSON lines or text; returns the instance name the lines carry (``instance``, or
    a new one): give the same one to the service's heartbeat and bus."""
    instance = instance or instance_name(service)
    root = logging.getLogger()
    root.handlers[:] = [log_handler(sys.stderr, json_lines=json_lines, service=service, instance=instance)]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedRequestFilter) for f in server.filters):
        server.addFilter(_MalformedRequestFilter())
    return instance
