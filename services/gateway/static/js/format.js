// Human-readable numbers: sizes in binary units, rates, durations, times.

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(Number(n))) return "—";
  let v = Number(n);
  let i = 0;
  while (Math.abs(v) >= 1024 && i < UNITS.length - 1) { v /= 1024; i += 1; }
  const digits = i === 0 ? 0 : v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${v.toFixed(digits)} ${UNITS[i]}`;
}

export function rate(bytesPerSecond) {
  if (!bytesPerSecond || bytesPerSecond <= 0) return "—";
  return `${bytes(bytesPerSecond)}/s`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return "—";
  if (seconds < 1) return "<1 s";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function cpu(n) {
  if (n === null || n === undefined) return "—";
  const v = Number(n);
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

// What toLocaleTimeString([], { hour12: false }) gives, made once: that call builds a formatter each time
// (about 1 ms), and the activity log formats a time per node that changes state.
const CLOCK = new Intl.DateTimeFormat([], { hour: "numeric", minute: "numeric", second: "numeric", hour12: false });

export function clock(epochSeconds) {
  return CLOCK.format(epochSeconds ? new Date(epochSeconds * 1000) : new Date());
}

export function ago(epochSeconds) {
  if (!epochSeconds) return "—";
  const s = Math.max(0, Date.now() / 1000 - epochSeconds);
  if (s < 5) return "just now";
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

export function percent(done, total) {
  if (!total) return done ? 100 : 0;
  return Math.max(0, Math.min(100, (100 * done) / total));
}

export function shortId(id, n = 8) {
  const s = String(id ?? "");
  return s.length > n ? s.slice(0, n) : s;
}
