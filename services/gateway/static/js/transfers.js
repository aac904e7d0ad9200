// The transfers panel: choose a source (generate, upload, a file on a node), a mode and targets;
// start; follow each destination's progress, rate and ETA live; see the verified checksum; cancel.

import * as api from "./api.js";
import { byId, h, setText, showMessage } from "./dom.js";
import { FrameBatch } from "./frame.js";
import { bytes, duration, percent, rate, shortId } from "./format.js";
import { NodePickers } from "./pickers.js";
import { isTerminal } from "./store.js";

const POLL_MS = 2000;

export class TransfersPanel {
  constructor(store) {
    this.store = store;
    this.list = byId("transfers-list");
    this.message = byId("transfer-message");
    this.cards = new Map();
    this.dirty = new Set();
    this.upload = null; // {promise, abort, info}
    this.pickers = new NodePickers(store, [[byId("transfer-targets"), null], [byId("src-node-id"), null],
      [byId("gen-node"), "a head node"]]);
    this.frame = new FrameBatch(() => this.flush());
    store.on("transfers", (d) => { this.dirty.add(d.id); this.frame.request(); });
    this.bind();
    this.applyMode();
    setInterval(() => this.poll(), POLL_MS);
  }

  // --- form ---------------------------------------------------------------------------------------
  bind() {
    for (const radio of document.querySelectorAll("input[name=source-kind]")) {
      radio.addEventListener("change", () => this.showPane());
    }
    byId("transfer-mode").addEventListener("change", () => this.applyMode());
    byId("btn-targets-all").addEventListener("click", () => {
      for (const opt of byId("transfer-targets").options) opt.selected = !opt.disabled;
    });
    byId("upload-file").addEventListener("change", () => this.startUpload());
    byId("stored-upload").addEventListener("change", () => this.applyStored());
    byId("btn-delete-upload").addEventListener("click", () => this.deleteStored());
    byId("transfer-form").addEventListener("submit", (e) => { e.preventDefault(); this.submit(); });
    this.showPane();
  }

  sourceKind() {
    return document.querySelector("input[name=source-kind]:checked")?.value || "generate";
  }

  showPane() {
    const kind = this.sourceKind();
    for (const pane of document.querySelectorAll(".source-pane")) pane.hidden = pane.dataset.pane !== kind;
    if (kind === "upload") this.refreshStored();
  }

  // Uploads stored before (GET /api/uploads): pick one as the source, or delete it.
  async refreshStored() {
    const select = byId("stored-upload");
    let listing;
    try {
      listing = await api.get("/api/uploads?limit=200");
    } catch (e) {
      setText(byId("upload-status"), `Could not list the stored files: ${e.message}`);
      return;
    }
    const chosen = select.value;
    const options = [select.options[0]];
    for (const u of listing.uploads) {
      const label = `${u.file_name} · ${bytes(u.file_size)} · ${u.origin} · sha256 ${u.sha256.slice(0, 12)}…`;
      options.push(h("option", { value: u.upload_id, selected: u.upload_id === chosen }, label));
    }
    select.replaceChildren(...options);
    this.applyStored();
  }

  applyStored() {
    byId("btn-delete-upload").disabled = !byId("stored-upload").value;
  }

  async deleteStored() {
    const select = byId("stored-upload");
    const id = select.value;
    if (!id) return;
    const name = select.selectedOptions[0]?.textContent || id;
    try {
      const out = await api.del(`/api/uploads/${encodeURIComponent(id)}`);
      setText(byId("upload-status"), `Deleted ${name.split(" · ")[0]} (${bytes(out.deleted_size)} freed)`);
      select.value = "";
    } catch (e) {
      setText(byId("upload-status"), `Could not delete it: ${e.message}`);
    }
    await this.refreshStored();
  }

  applyMode() {
    const mode = byId("transfer-mode").value;
    const select = byId("transfer-targets");
    select.disabled = mode === "broadcast";
    // Nothing to choose in broadcast: the list box is hidden, which also spares the page its layout (at
    // 10,000 nodes Chromium lays out all its options whenever one changes; see pickers.js).
    select.hidden = mode === "broadcast";
    select.multiple = mode !== "unicast";
    select.size = 6;
    byId("btn-targets-all").hidden = mode !== "multicast";
    setText(byId("targets-hint"), {
      broadcast: "Every alive node of the source's cluster.",
      multicast: "Choose the target nodes, of any cluster (Ctrl/⌘-click for several).",
      unicast: "Choose one target node, of any cluster.",
    }[mode]);
  }

  startUpload() {
    const input = byId("upload-file");
    const file = input.files && input.files[0];
    if (this.upload) this.upload.abort();
    this.upload = null;
    const bar = byId("upload-progress");
    const status = byId("upload-status");
    if (!file) { bar.hidden = true; setText(status, ""); return; }
    byId("stored-upload").value = "";  // the file being uploaded is the source
    this.applyStored();
    bar.hidden = false;
    this.setBar(bar, 0);
    setText(status, `Uploading ${file.name} (${bytes(file.size)})…`);
    const up = api.upload("/api/upload", file, (loaded, total) => {
      this.setBar(bar, percent(loaded, total));
      setText(status, `Uploading ${file.name}: ${bytes(loaded)} of ${bytes(total)}`);
    });
    const current = { ...up, info: null, error: null };
    this.upload = current;
    up.promise.then((info) => {
      current.info = info;
      this.setBar(bar, 100);
      setText(status, `Uploaded ${info.file_name} (${bytes(info.file_size)}), sha256 ${info.sha256}`);
      this.store.log("info", `Uploaded ${info.file_name} (${bytes(info.file_size)})`);
      byId("stored-upload").value = "";  // the new file is the source
      this.refreshStored();
    }, (e) => {
      current.error = e;
      if (e.code !== "aborted") setText(status, `Upload failed: ${e.message}`);
    });
  }

  async buildSource() {
    const kind = this.sourceKind();
    if (kind === "generate") {
      const size = byId("gen-size").value.trim();
      if (!size) throw new Error("enter a size, e.g. 64MB");
      const source = { generate: { size, content: byId("gen-content").value } };
      if (byId("gen-node").value) source.node_id = byId("gen-node").value;
      return source;
    }
    if (kind === "upload") {
      const stored = byId("stored-upload").value;
      if (stored) return { upload_id: stored };
      if (!this.upload) throw new Error("choose a file to upload, or one stored before");
      const info = this.upload.info || await this.upload.promise;
      return { upload_id: info.upload_id };
    }
    const nodeId = byId("src-node-id").value;
    const path = byId("src-path").value.trim();
    if (!nodeId) throw new Error("choose the node that holds the file");
    if (!path) throw new Error("enter the file's path on that node");
    return { node_id: nodeId, path };
  }

  targets(mode) {
    if (mode === "broadcast") return [];
    const ids = [...byId("transfer-targets").selectedOptions].map((o) => o.value);
    if (!ids.length) throw new Error(mode === "unicast" ? "choose a target node" : "choose at least one target node");
    if (mode === "unicast" && ids.length !== 1) throw new Error("unicast sends to exactly one node");
    return ids;
  }

  async submit() {
    const button = byId("btn-transfer");
    showMessage(this.message, "");
    const mode = byId("transfer-mode").value;
    let body;
    try {
      body = { source: await this.buildSource(), mode, targets: this.targets(mode) };
    } catch (e) {
      showMessage(this.message, e.message, "error");
      return;
    }
    button.disabled = true;
    try {
      const r = await api.post("/api/transfers", body);
      const t = this.store.transfer(r.id);
      t.mode = mode;
      for (const target of body.targets) this.store.destination(t, target);
      this.store.emit("transfers", { id: r.id });
      if (t.state === "queued") this.store.log("transfer", `Transfer ${shortId(r.id)} queued (${mode})`);
      this.refresh(r.id);
    } catch (e) {
      showMessage(this.message, `Could not start the transfer: ${e.message}`, "error");
    } finally {
      button.disabled = false;
    }
  }

  // --- live state ---------------------------------------------------------------------------------
  // Reads of one record may land out of order (a poll, a cancel's re-read): only the latest sent that has
  // landed counts. The store's merge also never lets a read undo a newer event (see store.laterState).
  async refresh(id) {
    const t = this.store.transfer(id);
    const sent = (t.readsSent || 0) + 1;
    t.readsSent = sent;
    let rec;
    try {
      rec = await api.get(`/api/transfers/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status === 404) {
        t.recordEnded = true;
        if (!isTerminal(t.state)) { t.state = "failed"; t.error = "the gateway no longer knows this transfer"; this.store.emit("transfers", { id }); }
      }
      return;
    }
    if (sent < (t.readLanded || 0)) return;
    t.readLanded = sent;
    this.store.mergeTransferRecord(rec);
  }

  /** Catch up on transfers after a (re)connection: recent ones, and every one still running. */
  async loadRecent() {
    try {
      const data = await api.get("/api/transfers?limit=10");
      for (const rec of api.listFrom(data, "transfers").reverse()) this.store.mergeTransferRecord(rec);
    } catch { /* no transfer service yet: the panel still works for new transfers */ }
    this.poll();
  }

  poll() {
    // A safety net under the live events: reconcile transfers with their record until the record itself
    // says they ended (their end event may come before the record's last save is read).
    for (const t of this.store.transfers.values()) if (!t.recordEnded) this.refresh(t.id);
  }

  async cancel(id, button) {
    button.disabled = true;
    try {
      await api.del(`/api/transfers/${encodeURIComponent(id)}`);
      this.refresh(id);
    } catch (e) {
      this.store.log("error", `Cancel ${shortId(id)} failed: ${e.message}`);
      button.disabled = false;
    }
  }

  // --- cards --------------------------------------------------------------------------------------
  flush() {
    for (const id of this.dirty) {
      const t = this.store.transfers.get(id);
      let card = this.cards.get(id);
      if (!t) { if (card) { card.el.remove(); this.cards.delete(id); } continue; }
      if (!card) {
        card = this.makeCard(id);
        this.cards.set(id, card);
        this.list.prepend(card.el);
      }
      this.fillCard(card, t);
    }
    this.dirty.clear();
    let active = 0;
    for (const t of this.store.transfers.values()) if (!isTerminal(t.state)) active += 1;
    setText(byId("stat-transfers"), active);
  }

  makeCard(id) {
    const title = h("span", { className: "transfer-title" });
    const meta = h("span", { className: "sub" });
    const state = h("span", { className: "state-badge", dataset: { testid: "transfer-state" } });
    const cancel = h("button", { type: "button", className: "btn btn-small btn-danger-ghost", dataset: { testid: "btn-cancel" } }, "Cancel");
    cancel.addEventListener("click", () => this.cancel(id, cancel));
    const error = h("p", { className: "message", dataset: { kind: "error", testid: "transfer-error" }, hidden: true });
    const checksum = h("p", { className: "checksum", hidden: true, dataset: { testid: "transfer-sha256" } });
    const dests = h("ul", { className: "dest-list" });
    const el = h("article", { className: "transfer-card", dataset: { testid: "transfer-card", id } },
      h("header", { className: "transfer-head" }, h("div", {}, title, meta), h("div", { className: "transfer-actions" }, state, cancel)),
      error, checksum, dests);
    return { el, title, meta, state, cancel, error, checksum, dests, rows: new Map() };
  }

  fillCard(card, t) {
    card.el.dataset.state = t.state;
    setText(card.title, t.file_name || `transfer ${shortId(t.id)}`);
    card.title.title = t.file_name || t.id;
    const waiting = !isTerminal(t.state) && t.waiting_for ? `waiting for ${t.waiting_for}` : null;
    setText(card.meta, [t.mode, t.bytes_total ? bytes(t.bytes_total) : null, shortId(t.id), waiting].filter(Boolean).join(" · "));
    setText(card.state, t.state);
    card.state.dataset.state = t.state;
    card.cancel.hidden = isTerminal(t.state);
    card.error.hidden = !t.error;
    setText(card.error, t.error || "");
    const sources = new Set([...t.destinations.values()].map((d) => d.sha256).filter(Boolean));
    const source = t.sha256 || (sources.size === 1 ? [...sources][0] : null);
    card.checksum.hidden = !source;
    if (source) setText(card.checksum, `sha256 ${source}`);
    for (const d of t.destinations.values()) {
      let row = card.rows.get(d.node_id);
      if (!row) { row = this.makeDest(d.node_id); card.rows.set(d.node_id, row); card.dests.appendChild(row.el); }
      this.fillDest(row, d, t);
    }
  }

  makeDest(nodeId) {
    const name = h("span", { className: "dest-name" });
    const state = h("span", { className: "state-badge small", dataset: { testid: "dest-state" } });
    const bar = h("div", { className: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", dataset: { testid: "dest-progress" } },
      h("div", { className: "progress-bar" }));
    const pct = h("span", { className: "dest-pct num", dataset: { testid: "dest-percent" } });
    const detail = h("span", { className: "sub" });
    const sha = h("span", { className: "dest-sha mono", dataset: { testid: "dest-sha256" }, hidden: true });
    const el = h("li", { className: "dest", dataset: { testid: "transfer-dest", node: nodeId } },
      h("div", { className: "dest-line" }, name, state, pct), bar, h("div", { className: "dest-line" }, detail), sha);
    return { el, name, state, bar, pct, detail, sha };
  }

  fillDest(row, d, t) {
    const total = d.bytes_total || t.bytes_total || 0;
    const done = d.state === "completed" ? (total || d.bytes_done) : d.bytes_done;
    const p = d.state === "completed" ? 100 : percent(done, total);
    row.el.dataset.state = d.state;
    setText(row.name, this.store.nodeName(d.node_id));
    setText(row.state, d.state);
    row.state.dataset.state = d.state;
    this.setBar(row.bar, p);
    setText(row.pct, `${Math.floor(p)} %`);
    let detail;
    if (d.state === "failed") detail = d.error || "failed";
    else if (d.state === "completed") detail = d.path ? `${bytes(total)} → ${d.path}` : `${bytes(total)}`;
    else if (d.state === "running") detail = `${bytes(done)} of ${bytes(total)} · ${rate(d.rate)} · ETA ${duration(d.eta)}`;
    else detail = d.state;
    setText(row.detail, detail);
    row.detail.title = detail;
    row.sha.hidden = !d.sha256;
    if (d.sha256) {
      // The full checksum is on the card once; each copy says whether it matches it.
      const mismatch = t.sha256 && d.sha256 !== t.sha256;
      row.sha.dataset.sha256 = d.sha256;
      row.sha.dataset.kind = mismatch ? "mismatch" : "verified";
      row.sha.title = `sha256 ${d.sha256}`;
      setText(row.sha, mismatch ? `✗ sha256 ${d.sha256} differs from the source`
        : `✓ sha256 verified · ${d.sha256.slice(0, 16)}…`);
    }
  }

  setBar(bar, p) {
    const value = Math.round(p * 10) / 10;
    bar.setAttribute("aria-valuenow", String(value));
    bar.firstChild.style.width = `${value}%`;
  }
}
