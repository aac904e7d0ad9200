// What the nodes table shows, without the DOM: every node's sort key and search text, all ids in sort
// order, and the ids that pass the filters in the same order. A change to one node moves one id (a binary
// search and a splice in each list); only a new sort or new filters go over every node, once.

import { SortedIds } from "./sorted.js";

const STATE_ORDER = { ALIVE: 0, UNREACHABLE: 1, DEAD: 2 };

function ipKey(ip) {
  const parts = String(ip || "").split(".");
  if (parts.length === 4 && parts.every((p) => /^\d+$/.test(p))) {
    return parts.map((p) => p.padStart(3, "0")).join(".");
  }
  return String(ip || "");
}

function sortValue(node, key, clusterName) {
  const r = node.resources || {};
  switch (key) {
    case "name": return (node.name || node.id || "").toLowerCase();
    case "ip": return ipKey(node.ip);
    case "cluster": return clusterName(node.cluster_id).toLowerCase();
    case "head": return node.is_head ? 0 : 1;
    case "state": return STATE_ORDER[node.state] ?? 3;
    case "cpu": return Number(r.CPU || 0);
    case "memory": return Number(r.memory || 0);
    case "object_store": return Number(r.object_store_memory || 0);
    case "external": return node.external ? 1 : 0;
    default: return "";
  }
}

export class NodeList {
  /** @param {(clusterId: string) => string} clusterName how a cluster is named (sorting by cluster) */
  constructor(clusterName) {
    this.clusterName = clusterName;
    this.sort = { key: "name", dir: 1 };
    this.filters = { text: "", cluster: "", state: "", external: "" };
    this.entries = new Map(); // id -> {node, value (sort key), name (tie-break), hay (search text), shown}
    const compare = (a, b) => this.compare(a, b);
    this.all = new SortedIds(compare);
    this.shown = new SortedIds(compare); // the filtered ids: what the table's rows are drawn from
  }

  compare(a, b) {
    const x = this.entries.get(a);
    const y = this.entries.get(b);
    const dir = this.sort.dir;
    if (x.value < y.value) return -dir;
    if (x.value > y.value) return dir;
    if (x.name < y.name) return -1;
    if (x.name > y.name) return 1;
    return a < b ? -1 : a > b ? 1 : 0;
  }

  entry(node) {
    return {
      node,
      value: sortValue(node, this.sort.key, this.clusterName),
      name: (node.name || node.id || "").toLowerCase(),
      hay: `${node.name || ""} ${node.ip || ""} ${node.id || ""} ${node.hostname || ""}`.toLowerCase(),
      shown: false,
    };
  }

  matches(e) {
    const f = this.filters;
    const node = e.node;
    if (f.cluster && node.cluster_id !== f.cluster) return false;
    if (f.state && node.state !== f.state) return false;
    if (f.external === "external" && !node.external) return false;
    if (f.external === "local" && node.external) return false;
    return !f.text || e.hay.includes(f.text);
  }

  /** Start again from every node (a snapshot). */
  reset(nodes) {
    this.entries = new Map();
    for (const node of nodes) this.entries.set(node.id, this.entry(node));
    this.all.reset([...this.entries.keys()]);
    this.refilter();
  }

  /** One node added or changed (`node`) or removed (`null`): its id moves in both lists. */
  update(id, node) {
    const before = this.entries.get(id);
    if (before) {
      this.all.remove(id);
      if (before.shown) this.shown.remove(id);
      this.entries.delete(id);
    }
    if (!node) return;
    const e = this.entry(node);
    this.entries.set(id, e);
    this.all.insert(id);
    e.shown = this.matches(e);
    if (e.shown) this.shown.insert(id);
  }

  setFilters(filters) {
    this.filters = { ...filters, text: (filters.text || "").toLowerCase() };
    this.refilter();
  }

  /** Sort by another column (or the other way): every key again, one sort. */
  setSort(sort) {
    this.sort = sort;
    this.rekey();
  }

  /** Cluster names changed: only a sort by cluster has to look again. */
  clustersChanged() {
    if (this.sort.key === "cluster") this.rekey();
  }

  rekey() {
    for (const e of this.entries.values()) e.value = sortValue(e.node, this.sort.key, this.clusterName);
    this.all.reset(this.all.ids);
    this.refilter();
  }

  refilter() {
    const shown = [];
    for (const id of this.all.ids) {
      const e = this.entries.get(id);
      e.shown = this.matches(e);
      if (e.shown) shown.push(id);
    }
    this.shown.ids = shown; // already in order: a subsequence of `all`
  }
}
