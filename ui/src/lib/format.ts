// Numbers as the Studio shows them: sizes two ways, one decimal for percentages, times
// that read at a glance.

const grouped = new Intl.NumberFormat("en-US");

/** "1,186" */
export function count(n: number): string {
  return grouped.format(n);
}

/** "1.2 KiB (1,186 bytes)"; small sizes only in bytes. */
export function size(bytes: number): string {
  if (bytes < 1024) return `${count(bytes)} bytes`;
  const units = ["KiB", "MiB", "GiB"];
  let v = bytes / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return `${v.toFixed(1)} ${units[u]} (${count(bytes)} bytes)`;
}

/** "63.0 %" of `part` in `whole`. */
export function percent(part: number, whole: number): string {
  if (whole <= 0) return "0.0 %";
  return `${((part * 100) / whole).toFixed(1)} %`;
}

/** "0.11 s", "5.8 s", "2 min 05 s". */
export function seconds(s: number): string {
  if (!Number.isFinite(s) || s < 0) return "–";
  if (s < 1) return `${s.toFixed(2)} s`;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  const r = Math.round(s - m * 60);
  return `${m} min ${String(r).padStart(2, "0")} s`;
}

/** "11.2 KiB/s" */
export function speed(bytesPerSecond: number): string {
  if (!Number.isFinite(bytesPerSecond) || bytesPerSecond <= 0) return "–";
  if (bytesPerSecond < 1024) return `${bytesPerSecond.toFixed(0)} B/s`;
  if (bytesPerSecond < 1024 * 1024) return `${(bytesPerSecond / 1024).toFixed(1)} KiB/s`;
  return `${(bytesPerSecond / 1024 / 1024).toFixed(1)} MiB/s`;
}

/** "0x08000000" */
export function hex32(n: number): string {
  return `0x${n.toString(16).toUpperCase().padStart(8, "0")}`;
}
