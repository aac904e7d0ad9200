// The nodes table: a window over the filtered, sorted ids of `NodeList`. Every row has one fixed height,
// so only the rows in view (and a margin) are in the DOM, between two spacers that keep the scroll height
// of all the others: drawing costs the same at 10,000 rows as at 50. (Drawing all 1,000 rows of a
// 1,000-node view made Chromium lay the whole table out again on each change: tasks of 50-100 ms of CPU
// at 100 changes a second, bench/page.py.) Changes are coalesced and drawn once per animation frame; a
// change to a node in view rewrites only what changed in its row.

import { byId, h, setAttr, setHidden, setText } from "./dom.js";
import { FrameBatch, READOUT_MS } from "./frame.js";
import { bytes, cpu } from "./format.js";
import { NodeList } from "./node_list.js";

// Rows drawn beyond each edge of the view, so a small scroll finds them already there. Every drawn row is
// given another node's cells when the view moves by a page, and a page costs style and layout per row.
const OVERSCAN = 6;
const ROW_HEIGHT = 34; // as app.css's --node-row-height; measured from a drawn row once there is one
// Beyond this many highlights in one frame (a burst of changes) the rows update without one.
const MAX_FLASHES_PER_FRAME = 150;

export class NodesTable {
  constructor(store) {
    this.store = store;
    this.list = new NodeList((id) => store.clusterName(id));
    this.body = byId("nodes-body");
    this.wrap = byId("nodes-wrap");
    this.table = byId("nodes-table");
    this.padTop = byId("nodes-pad-top").querySelector("td");
    this.padBottom = byId("nodes-pad-bottom").querySelector("td");
    this.empty = byId("nodes-empty");
    this.count = byId("nodes-count");
    this.rows = []; // {id, tr, cells, flip}: the drawn rows, in order
    this.dirty = new Map(); // id -> "added" | "updated" | "removed"
    this.reset = true; // the whole list again (a snapshot)
    this.redraw = false; // every drawn row's cells again (a cluster renamed)
    this.clustersChanged = false;
    this.rowHeight = ROW_HEIGHT;
    this.measured = false;
    this.scrollTop = 0;
    this.viewHeight = this.wrap.clientHeight || 600;
    this.clusterOptions = "";
    this.flashes = 0;
    this.frame = new FrameBatch(() => this.flush());
    this.countsShown = -1; // the counts' version the filters' labels show
    this.labels = new FrameBatch(() => this.updateLabels(), READOUT_MS);
    store.on("nodes", (d) => this.onNodes(d));
    store.on("clusters", () => { this.clustersChanged = true; this.frame.request(); });
    this.bindControls();
    this.bindScroll();
    this.renderSortMarks();
  }

  onNodes(d) {
    if (d.reset) this.reset = true;
    else {
      const prev = this.dirty.get(d.id);
      // "added" wins over a later "updated" in the same frame (both flash; order does not matter).
      this.dirty.set(d.id, prev === "added" && d.change === "updated" ? "added" : d.change);
    }
    this.frame.request();
  }

  bindControls() {
    const filters = { text: "", cluster: "", state: "", external: "" };
    const set = (key, el, ev = "change") => el.addEventListener(ev, () => {
      filters[key] = el.value.trim();
      this.list.setFilters(filters);
      this.frame.request();
    });
    set("text", byId("filter-text"), "input");
    set("cluster", byId("filter-cluster"));
    set("state", byId("filter-state"));
    set("external", byId("filter-external"));
    this.filters = filters;
    for (const select of [byId("filter-state"), byId("filter-external")]) {
      for (const opt of select.options) opt.dataset.label = opt.textContent;
    }
    for (const th of byId("nodes-head").querySelectorAll("th[data-sort]")) {
      th.tabIndex = 0;
      const activate = () => {
        const key = th.dataset.sort;
        const sort = this.list.sort;
        this.list.setSort({ key, dir: sort.key === key ? -sort.dir : 1 });
        this.renderSortMarks();
        this.frame.request();
      };
      th.addEventListener("click", activate);
      th.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); activate(); } });
    }
  }

  bindScroll() {
    // Read here, where the browser has the values ready, never in flush (that would force a layout).
    this.wrap.addEventListener("scroll", () => { this.scrollTop = this.wrap.scrollTop; this.frame.request(); },
      { passive: true });
    new ResizeObserver(() => { this.viewHeight = this.wrap.clientHeight; this.frame.request(); }).observe(this.wrap);
  }

  renderSortMarks() {
    const sort = this.list.sort;
    for (const th of byId("nodes-head").querySelectorAll("th[data-sort]")) {
      const active = th.dataset.sort === sort.key && !th.classList.contains("col-dot");
      th.setAttribute("aria-sort", active ? (sort.dir > 0 ? "ascending" : "descending") : "none");
    }
  }

  flush() {
    this.flashes = 0;
    this.measure();
    const changes = this.dirty;
    this.dirty = new Map();
    if (this.reset) {
      this.list.reset(this.store.nodes.values());
      this.reset = false;
      this.redraw = true;
    } else {
      for (const id of changes.keys()) this.list.update(id, this.store.nodes.get(id) || null);
    }
    if (this.clustersChanged) {
      this.clustersChanged = false;
      // Only a cluster's name shows in the rows (and sorts them): a cluster's other changes leave them be.
      if (this.updateClusterFilter()) {
        this.list.clustersChanged();
        this.redraw = true;
      }
    }
    this.draw(changes);
    this.redraw = false;
    this.updateCounts();
  }

  /** Which rows to draw: those in view, and a margin. */
  range(n) {
    const h = this.rowHeight;
    const visible = Math.ceil(this.viewHeight / h);
    const top = Math.min(Math.floor(this.scrollTop / h), Math.max(0, n - visible));
    return [Math.max(0, top - OVERSCAN), Math.min(n, top + visible + OVERSCAN)];
  }

  draw(changes) {
    const ids = this.list.shown.ids;
    const [first, last] = this.range(ids.length);
    const rows = this.rows;
    // The drawn rows are positions: row i shows the (first + i)th id. A scroll or a shift gives a row
    // another node's cells to show; rows are added or removed only at the end, never moved (a moved
    // element has its style computed again, which cost more than rewriting a row's text).
    while (rows.length < last - first) rows.push(this.makeRow());
    while (rows.length > last - first) rows.pop().tr.remove();
    for (let i = 0; i < rows.length; i++) {
      const id = ids[first + i];
      const row = rows[i];
      const node = this.store.nodes.get(id);
      if (row.id !== id) {
        this.bind(row, id);
        this.fill(row, node, changes.get(id) === "added" ? "added" : "quiet", true);
      } else if (this.redraw || changes.has(id)) {
        this.fill(row, node, changes.get(id) || "quiet", false);
      }
      // Row 1 is the header: screen readers hear "row 9,998 of 10,001" however few rows are drawn.
      setAttr(row.tr, "aria-rowindex", first + i + 2);
      if (!row.tr.parentNode) this.body.appendChild(row.tr);
    }
    this.setPad(this.padTop, first * this.rowHeight);
    this.setPad(this.padBottom, (ids.length - last) * this.rowHeight);
  }

  /** A row now shows node `id`: another node's highlight does not carry over. */
  bind(row, id) {
    row.id = id;
    row.tr.dataset.id = id;
    row.tr.classList.remove("flash-a", "flash-b");
  }

  setPad(td, px) {
    const height = `${px}px`;
    if (td.style.height !== height) td.style.height = height;
    setHidden(td.parentElement.parentElement, px === 0);
  }

  /** The real row height, once, from a row drawn in an earlier frame (fonts and zoom may differ). */
  measure() {
    if (this.measured || !this.body.firstElementChild) return;
    const height = this.body.firstElementChild.getBoundingClientRect().height;
    if (height > 0) { this.rowHeight = height; this.measured = true; }
  }

  updateCounts() {
    const store = this.store;
    const n = this.list.shown.length;
    setHidden(this.empty, n > 0);
    setText(this.count, store.nodes.size ? `${n} of ${store.nodes.size}` : "");
    setAttr(this.table, "aria-rowcount", n + 1);
    if (store.counts.version !== this.countsShown) this.labels.request();
  }

  /** Each filter's choices say how many nodes they hold (a readout: at most every READOUT_MS). */
  updateLabels() {
    const counts = this.store.counts;
    this.countsShown = counts.version;
    const label = (opt, n) => setText(opt, `${opt.dataset.label} (${n})`);
    for (const opt of byId("filter-state").options) label(opt, opt.value ? counts.state.get(opt.value) || 0 : counts.total);
    for (const opt of byId("filter-external").options) label(opt, opt.value ? counts.origin.get(opt.value) || 0 : counts.total);
    for (const opt of byId("filter-cluster").options) label(opt, opt.value ? counts.cluster.get(opt.value) || 0 : counts.total);
  }

  fill(row, node, change, fresh) {
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

  makeRow() {
    const cell = (col, cls) => h("td", { dataset: { col }, className: cls });
    const cells = {
      dot: h("td", { className: "col-dot", dataset: { col: "dot" } }, h("span", { className: "dot", "aria-hidden": "true" })),
      name: cell("name", "cell-name"),
      ip: cell("ip", "mono"),
      cluster: cell("cluster"),
      head: cell("head", "cell-role"),
      state: cell("state", "cell-state"),
      cpu: cell("cpu", "num"),
      memory: cell("memory", "num"),
      object_store: cell("object_store", "num"),
      external: cell("external", "cell-origin"),
    };
    cells.stateText = h("span", { className: "state-badge" });
    cells.reason = h("span", { className: "state-reason", dataset: { testid: "node-state-reason" } });
    cells.state.append(cells.stateText, cells.reason);
    const tr = h("tr", { dataset: { testid: "node-row" } },
      cells.dot, cells.name, cells.ip, cells.cluster, cells.head, cells.state, cells.cpu, cells.memory,
      cells.object_store, cells.external);
    tr.addEventListener("animationend", () => tr.classList.remove("flash-a", "flash-b"));
    return { id: null, tr, cells, flip: false };
  }

  /** The cluster filter's choices, when a cluster came, went or was renamed; returns whether they did. */
  updateClusterFilter() {
    const select = byId("filter-cluster");
    const clusters = [...this.store.clusters.values()].sort((a, b) => String(a.name).localeCompare(String(b.name)));
    const sig = clusters.map((c) => `${c.id}\u0000${c.name}`).join("\u0001");
    if (sig === this.clusterOptions) return false;
    this.clusterOptions = sig;
    const current = select.value;
    const option = (value, label) => h("option", { value, dataset: { label } }, label);
    select.replaceChildren(option("", "All clusters"), ...clusters.map((c) => option(c.id, c.name || c.id)));
    this.countsShown = -1; // the new options have no counts yet
    select.value = clusters.some((c) => c.id === current) ? current : "";
    if (select.value !== current) {
      this.filters.cluster = "";
      this.list.setFilters(this.filters);
    }
    return true;
  }
}
