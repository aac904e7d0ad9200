// Coalesce many changes into one redraw per animation frame.

export class FrameBatch {
  constructor(flush) {
    this.flush = flush;
    this.pending = false;
  }

  /** Ask for a redraw on the next frame (any number of calls before it make one redraw). */
  request() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.flush();
    });
  }
}
