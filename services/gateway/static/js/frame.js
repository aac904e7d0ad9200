// Coalesce many changes into one redraw per animation frame, or into at most one redraw every `everyMs`.

// The least time between two redraws of a readout: the counts (top bar, clusters, the filters' choices)
// and the activity log. At 100 node changes a second each changed on nearly every frame, and every such
// frame was painted (Paint and layerization were half the main thread's CPU with nothing in view
// changing, bench/page.py at 10,000 nodes); people read them, four times a second is plenty. The node
// table itself is drawn on the next frame.
export const READOUT_MS = 250;

export class FrameBatch {
  /**
   * @param {() => void} flush the redraw
   * @param {number} everyMs the least time between two redraws (0: every frame that has a change)
   */
  constructor(flush, everyMs = 0) {
    this.flush = flush;
    this.everyMs = everyMs;
    this.pending = false;
    this.last = -Infinity;
  }

  /** Ask for a redraw on the next frame, or the first frame `everyMs` after the last redraw (any number
   * of calls before it make one redraw). */
  request() {
    if (this.pending) return;
    this.pending = true;
    const wait = this.last + this.everyMs - performance.now();
    if (wait > 0) setTimeout(() => requestAnimationFrame(() => this.run()), wait);
    else requestAnimationFrame(() => this.run());
  }

  run() {
    this.pending = false;
    this.last = performance.now();
    this.flush();
  }
}
