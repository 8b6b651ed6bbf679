// The status bar's state: the running job (stage, bytes, speed, ETA, cancel) or the last
// result, and the log.
import type { Event } from "./bindings/Event";
import type { JobHandle } from "./ipc";
import { seconds, speed } from "./format";

export interface LogLine {
  at: string;
  text: string;
}

export const status = $state({
  running: false,
  title: "",
  stage: "",
  done: 0,
  total: 0,
  bytesPerSecond: 0,
  started: 0,
  last: "Ready.",
  handle: null as JobHandle | null,
  log: [] as LogLine[],
});

export function log(text: string) {
  const at = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" }).format(Date.now());
  status.log.push({ at, text });
  if (status.log.length > 500) status.log.shift();
}

export function begin(title: string) {
  status.running = true;
  status.title = title;
  status.stage = "starting";
  status.done = 0;
  status.total = 0;
  status.bytesPerSecond = 0;
  status.started = performance.now();
  status.handle = null;
  log(`${title}: started`);
}

export function started(h: JobHandle) {
  status.handle = h;
}

export function end(result: string) {
  status.running = false;
  status.handle = null;
  status.last = result;
  log(result);
}

/** One progress event from a job. */
export function onEvent(e: Event) {
  switch (e.event) {
    case "stage":
      status.stage = e.name;
      status.done = 0;
      status.total = 0;
      break;
    case "bytes":
    case "items":
      status.done = e.done;
      status.total = e.total;
      break;
    case "push":
      status.stage = e.stage;
      status.done = e.acked;
      status.total = e.total;
      status.bytesPerSecond = e.bytes_per_sec;
      break;
    case "connected":
      log(`connected: ${e.product} running ${e.version}`);
      break;
    case "reconnecting":
      status.stage = `reconnecting (attempt ${e.attempt})`;
      break;
    case "reconnected":
      log("reconnected: resuming where the device says");
      break;
    case "warning":
      log(`warning: ${e.message}`);
      break;
    case "device":
      log(`${e.port}: ${e.pass ? "PASS" : "FAIL"} ${e.uid} ${e.detail}`);
      break;
  }
}

/** "54.0 %  640 / 1,186 B  11.2 KiB/s  ETA 3.0 s" parts for the bar. */
export function eta(): string {
  if (!status.running || status.total <= 0 || status.done <= 0) return "";
  const elapsed = (performance.now() - status.started) / 1000;
  const rate = status.bytesPerSecond > 0 ? status.bytesPerSecond : status.done / Math.max(elapsed, 1e-3);
  const left = (status.total - status.done) / Math.max(rate, 1e-9);
  return `${speed(rate)} · ETA ${seconds(left)}`;
}
