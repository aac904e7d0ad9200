// The page's entry point: one store, one live connection, four panels.

import * as api from "./api.js";
import { ActivityLog } from "./activity.js";
import { ClustersPanel } from "./clusters.js";
import { byId, setText } from "./dom.js";
import { FrameBatch, READOUT_MS } from "./frame.js";
import { LiveConnection } from "./live.js";
import { NodesTable } from "./nodes.js";
import { ServicesPanel } from "./services.js";
import { Store } from "./store.js";
import { TransfersPanel } from "./transfers.js";

const THEME_KEY = "castray.theme";

function setupTheme() {
  const root = document.documentElement;
  let saved = null;
  try { saved = localStorage.getItem(THEME_KEY); } catch { /* no storage */ }
  if (saved) root.dataset.theme = saved;
  byId("btn-theme").addEventListener("click", () => {
    const dark = root.dataset.theme ? root.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
    root.dataset.theme = dark ? "light" : "dark";
    try { localStorage.setItem(THEME_KEY, root.dataset.theme); } catch { /* no storage */ }
  });
}

function setupSummary(store) {
  const frame = new FrameBatch(() => {
    // DEAD nodes are listed with Ray's reason, but no longer counted (as /api/status).
    const { counted, alive, external } = store.counts.summary();
    setText(byId("stat-clusters"), store.clusters.size);
    setText(byId("stat-nodes"), counted);
    setText(byId("stat-alive"), alive);
    setText(byId("stat-external"), external);
  }, READOUT_MS);
  store.on("nodes", () => frame.request());
  store.on("clusters", () => frame.request());
}

function setupBadge() {
  const badge = byId("conn-badge");
  return (state, detail) => {
    badge.dataset.state = state;
    setText(badge, state);
    badge.title = detail || "";
  };
}

function setupAuth(live) {
  const bar = byId("auth-bar");
  api.setUnauthorizedHandler(() => { bar.hidden = false; });
  byId("auth-form").addEventListener("submit", (e) => {
    e.preventDefault();
    api.setToken(byId("auth-token").value.trim());
    bar.hidden = true;
    live.resync("new token");
  });
}

function main() {
  setupTheme();
  const store = new Store();
  const panels = {
    activity: new ActivityLog(store),
    clusters: new ClustersPanel(store),
    nodes: new NodesTable(store),
    services: new ServicesPanel(),
    transfers: new TransfersPanel(store),
  };
  setupSummary(store);
  const live = new LiveConnection(store, {
    onState: setupBadge(),
    onResync: () => panels.transfers.loadRecent(),
    onFailure: () => { api.get("/api/clusters").catch(() => {}); },
  });
  setupAuth(live);
  live.start();
  panels.services.start();
  addEventListener("pagehide", () => live.stop());
  // For tests and the curious: the page's state, read-only by convention.
  window.castray = { store, live, panels };
}

main();
