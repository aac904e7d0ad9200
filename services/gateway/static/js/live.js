// The live connection: /ws with a snapshot, then deltas; reconnects with backoff and resumes from the
// last epoch + version it applied, so nothing is missed and nothing is applied twice.

import { wsProtocols } from "./api.js";

const TOPICS = "clusters,nodes,transfers";
const VIEW_TYPES = new Set(["node-changed", "cluster-found", "cluster-lost", "cluster-removed"]);

export class LiveConnection {
  /**
   * @param {Store} store the model deltas are applied to
   * @param {(state: string, detail: string) => void} onState "connecting" | "live" | "reconnecting"
   * @param {() => void} onResync called after every (re)connection's first message (catch up on REST)
   * @param {() => void} onFailure called when a connection attempt fails (e.g. to find out why over REST)
   */
  constructor(store, { onState = () => {}, onResync = () => {}, onFailure = () => {} } = {}) {
    this.store = store;
    this.onState = onState;
    this.onResync = onResync;
    this.onFailure = onFailure;
    this.socket = null;
    this.attempt = 0;
    this.timer = null;
    this.everLive = false;
    this.stopped = false;
    this.synced = false;
  }

  url() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const params = new URLSearchParams({ topics: TOPICS });
    if (this.store.epoch !== null && this.store.version !== null) {
      params.set("epoch", this.store.epoch);
      params.set("since", String(this.store.version));
    }
    return `${proto}//${location.host}/ws?${params}`;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000, "page closed");
  }

  open() {
    clearTimeout(this.timer);
    this.synced = false;
    this.onState(this.everLive ? "reconnecting" : "connecting", "");
    let socket;
    try {
      socket = new WebSocket(this.url(), wsProtocols());
    } catch (e) {
      this.scheduleReconnect(String(e.message || e));
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      this.markLive();
    });
    socket.addEventListener("message", (ev) => this.receive(socket, ev.data));
    socket.addEventListener("close", (ev) => {
      if (this.socket !== socket) return;
      this.socket = null;
      // A handshake refused (e.g. 401 without a token) looks like any close to a browser: ask REST.
      if (!this.synced) this.onFailure();
      if (!this.stopped) this.scheduleReconnect(ev.reason || `closed (${ev.code})`);
    });
  }

  scheduleReconnect(reason) {
    this.onState(this.everLive ? "reconnecting" : "connecting", reason);
    const delay = Math.min(5000, 300 * 2 ** this.attempt) * (0.6 + Math.random() * 0.4);
    this.attempt += 1;
    this.timer = setTimeout(() => this.open(), delay);
  }

  /** Close and reconnect at once (e.g. after a gap): the server replays from our last version. */
  resync(reason) {
    if (this.socket) {
      const s = this.socket;
      this.socket = null;
      s.close(1000, "resync");
    }
    this.store.log("info", `Resuming the live feed (${reason})`);
    this.attempt = 0;
    this.open();
  }

  markLive() {
    if (this.synced) return;
    this.synced = true;
    const wasLive = this.everLive;
    this.everLive = true;
    this.onState("live", "");
    if (wasLive) this.store.log("info", "Live again");
    this.onResync();
  }

  receive(socket, data) {
    if (socket !== this.socket) return;
    let msg;
    try { msg = JSON.parse(data); } catch { return; }
    if (!msg || typeof msg !== "object") return;
    const type = msg.type;
    if (type === "snapshot") {
      this.store.applySnapshot(msg);
      this.markLive();
      return;
    }
    if (type === "resumed") { this.markLive(); return; }
    if (VIEW_TYPES.has(type)) { this.applyView(type, msg); return; }
    if (typeof type === "string" && type.startsWith("transfer-")) {
      this.markLive();
      this.store.applyTransfer(type, msg);
      return;
    }
    if (type === "error" && msg.error) this.store.log("error", `Live feed: ${msg.error}`);
    // Anything else (the original CastRay's messages, pongs) is not for this page.
  }

  applyView(type, msg) {
    // No version check here: the server's session (gateway ws.py) is the one place that checks, because
    // it can mend a gap from the view log without a reconnection, and it sends every connection its
    // deltas in order with no gap and no repeat (or a fresh snapshot, or a view-reset's snapshot).
    // The page keeps the version only to resume from it after a reconnection.
    this.store.version = msg.version;
    this.markLive();
    if (type === "node-changed") this.store.applyNode(msg);
    else this.store.applyCluster(type, msg);
  }
}
