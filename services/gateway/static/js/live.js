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
    // Some relays wrap the event as {type, payload}; flatten it.
    if (msg.payload && typeof msg.payload === "object" && !msg.node && !msg.cluster) {
      msg = { ...msg.payload, ...msg, payload: undefined };
    }
    const type = msg.type || msg.event;
    if (type === "snapshot") {
      this.store.applySnapshot(msg);
      this.markLive();
      return;
    }
    if (type === "resumed" || type === "hello") { this.markLive(); return; }
    if (type === "view-changed") { this.viewChanged(msg); return; }
    if (VIEW_TYPES.has(type)) { this.applyView(type, msg); return; }
    if (typeof type === "string" && type.startsWith("transfer-")) {
      this.markLive();
      this.store.applyTransfer(type, msg);
      return;
    }
    if (type === "error" && msg.error) this.store.log("error", `Live feed: ${msg.error}`);
    // Anything else (legacy event names, pings) is not for this page.
  }

  /** The registry's own shape, in case the relay forwards it as is. */
  viewChanged(msg) {
    const record = msg.record || null;
    if (msg.kind === "node") {
      this.applyView("node-changed", { ...msg, node: record });
    } else if (msg.kind === "cluster") {
      const type = { found: "cluster-found", lost: "cluster-lost", removed: "cluster-removed" }[msg.change]
        || "cluster-found";
      this.applyView(type, { ...msg, cluster: record });
    }
  }

  applyView(type, msg) {
    const store = this.store;
    if (typeof msg.version === "number" && store.version !== null) {
      if (msg.epoch && store.epoch && msg.epoch !== store.epoch) {
        // The registry rebuilt its view: our versions mean nothing any more; take a fresh snapshot.
        store.epoch = null;
        store.version = null;
        this.resync("the view was rebuilt");
        return;
      }
      if (msg.version <= store.version) { this.markLive(); return; } // already applied
      if (msg.version > store.version + 1) { this.resync(`missed versions ${store.version + 1}…${msg.version - 1}`); return; }
      store.version = msg.version;
    }
    this.markLive();
    if (type === "node-changed") store.applyNode(msg);
    else store.applyCluster(type, msg);
  }
}
