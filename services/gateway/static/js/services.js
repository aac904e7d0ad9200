// The services panel: every replica's heartbeat (GET /api/services), stale ones marked, and the transfer
// queue's depth. Heartbeats are not events, so the panel polls, and only while the page is visible.

import * as api from "./api.js";
import { byId, h, replaceChildren, setText } from "./dom.js";
import { ago, shortId } from "./format.js";

const EVERY_MS = 5000;

function holds(r) {
  const held = r.holds || {};
  if (held.leading !== null && held.leading !== undefined) return held.leading ? "leading" : "standby";
  if (held.transfers_running !== null && held.transfers_running !== undefined) return `${held.transfers_running} running`;
  if (held.ws_clients !== null && held.ws_clients !== undefined) return `${held.ws_clients} WebSocket clients`;
  if (held.events_applied !== null && held.events_applied !== undefined) return `${held.events_applied} events applied`;
  return "";
}

export class ServicesPanel {
  constructor() {
    this.body = byId("services-body");
    this.queue = byId("services-queue");
    this.timer = null;
    document.addEventListener("visibilitychange", () => (document.hidden ? this.stop() : this.start()));
  }

  start() {
    if (this.timer !== null) return;
    this.load();
    this.timer = setInterval(() => this.load(), EVERY_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async load() {
    let data;
    try { data = await api.get("/api/services"); } catch { return; }
    const q = data.transfer_queue;
    setText(this.queue, `transfer queue: ${q.length} queued, ${q.pending} pending`);
    replaceChildren(this.body, data.services.map((r) => {
      const state = r.stale ? "stale" : "alive";
      return h("tr", { dataset: { testid: "service-row", service: r.service, stale: String(r.stale) } },
        h("td", {}, r.service),
        h("td", { title: r.instance }, `${r.host}:${r.pid} `, h("span", { className: "sub" }, shortId(r.instance.split(":").pop(), 8))),
        h("td", {}, h("span", { className: "state-badge", dataset: { state } }, state)),
        h("td", {}, holds(r)),
        h("td", {}, ago(r.beat)),
        h("td", {}, r.version));
    }));
  }
}
