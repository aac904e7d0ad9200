// The page's model of the world: clusters, nodes and transfers, fed by the WebSocket and the API.
// Views subscribe to topics and are told which ids changed; they redraw in an animation frame.

import { NodeCounts } from "./counts.js";
import { bytes } from "./format.js";

const ACTIVITY_LIMIT = 200;
const TRANSFER_LIMIT = 25;
const TERMINAL = new Set(["completed", "failed", "cancelled"]);

export function isTerminal(state) { return TERMINAL.has(state); }

// How far along a state is: a record read may have left before an event and land after it, and neither
// the record nor the events carry a version, so an ended state is never replaced by an unended one, nor
// running by queued/pending. Between two ended states the record wins (it is the authoritative end).
function progress(state) {
  if (isTerminal(state)) return 2;
  return state === "running" ? 1 : 0;
}

/** The state to show: the record's, unless it is behind what the page already knows. */
export function laterState(known, recorded) {
  if (!recorded) return known;
  return progress(recorded) < progress(known) ? known : recorded;
}

export class Store {
  constructor() {
    this.epoch = null;
    this.version = null;
    this.clusters = new Map();
    this.nodes = new Map();
    this.counts = new NodeCounts(); // kept per delta: see counts.js
    this.transfers = new Map();
    this.activity = [];
    this.listeners = new Map();
  }

  on(topic, fn) {
    if (!this.listeners.has(topic)) this.listeners.set(topic, new Set());
    this.listeners.get(topic).add(fn);
  }

  emit(topic, detail) {
    for (const fn of this.listeners.get(topic) || []) fn(detail);
  }

  // --- activity -----------------------------------------------------------------------------------
  log(kind, text, time) {
    const entry = { kind, text, time: time || Date.now() / 1000 };
    this.activity.push(entry);
    if (this.activity.length > ACTIVITY_LIMIT) this.activity.splice(0, this.activity.length - ACTIVITY_LIMIT);
    this.emit("activity", entry);
  }

  clusterName(id) {
    const c = this.clusters.get(id);
    return c ? c.name || c.id : id || "?";
  }

  nodeName(id) {
    const n = this.nodes.get(id);
    return n ? n.name || n.id : id || "?";
  }

  // --- the view -----------------------------------------------------------------------------------
  /** Replace everything with a snapshot (first message of every connection, or a resync). */
  applySnapshot(msg) {
    const first = this.epoch === null;
    this.epoch = msg.epoch;
    this.version = msg.version;
    this.clusters = new Map(msg.clusters.map((c) => [c.id, c]));
    this.nodes = new Map(msg.nodes.map((n) => [n.id, n]));
    this.counts.reset(this.nodes.values());
    this.emit("clusters", { reset: true });
    this.emit("nodes", { reset: true });
    const text = `${this.clusters.size} cluster(s), ${this.nodes.size} node(s)`;
    this.log("info", first ? `Connected: ${text}` : `Resynchronised: ${text}`);
  }

  /** Apply a node-changed delta; returns nothing, emits "nodes" with the id and changed fields. */
  applyNode(msg) {
    const { id, node } = msg;
    const before = this.nodes.get(id);
    if (msg.change === "removed") {
      if (!before) return;
      this.nodes.delete(id);
      this.counts.remove(before);
      this.emit("nodes", { id, change: "removed" });
      this.log("node-left", `Node ${before.name || id} left ${this.clusterName(before.cluster_id)}`);
      return;
    }
    this.nodes.set(id, node);
    if (before) this.counts.remove(before);
    this.counts.add(node);
    const change = before ? "updated" : "added";
    this.emit("nodes", { id, change, changed: msg.changed });
    if (!before) {
      this.log("node-joined", `Node ${node.name || id} (${node.ip || "no ip"}) joined ${this.clusterName(node.cluster_id)}`);
    } else if (before.state !== node.state) {
      this.log(node.state === "ALIVE" ? "node-joined" : "node-left",
        `Node ${node.name || id}: ${before.state} → ${node.state}`);
    }
  }

  /** Apply cluster-found / cluster-lost (with the cluster's record) or cluster-removed (without). */
  applyCluster(type, msg) {
    const { id, cluster } = msg;
    const before = this.clusters.get(id);
    if (type === "cluster-removed") {
      const name = (before && before.name) || id;
      this.clusters.delete(id);
      for (const [nid, n] of this.nodes) {
        if (n.cluster_id === id) { this.nodes.delete(nid); this.counts.remove(n); this.emit("nodes", { id: nid, change: "removed" }); }
      }
      this.emit("clusters", { id });
      this.log("cluster-lost", `Cluster ${name} disconnected`);
      return;
    }
    const name = cluster.name || id;
    this.clusters.set(id, cluster);
    this.emit("clusters", { id });
    if (type === "cluster-lost") {
      this.log("cluster-lost", `Cluster ${name} lost`);
    } else if (!before || before.state !== "alive") {
      const how = cluster.found_by ? ` (${cluster.found_by})` : "";
      this.log("cluster-found", `Cluster ${name} found${how}${cluster.ray_version ? `, Ray ${cluster.ray_version}` : ""}`);
    }
  }

  // --- transfers ----------------------------------------------------------------------------------
  transfer(id) {
    let t = this.transfers.get(id);
    if (!t) {
      t = { id, state: "queued", mode: "", file_name: "", bytes_total: 0, error: null,
        destinations: new Map(), created: Date.now() / 1000, sha256: null };
      this.transfers.set(id, t);
      this.trimTransfers();
    }
    return t;
  }

  destination(t, nodeId) {
    let d = t.destinations.get(nodeId);
    if (!d) {
      d = { node_id: nodeId, state: "pending", bytes_done: 0, bytes_total: t.bytes_total || 0,
        rate: 0, eta: null, path: null, sha256: null, error: null };
      t.destinations.set(nodeId, d);
    }
    return d;
  }

  trimTransfers() {
    if (this.transfers.size <= TRANSFER_LIMIT) return;
    for (const [id, t] of this.transfers) {
      if (this.transfers.size <= TRANSFER_LIMIT) break;
      if (isTerminal(t.state)) { this.transfers.delete(id); this.emit("transfers", { id, removed: true }); }
    }
  }

  /** Merge a transfer record from GET /api/transfers/{id} (authoritative, but maybe older than the last
   * event: see `laterState`). `recordEnded` says the record itself says the transfer ended. */
  mergeTransferRecord(rec) {
    if (!rec || !rec.id) return;
    const t = this.transfer(rec.id);
    t.state = laterState(t.state, rec.state);
    t.recordEnded = isTerminal(rec.state);
    t.mode = rec.mode || t.mode;
    t.file_name = rec.file_name || t.file_name;
    t.bytes_total = rec.bytes_total ?? t.bytes_total;
    t.error = rec.error ?? t.error;
    t.waiting_for = rec.waiting_for ?? null;
    t.sha256 = rec.sha256 ?? t.sha256;
    if (rec.created_at) t.created = rec.created_at;
    for (const dr of rec.destinations || []) {
      const d = this.destination(t, dr.node_id);
      const wasRunning = d.state === "running";
      Object.assign(d, {
        state: laterState(d.state, dr.state),
        bytes_done: Math.max(d.bytes_done || 0, dr.bytes_done || 0),
        bytes_total: t.bytes_total || d.bytes_total,
        path: dr.path ?? d.path,
        sha256: dr.sha256 ?? d.sha256,
        error: dr.error ?? d.error,
      });
      if (wasRunning && isTerminal(d.state)) { d.rate = 0; d.eta = null; }
    }
    this.emit("transfers", { id: t.id });
  }

  /** Apply a transfer-* event from the WebSocket. */
  applyTransfer(type, msg) {
    const id = msg.transfer_id;
    const t = this.transfer(id);
    const nodeId = msg.node_id || null;
    if (msg.bytes_total) t.bytes_total = msg.bytes_total;
    if (msg.file_name) t.file_name = msg.file_name;
    if (msg.mode) t.mode = msg.mode;
    switch (type) {
      case "transfer-started":
        if (!isTerminal(t.state)) t.state = "running";
        t.waiting_for = null;
        for (const target of msg.targets || []) this.destination(t, target);
        this.log("transfer", `Transfer ${id.slice(0, 8)} started: ${t.file_name || "file"} (${bytes(t.bytes_total)}) to ${(msg.targets || []).length || "?"} node(s)`);
        break;
      case "transfer-progress": {
        if (t.state === "queued") t.state = "running";
        if (!nodeId) break;
        const d = this.destination(t, nodeId);
        if (!isTerminal(d.state)) d.state = "running";
        d.bytes_done = Math.max(d.bytes_done, msg.bytes_done || 0);
        d.bytes_total = msg.bytes_total || t.bytes_total || d.bytes_total;
        d.rate = msg.rate || 0;
        d.eta = msg.eta ?? null;
        break;
      }
      case "transfer-completed":
        if (nodeId) {
          const d = this.destination(t, nodeId);
          Object.assign(d, { state: "completed", bytes_done: msg.bytes_total || d.bytes_total || t.bytes_total,
            path: msg.path ?? d.path, sha256: msg.sha256 ?? d.sha256, rate: 0, eta: null });
          this.log("transfer", `Transfer ${id.slice(0, 8)}: ${this.nodeName(nodeId)} verified`);
        } else {
          t.state = "completed";
          if (msg.sha256) t.sha256 = msg.sha256;
          this.log("transfer", `Transfer ${id.slice(0, 8)} completed`);
        }
        break;
      case "transfer-failed":
        if (nodeId) {
          const d = this.destination(t, nodeId);
          Object.assign(d, { state: "failed", error: msg.error || "failed", rate: 0, eta: null });
          this.log("error", `Transfer ${id.slice(0, 8)} to ${this.nodeName(nodeId)} failed: ${msg.error || "unknown reason"}`);
        } else {
          t.state = "failed";
          t.error = msg.error || t.error;
          this.log("error", `Transfer ${id.slice(0, 8)} failed: ${msg.error || "unknown reason"}`);
        }
        break;
      case "transfer-cancelled":
        t.state = "cancelled";
        for (const d of t.destinations.values()) if (!isTerminal(d.state)) { d.state = "cancelled"; d.rate = 0; d.eta = null; }
        this.log("transfer", `Transfer ${id.slice(0, 8)} cancelled`);
        break;
      default:
        return;
    }
    this.emit("transfers", { id, type, nodeId });
  }
}
