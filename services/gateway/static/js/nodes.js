// The nodes table: keyed rows updated in place, filtered and sorted, redrawn once per frame.

import { byId, h, setAttr, setText } from "./dom.js";
import { FrameBatch } from "./frame.js";
import { bytes, cpu } from "./format.js";

const STATE_ORDER = { ALIVE: 0, UNREACHABLE: 1, DEAD: 2 };
// Beyond this many highlights in one frame (a burst of changes) the rows update without one.
const MAX_FLASHES_PER_FRAME = 150;

function sortValue(store, node, key) {
  const r = node.resources || {};
  switch (key) {
    case "name": return (node.name || node.id || "").toLowerCase();
    case "ip": return ipKey(node.ip);
    case "cluster": return store.clusterName(node.cluster_id).toLowerCase();
    case "head": return node.is_head ? 0 : 1;
    case "state": return STATE_ORDER[node.state] ?? 3;
    case "cpu": return Number(r.CPU || 0);
    case "memory": return Number(r.memory || 0);
    case "object_store": return Number(r.object_store_memory || 0);
    case "external": return node.external ? 1 : 0;
    default: return "";
  }
}

function ipKey(ip) {
  const parts = String(ip || "").split(".");
  if (parts.length === 4 && parts.every((p) => /^\d+$/.test(p))) {
    return parts.map((p) => p.padStart(3, "0")).join(".");
  }
  return String(ip || "");
}

export class NodesTable {
  constructor(store) {
    this.store = store;
    this.body = byId("nodes-body");
    this.empty = byId("nodes-empty");
    this.count = byId("nodes-count");
    this.rows = new Map(); // id -> {tr, cells, flip}
    this.dirty = new Map(); // id -> "added" | "updated" | "removed" | "quiet"
    this.all = true;
    this.order = [];
    this.sort = { key: "name", dir: 1 };
    this.filters = { text: "", cluster: "", state: "", external: "" };
    this.clusterOptions = "";
    this.flashes = 0;
    this.frame = new FrameBatch(() => this.flush());
    store.on("nodes", (d) => this.onNodes(d));
    store.on("clusters", () => { this.all = true; this.frame.request(); });
    this.bindControls();
    this.renderSortMarks();
  }

  onNodes(d) {
    if (d.reset) this.all = true;
    else {
      const prev = this.dirty.get(d.id);
      // "added" wins over a later "updated" in the same frame (both flash; order does not matter).
      this.dirty.set(d.id, prev === "added" && d.change === "updated" ? "added" : d.change);
    }
    this.frame.request();
  }

  bindControls() {
    const set = (key, el, ev = "change") => el.addEventListener(ev, () => {
      this.filters[key] = el.value.trim();
      this.frame.request();
    });
    set("text", byId("filter-text"), "input");
    set("cluster", byId("filter-cluster"));
    set("state", byId("filter-state"));
    set("external", byId("filter-external"));
    for (const th of byId("nodes-head").querySelectorAll("th[data-sort]")) {
      th.tabIndex = 0;
      const activate = () => {
        const key = th.dataset.sort;
        this.sort = { key, dir: this.sort.key === key ? -this.sort.dir : 1 };
        this.renderSortMarks();
        this.frame.request();
      };
      th.addEventListener("click", activate);
      th.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); activate(); } });
    }
  }

  renderSortMarks() {
    for (const th of byId("nodes-head").querySelectorAll("th[data-sort]")) {
      const active = th.dataset.sort === this.sort.key && !th.classList.contains("col-dot");
      th.setAttribute("aria-sort", active ? (this.sort.dir > 0 ? "ascending" : "descending") : "none");
    }
  }

  matches(node) {
    const f = this.filters;
    if (f.cluster && node.cluster_id !== f.cluster) return false;
    if (f.state && node.state !== f.state) return false;
    if (f.external === "external" && !node.external) return false;
    if (f.external === "local" && node.external) return false;
    if (f.text) {
      const needle = f.text.toLowerCase();
      const hay = `${node.name || ""} ${node.ip || ""} ${node.id || ""} ${node.hostname || ""}`.toLowerCase();
      if (!hay.includes(needle)) return false;
    }
    return true;
  }

  flush() {
    const store = this.store;
    this.flashes = 0;
    if (this.all) {
      for (const id of this.rows.keys()) if (!store.nodes.has(id)) this.dropRow(id);
      for (const [id, node] of store.nodes) this.updateRow(id, node, this.dirty.get(id) || "quiet");
      this.all = false;
    } else {
      for (const [id, change] of this.dirty) {
        const node = store.nodes.get(id);
        if (!node) this.dropRow(id);
        else this.updateRow(id, node, change);
      }
    }
    this.dirty.clear();
    this.reorder();
    this.updateClusterFilter();
  }

  dropRow(id) {
    const row = this.rows.get(id);
    if (row) { row.tr.remove(); this.rows.delete(id); }
  }

  updateRow(id, node, change) {
    let row = this.rows.get(id);
    const fresh = !row;
    if (fresh) { row = this.makeRow(id); this.rows.set(id, row); }
    const r = node.resources || {};
    const c = row.cells;
    // `shown` is true when anything a reader can see changed: only that earns a highlight.
    let shown = false;
    const text = (el, value) => { shown = setText(el, value) || shown; };
    setAttr(row.tr, "data-state", node.state || "");
    setAttr(row.tr, "data-cluster", node.cluster_id || "");
    text(c.name, node.name || node.id);
    setAttr(c.name, "title", node.hostname ? `${node.id} · ${node.hostname}` : node.id);
    text(c.ip, node.ip || "—");
    text(c.cluster, this.store.clusterName(node.cluster_id));
    setAttr(c.cluster, "title", this.store.clusterName(node.cluster_id));
    text(c.head, node.is_head ? "head" : "worker");
    setAttr(c.head, "data-head", node.is_head ? "true" : "false");
    text(c.stateText, node.state || "?");
    setAttr(c.stateText, "data-state", node.state || "");
    setAttr(c.state, "title", node.state_message || null);
    // Why a node is not ALIVE, as Ray says it (e.g. "Expected termination: received SIGTERM").
    text(c.reason, node.state !== "ALIVE" && node.state_message ? node.state_message : "");
    text(c.cpu, r.CPU === undefined ? "—" : cpu(r.CPU));
    text(c.memory, r.memory === undefined ? "—" : bytes(r.memory));
    text(c.object_store, r.object_store_memory === undefined ? "—" : bytes(r.object_store_memory));
    text(c.external, node.external ? "external" : "local");
    setAttr(c.external, "data-external", node.external ? "true" : "false");
    if ((change === "added" || (change === "updated" && shown && !fresh)) && this.flashes < MAX_FLASHES_PER_FRAME) {
      this.flashes += 1;
      this.flash(row);
    }
  }

  flash(row) {
    // Alternate two identical animations so a second change restarts the highlight without a reflow.
    row.flip = !row.flip;
    row.tr.classList.remove("flash-a", "flash-b");
    row.tr.classList.add(row.flip ? "flash-a" : "flash-b");
  }

  makeRow(id) {
    const cell = (col, cls) => h("td", { dataset: { col }, className: cls });
    const cells = {
      dot: h("td", { className: "col-dot", dataset: { col: "dot" } }, h("span", { className: "dot", "aria-hidden": "true" })),
      name: cell("name", "cell-name"),
      ip: cell("ip", "mono"),
      cluster: cell("cluster"),
      head: cell("head", "cell-role"),
      state: cell("state"),
      cpu: cell("cpu", "num"),
      memory: cell("memory", "num"),
      object_store: cell("object_store", "num"),
      external: cell("external", "cell-origin"),
    };
    cells.stateText = h("span", { className: "state-badge" });
    cells.reason = h("span", { className: "sub state-reason", dataset: { testid: "node-state-reason" } });
    cells.state.append(cells.stateText, cells.reason);
    const tr = h("tr", { dataset: { testid: "node-row", id } },
      cells.dot, cells.name, cells.ip, cells.cluster, cells.head, cells.state, cells.cpu, cells.memory,
      cells.object_store, cells.external);
    tr.addEventListener("animationend", () => tr.classList.remove("flash-a", "flash-b"));
    return { tr, cells, flip: false };
  }

  reorder() {
    const store = this.store;
    const { key, dir } = this.sort;
    const visible = [];
    for (const node of store.nodes.values()) if (this.matches(node)) visible.push(node);
    const keyed = visible.map((n) => [sortValue(store, n, key), (n.name || n.id || "").toLowerCase(), n.id]);
    keyed.sort((a, b) => (a[0] < b[0] ? -dir : a[0] > b[0] ? dir : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    const ids = keyed.map((k) => k[2]);
    const same = ids.length === this.order.length && ids.every((id, i) => id === this.order[i]);
    if (!same) {
      const keep = new Set(ids);
      for (const id of this.order) if (!keep.has(id)) { const r = this.rows.get(id); if (r) r.tr.remove(); }
      // Walk the wanted order and move only rows that are out of place.
      let cursor = this.body.firstChild;
      for (const id of ids) {
        const tr = this.rows.get(id).tr;
        if (tr === cursor) cursor = cursor.nextSibling;
        else this.body.insertBefore(tr, cursor);
      }
      this.order = ids;
    }
    this.empty.hidden = ids.length > 0;
    setText(this.count, store.nodes.size ? `${ids.length} of ${store.nodes.size}` : "");
  }

  updateClusterFilter() {
    const select = byId("filter-cluster");
    const clusters = [...this.store.clusters.values()].sort((a, b) => String(a.name).localeCompare(String(b.name)));
    const sig = clusters.map((c) => `${c.id}\u0000${c.name}`).join("\u0001");
    if (sig === this.clusterOptions) return;
    this.clusterOptions = sig;
    const current = select.value;
    select.replaceChildren(h("option", { value: "" }, "All clusters"),
      ...clusters.map((c) => h("option", { value: c.id }, c.name || c.id)));
    select.value = clusters.some((c) => c.id === current) ? current : "";
    if (select.value !== current) { this.filters.cluster = ""; this.frame.request(); }
  }
}
