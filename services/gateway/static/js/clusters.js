// The clusters panel: every cluster with how it was found, its state, Ray version and node count;
// discover now, connect by address, disconnect one or all.

import * as api from "./api.js";
import { byId, h, setAttr, setHidden, setText, showMessage } from "./dom.js";
import { FrameBatch, READOUT_MS } from "./frame.js";
import { ago } from "./format.js";

const FOUND_LABEL = { local: "local", external: "discovered", manual: "connected by hand" };

export class ClustersPanel {
  constructor(store) {
    this.store = store;
    this.body = byId("clusters-body");
    this.empty = byId("clusters-empty");
    this.message = byId("cluster-message");
    this.rows = new Map();
    this.frame = new FrameBatch(() => this.flush(), READOUT_MS); // node counts: a readout
    store.on("clusters", () => this.frame.request());
    store.on("nodes", () => this.frame.request());
    this.bind();
    // "last seen" ages; a cheap refresh every few seconds.
    setInterval(() => this.frame.request(), 5000);
  }

  bind() {
    byId("btn-discover").addEventListener("click", () => this.discover());
    byId("connect-form").addEventListener("submit", (e) => { e.preventDefault(); this.connect(); });
    const all = byId("btn-disconnect-all");
    let armed = null;
    all.addEventListener("click", () => {
      // Two clicks instead of a blocking confirm() dialog.
      if (!armed) {
        all.classList.add("armed");
        setText(all, "Click again to disconnect all");
        armed = setTimeout(() => { armed = null; all.classList.remove("armed"); setText(all, "Disconnect all external"); }, 4000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      all.classList.remove("armed");
      setText(all, "Disconnect all external");
      this.disconnect(null, all);
    });
  }

  async run(button, label, fn) {
    const before = button.textContent;
    button.disabled = true;
    if (label) setText(button, label);
    try {
      return await fn();
    } finally {
      button.disabled = false;
      setText(button, before);
    }
  }

  async discover() {
    showMessage(this.message, "");
    await this.run(byId("btn-discover"), "Discovering…", async () => {
      try {
        const r = await api.post("/api/cluster/discover-external");
        const found = Array.isArray(r?.discovered_clusters) ? r.discovered_clusters.length
          : Number(r?.discovered_clusters ?? r?.count ?? 0);
        const nodes = r?.external_nodes ? (Array.isArray(r.external_nodes) ? r.external_nodes.length : Object.keys(r.external_nodes).length) : null;
        const text = `Discovery finished: ${found} cluster(s) found${nodes === null ? "" : `, ${nodes} external node(s)`}.`;
        showMessage(this.message, text, "ok");
        this.store.log("info", text);
      } catch (e) {
        showMessage(this.message, `Discovery failed: ${e.message}`, "error");
        this.store.log("error", `Discovery failed: ${e.message}`);
      }
    });
  }

  async connect() {
    const input = byId("connect-address");
    const address = input.value.trim();
    if (!address) {
      showMessage(this.message, "Enter a cluster address, e.g. 127.0.0.1:8265.", "error");
      input.focus();
      return;
    }
    showMessage(this.message, "");
    await this.run(byId("btn-connect"), "Connecting…", async () => {
      try {
        const r = await api.post("/api/cluster/connect-external", { cluster_address: address });
        const name = r?.cluster?.name || r?.connected_cluster || address;
        const text = r?.message ? `${r.message[0].toUpperCase()}${r.message.slice(1)}.` : `Connected to ${name}.`;
        showMessage(this.message, text, "ok");
        this.store.log("info", `Connected to ${name}`);
        input.value = "";
      } catch (e) {
        showMessage(this.message, `Could not connect to ${address}: ${e.message}`, "error");
        this.store.log("error", `Connect ${address} failed: ${e.message}`);
      }
    });
  }

  async disconnect(cluster, button) {
    showMessage(this.message, "");
    const path = cluster ? `/api/cluster/disconnect-external?cluster=${encodeURIComponent(cluster.id)}`
      : "/api/cluster/disconnect-external";
    const what = cluster ? `cluster ${cluster.name || cluster.id}` : "all external clusters";
    await this.run(button, "…", async () => {
      try {
        await api.del(path);
        showMessage(this.message, `Disconnected ${what}.`, "ok");
      } catch (e) {
        showMessage(this.message, `Could not disconnect ${what}: ${e.message}`, "error");
      }
    });
  }

  flush() {
    const clusters = [...this.store.clusters.values()].sort((a, b) =>
      (a.found_by === "local" ? 0 : 1) - (b.found_by === "local" ? 0 : 1) || String(a.name).localeCompare(String(b.name)));
    const keep = new Set(clusters.map((c) => c.id));
    for (const [id, row] of this.rows) if (!keep.has(id)) { row.tr.remove(); this.rows.delete(id); }
    let cursor = this.body.firstChild;
    for (const c of clusters) {
      let row = this.rows.get(c.id);
      if (!row) { row = this.makeRow(c.id); this.rows.set(c.id, row); }
      this.fill(row, c, this.store.counts.ofCluster(c.id));
      if (row.tr === cursor) cursor = cursor.nextSibling;
      else this.body.insertBefore(row.tr, cursor);
    }
    setHidden(this.empty, clusters.length > 0);
  }

  makeRow(id) {
    const cells = {
      name: h("td", { className: "cell-name", dataset: { col: "name" } }),
      found: h("td", { dataset: { col: "found" } }),
      state: h("td", { dataset: { col: "state" } }),
      version: h("td", { className: "mono", dataset: { col: "ray_version" } }),
      nodes: h("td", { className: "num", dataset: { col: "nodes" } }),
      address: h("td", { className: "mono cell-address", dataset: { col: "address" } }),
      actions: h("td", { className: "cell-actions" }),
    };
    cells.nameText = h("span", { className: "cluster-name" });
    cells.idText = h("span", { className: "sub mono" });
    cells.name.append(cells.nameText, cells.idText);
    cells.foundText = h("span", { className: "tag" });
    cells.found.appendChild(cells.foundText);
    cells.stateText = h("span", { className: "state-badge" });
    cells.state.appendChild(cells.stateText);
    cells.seen = h("span", { className: "sub" });
    cells.state.appendChild(cells.seen);
    const button = h("button", { type: "button", className: "btn btn-small btn-danger-ghost", dataset: { testid: "btn-disconnect" } }, "Disconnect");
    button.addEventListener("click", () => {
      const c = this.store.clusters.get(id);
      if (c) this.disconnect(c, button);
    });
    cells.actions.appendChild(button);
    const tr = h("tr", { dataset: { testid: "cluster-row", id } }, cells.name, cells.found, cells.state,
      cells.version, cells.nodes, cells.address, cells.actions);
    return { tr, cells, button };
  }

  fill(row, c, count) {
    // Only what changed is written: this runs on every frame with node changes, for every cluster.
    const x = row.cells;
    setAttr(row.tr, "data-state", c.state || "");
    setText(x.nameText, c.name || c.id);
    setText(x.idText, c.id);
    setText(x.foundText, FOUND_LABEL[c.found_by] || c.found_by || "?");
    setAttr(x.foundText, "data-found", c.found_by || "");
    setAttr(x.foundText, "title", (c.sources || []).length ? `found via ${c.sources.join(", ")}` : "");
    setText(x.stateText, c.state || "?");
    setAttr(x.stateText, "data-state", c.state || "");
    setAttr(x.stateText, "title", c.error || "");
    setText(x.seen, c.state === "alive" ? "" : `last seen ${ago(c.last_seen)}`);
    setText(x.version, c.ray_version || "—");
    setText(x.nodes, `${count.alive} / ${count.total}`);
    setAttr(x.nodes, "title", `${count.alive} alive of ${count.total}${count.dead ? `; ${count.dead} dead, not counted` : ""}`);
    setText(x.address, c.dashboard_url || c.gcs_address || (c.addresses || [])[0] || "—");
    setAttr(x.address, "title", [...new Set([c.dashboard_url, c.gcs_address, ...(c.addresses || [])].filter(Boolean))].join("\n"));
    setHidden(row.button, c.found_by === "local");
  }
}
