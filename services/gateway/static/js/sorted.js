// A list of ids kept sorted as ids come and go, by binary search: O(log n) to find a place, one splice to
// take or give it (a memmove, microseconds at 10,000), instead of sorting everything again per change.

export class SortedIds {
  /**
   * @param {(a: string, b: string) => number} compare a total order on ids (ties broken by id), read from
   *   the caller's cache of keys: take an id out before its key changes, put it back after.
   */
  constructor(compare) {
    this.compare = compare;
    this.ids = [];
  }

  get length() { return this.ids.length; }

  /** Replace the contents with these ids (sorted here, once). */
  reset(ids) {
    this.ids = ids;
    this.ids.sort(this.compare);
  }

  /** Where `id` is, or -1. */
  indexOf(id) {
    const i = this.lowerBound(id);
    if (this.ids[i] === id) return i;
    return this.ids.indexOf(id); // only if a key changed under us: still correct, just slower
  }

  /** Put `id` in its place; returns that index. */
  insert(id) {
    const i = this.lowerBound(id);
    this.ids.splice(i, 0, id);
    return i;
  }

  /** Take `id` out; returns where it was, or -1. */
  remove(id) {
    const i = this.indexOf(id);
    if (i >= 0) this.ids.splice(i, 1);
    return i;
  }

  lowerBound(id) {
    let lo = 0;
    let hi = this.ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.compare(this.ids[mid], id) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
