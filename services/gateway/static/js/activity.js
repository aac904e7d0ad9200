// The activity log: the newest events first, bounded, appended in one batch at most every READOUT_MS.

import { byId, h } from "./dom.js";
import { FrameBatch, READOUT_MS } from "./frame.js";
import { clock } from "./format.js";

const LIMIT = 200;

export class ActivityLog {
  constructor(store) {
    this.list = byId("activity-log");
    this.pending = [];
    this.frame = new FrameBatch(() => this.flush(), READOUT_MS);
    store.on("activity", (entry) => { this.pending.push(entry); this.frame.request(); });
    byId("btn-clear-log").addEventListener("click", () => this.list.replaceChildren());
  }

  flush() {
    const entries = this.pending.splice(0).slice(-LIMIT);
    const fragment = document.createDocumentFragment();
    for (const e of entries.reverse()) {
      fragment.appendChild(h("li", { className: "entry", dataset: { kind: e.kind, testid: "activity-entry" } },
        h("time", { className: "entry-time" }, clock(e.time)), h("span", { className: "entry-text" }, e.text)));
    }
    this.list.prepend(fragment);
    while (this.list.childElementCount > LIMIT) this.list.lastElementChild.remove();
  }
}
