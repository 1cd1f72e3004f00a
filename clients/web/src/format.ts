// Display helpers: enum names without their prefix, times, durations, resource ids.
import { timestampDate, type Timestamp, type Duration } from "@bufbuild/protobuf/wkt";

/** "STATE_RUNNING" -> "RUNNING"; "ARTIFACT_KIND_DATASET" -> "DATASET". */
export function enumLabel(names: Record<number, string>, value: number, prefix: string): string {
  const name = names[value] ?? String(value);
  return name.startsWith(prefix) ? name.slice(prefix.length) : name;
}

export function toDate(ts: Timestamp | undefined): Date | null {
  return ts && (ts.seconds !== 0n || ts.nanos !== 0) ? timestampDate(ts) : null;
}

export function formatTime(ts: Timestamp | undefined): string {
  const date = toDate(ts);
  return date ? date.toLocaleString(undefined, { hour12: false }) : "—";
}

export function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  if (m < 60) return `${m} min ${s} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function durationBetween(start: Timestamp | undefined, end: Timestamp | undefined, now = Date.now()): string {
  const a = toDate(start);
  if (!a) return "—";
  const b = toDate(end);
  return formatSeconds(((b ? b.getTime() : now) - a.getTime()) / 1000);
}

export function formatDuration(d: Duration | undefined): string {
  if (!d) return "—";
  return formatSeconds(Number(d.seconds) + d.nanos / 1e9);
}

/** The last segment of a resource name: "runs/abc" -> "abc". */
export function idOf(name: string): string {
  return name.slice(name.lastIndexOf("/") + 1);
}

export function formatNumber(value: number): string {
  if (Number.isInteger(value)) return value.toLocaleString();
  const abs = Math.abs(value);
  return abs !== 0 && (abs < 1e-3 || abs >= 1e6) ? value.toExponential(3) : value.toFixed(4);
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}
