// How many nodes there are by state, by cluster and by origin, kept up to date per delta (the old record
// taken out, the new one put in), so that the summary, the clusters panel and the filters' option labels
// never count 10,000 nodes again on each change.

function bump(map, key, by) {
  const n = (map.get(key) || 0) + by;
  if (n) map.set(key, n);
  else map.delete(key);
}

export class NodeCounts {
  constructor() { this.clear(); }

  clear() {
    this.total = 0;
    this.state = new Map(); // "ALIVE" | "DEAD" | "UNREACHABLE" | ... -> nodes
    this.origin = new Map(); // "local" | "external" -> nodes
    this.cluster = new Map(); // cluster id -> nodes
    this.clusterAlive = new Map(); // cluster id -> ALIVE nodes
    this.clusterDead = new Map(); // cluster id -> DEAD nodes
    this.externalCounted = 0; // external nodes that are not DEAD
    this.version = (this.version || 0) + 1; // bumped by every change: a view redraws labels only when it moved
  }

  /** Count a node in (`by` = 1) or out (`by` = -1). */
  tally(node, by) {
    const c = node.cluster_id;
    this.version += 1;
    this.total += by;
    bump(this.state, node.state || "", by);
    bump(this.origin, node.external ? "external" : "local", by);
    bump(this.cluster, c, by);
    if (node.state === "ALIVE") bump(this.clusterAlive, c, by);
    if (node.state === "DEAD") bump(this.clusterDead, c, by);
    else if (node.external) this.externalCounted += by;
  }

  add(node) { this.tally(node, 1); }

  remove(node) { this.tally(node, -1); }

  reset(nodes) {
    this.clear();
    for (const n of nodes) this.add(n);
  }

  /** The page's headline figures: a DEAD node stays listed with Ray's reason, but is no longer counted. */
  summary() {
    const dead = this.state.get("DEAD") || 0;
    return { counted: this.total - dead, alive: this.state.get("ALIVE") || 0, external: this.externalCounted };
  }

  /** One cluster's nodes: alive, counted (not DEAD) and dead. */
  ofCluster(id) {
    const dead = this.clusterDead.get(id) || 0;
    return { alive: this.clusterAlive.get(id) || 0, total: (this.cluster.get(id) || 0) - dead, dead };
  }
}
