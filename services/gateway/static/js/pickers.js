// The transfer form's node pickers (the targets, the node holding a file, the node generating one): one
// <option> per node, by name, kept per delta. A change to one node touches its own option (and moves it
// only if its name changed), so 100 changes a second at 10,000 nodes never sort or relabel them all.
// They are brought up to date at most once a second: Chromium lays out a list box (the targets) whole
// when any of its options changes, 10,000 of them in 10-15 ms, too much to pay on every frame.

import { h, setText } from "./dom.js";
import { FrameBatch } from "./frame.js";
import { SortedIds } from "./sorted.js";

const collator = new Intl.Collator();
const EVERY_MS = 1000;

function label(store, n) {
  return `${n.name || n.id} · ${n.ip || "?"}${n.is_head ? " · head" : ""} · ${store.clusterName(n.cluster_id)}`
    + `${n.state === "ALIVE" ? "" : ` · ${n.state}`}`;
}

// A DEAD node is never offered (Ray gives a restarted node a new id); an UNREACHABLE one is shown
// disabled, as it may answer again.
function offered(node) { return Boolean(node) && node.state !== "DEAD"; }

export class NodePickers {
  /** @param {Array<[HTMLSelectElement, string | null]>} selects each select, and its "none" choice's label */
  constructor(store, selects) {
    this.store = store;
    this.names = new Map(); // id -> the name it is sorted by, for the offered nodes
    this.order = new SortedIds((a, b) => collator.compare(this.names.get(a), this.names.get(b)) || (a < b ? -1 : a > b ? 1 : 0));
    this.views = selects.map(([select, empty]) => new NodeOptions(select, empty));
    this.dirty = new Set();
    this.all = true;
    this.clusterNames = "";
    this.clustersChanged = false;
    this.frame = new FrameBatch(() => this.flush(), EVERY_MS); // the first frame a second after the last
    store.on("nodes", (d) => { if (d.reset) this.all = true; else this.dirty.add(d.id); this.frame.request(); });
    store.on("clusters", () => { this.clustersChanged = true; this.frame.request(); });
  }

  flush() {
    if (this.clustersChanged) {
      this.clustersChanged = false;
      const names = [...this.store.clusters.values()].map((c) => `${c.id}\u0000${c.name}`).join("\u0001");
      if (names !== this.clusterNames) { this.clusterNames = names; this.all = true; } // labels name clusters
    }
    if (this.all) this.rebuild();
    else for (const id of this.dirty) this.update(id, this.store.nodes.get(id));
    this.all = false;
    this.dirty.clear();
  }

  rebuild() {
    this.names = new Map();
    const nodes = [...this.store.nodes.values()].filter(offered);
    for (const n of nodes) this.names.set(n.id, String(n.name || n.id));
    this.order.reset(nodes.map((n) => n.id));
    const labels = this.order.ids.map((id) => label(this.store, this.store.nodes.get(id)));
    for (const view of this.views) view.rebuild(this.order.ids, this.store.nodes, labels);
  }

  update(id, node) {
    const name = offered(node) ? String(node.name || node.id) : null;
    const before = this.names.get(id);
    if (before !== undefined && before !== name) {
      this.order.remove(id);
      this.names.delete(id);
    }
    if (name === null) {
      for (const view of this.views) view.drop(id);
      return;
    }
    for (const view of this.views) view.fill(node, label(this.store, node));
    if (before === name) return;
    this.names.set(id, name);
    const next = this.order.ids[this.order.insert(id) + 1];
    for (const view of this.views) view.place(id, next);
  }
}

/** One <select>'s node options, keyed by node id and updated in place (a selection survives updates). */
class NodeOptions {
  constructor(select, emptyLabel = null) {
    this.select = select;
    this.options = new Map();
    this.first = emptyLabel === null ? null : select.querySelector('option[value=""]') || h("option", { value: "" }, emptyLabel);
  }

  fill(n, text) {
    let opt = this.options.get(n.id);
    if (opt) setText(opt, text);
    else { opt = new Option(text, n.id); this.options.set(n.id, opt); } // text, never markup; the cheapest way
    const disabled = n.state !== "ALIVE";
    if (opt.disabled !== disabled) {
      opt.disabled = disabled;
      if (disabled) opt.selected = false;
    }
  }

  /** Put a node's option before the option of `nextId` (the last if none). */
  place(id, nextId) {
    const next = nextId === undefined ? null : this.options.get(nextId) || null;
    this.select.insertBefore(this.options.get(id), next);
  }

  drop(id) {
    const opt = this.options.get(id);
    if (opt) { opt.remove(); this.options.delete(id); }
  }

  rebuild(ids, nodes, labels) {
    const empty = this.options.size === 0;
    const keep = new Set(ids);
    for (const id of [...this.options.keys()]) if (!keep.has(id)) this.drop(id);
    ids.forEach((id, i) => this.fill(nodes.get(id), labels[i]));
    if (this.first && this.select.firstChild !== this.first) this.select.prepend(this.first);
    if (empty) {
      // The first fill (10,000 options at a snapshot): one insertion, not one per option.
      const all = document.createDocumentFragment();
      for (const id of ids) all.appendChild(this.options.get(id));
      this.select.appendChild(all);
      return;
    }
    let cursor = this.first ? this.first.nextSibling : this.select.firstChild;
    for (const id of ids) {
      const opt = this.options.get(id);
      if (opt === cursor) cursor = cursor.nextSibling;
      else this.select.insertBefore(opt, cursor);
    }
  }
}
