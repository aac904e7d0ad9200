"""An attacker's web site for the browser tests: a second aiohttp server, on another local origin, whose
page attacks the gateway the way any page a user opens could (issue 12).

On load the page sends, to the gateway at ``target``, without any CORS preflight:
- a ``fetch`` POST with ``text/plain`` carrying JSON (file generator ``create``),
- a ``fetch`` POST of a multipart upload (``/api/upload``),
- three HTML form POSTs into hidden frames: urlencoded (``create-preset``), ``text/plain`` shaped as
  JSON (``/api/send`` broadcast) and a multipart file upload (``/api/upload``),
- a WebSocket to ``/ws`` that records whether it opened and what it received.
Its results are in ``window.attack`` (``done`` once the WebSocket has closed or failed).
"""

from __future__ import annotations

import json

from aiohttp import web

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>cute cats</title></head><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe><iframe name="sink3"></iframe>
<form id="f1" method="POST" action="__HTTP__/api/file-generator/create-preset" target="sink1">
  <input name="preset" value="small"><input name="file_name" value="csrf-form.txt"></form>
<form id="f2" method="POST" enctype="text/plain" action="__HTTP__/api/send" target="sink2">
  <input name='{"cast_type": "broadcast", "content": "pwned", "x": "' value='"}'></form>
<form id="f3" method="POST" enctype="multipart/form-data" action="__HTTP__/api/upload" target="sink3">
  <input type="file" name="file" id="f3file"></form>
<script>
window.attack = { done: false, wsOpened: false, wsMessages: [], errors: [] };
const G = __HTTP_JSON__;
async function run() {
  const noCors = { method: "POST", mode: "no-cors" };
  try {
    await fetch(G + "/api/file-generator/create", { ...noCors, headers: { "Content-Type": "text/plain" },
      body: JSON.stringify({ size: "1KB", file_name: "csrf-fetch.txt" }) });
  } catch (e) { window.attack.errors.push("fetch: " + e); }
  const form = new FormData();
  form.append("file", new File(["evil bytes"], "csrf-upload.txt"));
  try { await fetch(G + "/api/upload", { ...noCors, body: form }); }
  catch (e) { window.attack.errors.push("upload: " + e); }
  const files = new DataTransfer();
  files.items.add(new File(["evil form bytes"], "csrf-form-upload.txt"));
  document.getElementById("f3file").files = files.files;
  for (const id of ["f1", "f2", "f3"]) document.getElementById(id).submit();
  await new Promise((resolve) => {
    const ws = new WebSocket(__WS_JSON__ + "/ws", ["castray.v1"]);
    ws.onopen = () => { window.attack.wsOpened = true; };
    ws.onmessage = (ev) => { window.attack.wsMessages.push(String(ev.data).slice(0, 200)); ws.close(); };
    ws.onclose = () => resolve();
  });
  window.attack.done = true;
}
run();
</script></body></html>"""


def page_for(target: str) -> str:
    """The attack page aimed at the gateway at ``target`` (``http://host:port``)."""
    ws = "ws://" + target.split("://", 1)[1]
    return (PAGE.replace("__HTTP_JSON__", json.dumps(target)).replace("__WS_JSON__", json.dumps(ws))
            .replace("__HTTP__", target))


def attacker_app(target: str) -> web.Application:
    """Serves the attack page at ``/``."""
    text = page_for(target)

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=text, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    return app


async def serve(target: str, port: int) -> web.AppRunner:
    """Start the attacker's site on every loopback name's port ``port`` (127.0.0.1); stop with cleanup()."""
    runner = web.AppRunner(attacker_app(target), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner
