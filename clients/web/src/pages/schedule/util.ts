// Helpers of the schedule pages: trigger summaries, durations as a number and a unit,
// datetime-local values, the time zones a browser knows and the policy enums as options.
import { create, fromJson, toJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import {
  DurationSchema,
  ValueSchema,
  timestampFromDate,
  type Duration,
  type Timestamp,
  type Value,
} from "@bufbuild/protobuf/wkt";
import { CatchupPolicy, OverlapPolicy, type Schedule } from "@raypipe/client/web";
import { formatTime, idOf, toDate } from "../../format";

// --- durations ---------------------------------------------------------------------------------
export type DurationUnit = "seconds" | "minutes" | "hours" | "days";

export const DURATION_UNITS: readonly { unit: DurationUnit; seconds: number; label: string }[] = [
  { unit: "seconds", seconds: 1, label: "seconds" },
  { unit: "minutes", seconds: 60, label: "minutes" },
  { unit: "hours", seconds: 3600, label: "hours" },
  { unit: "days", seconds: 86400, label: "days" },
];

/** A duration as the form holds it: the number as typed and its unit; "" is unset. */
export interface DurationValue {
  readonly value: string;
  readonly unit: DurationUnit;
}

export function secondsOf(d: Duration | undefined): number {
  return d ? Number(d.seconds) + d.nanos / 1e9 : 0;
}

/** A Duration as a number in the largest unit that divides it: 300 s -> 5 minutes. */
export function durationValue(d: Duration | undefined, fallback: DurationUnit = "minutes"): DurationValue {
  if (!d || (d.seconds === 0n && d.nanos === 0)) return { value: "", unit: fallback };
  const total = secondsOf(d);
  for (const u of [...DURATION_UNITS].reverse()) {
    if (Number.isInteger(total) && total % u.seconds === 0) return { value: String(total / u.seconds), unit: u.unit };
  }
  return { value: String(total), unit: "seconds" };
}

/** The Duration of a form value; undefined when empty; a string saying what is wrong otherwise. */
export function parseDuration(v: DurationValue): Duration | undefined | string {
  const text = v.value.trim();
  if (text === "") return undefined;
  const n = Number(text);
  if (!Number.isFinite(n)) return `"${text}" is not a number`;
  const unit = DURATION_UNITS.find((u) => u.unit === v.unit) ?? DURATION_UNITS[0];
  const total = n * unit.seconds;
  const seconds = Math.trunc(total);
  const nanos = Math.round((total - seconds) * 1e9);
  return create(DurationSchema, { seconds: BigInt(seconds), nanos });
}

/** "every 5 min", "every 1 h 30 min", "every 2 days", "every 1.5 s". */
export function formatEvery(d: Duration | undefined): string {
  let rest = secondsOf(d);
  if (rest <= 0) return "every ? (no interval)";
  const parts: string[] = [];
  const days = Math.floor(rest / 86400);
  rest -= days * 86400;
  const hours = Math.floor(rest / 3600);
  rest -= hours * 3600;
  const minutes = Math.floor(rest / 60);
  rest -= minutes * 60;
  if (days) parts.push(`${days} ${days === 1 ? "day" : "days"}`);
  if (hours) parts.push(`${hours} h`);
  if (minutes) parts.push(`${minutes} min`);
  if (rest > 1e-9) parts.push(`${Number(rest.toFixed(3))} s`);
  return `every ${parts.join(" ")}`;
}

/** A Duration as text for the details: "5 min", "1 h", "none". */
export function formatSpan(d: Duration | undefined, none = "—"): string {
  if (!d || secondsOf(d) === 0) return none;
  return formatEvery(d).slice("every ".length);
}

// --- times -------------------------------------------------------------------------------------
function pad(n: number): string {
  return String(n).padStart(2, "0");
}

/** A Date as a datetime-local value in the browser's time zone ("2026-12-03T14:00:00"). */
export function localInputOf(date: Date | null): string {
  if (!date) return "";
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}

export function localInputOfTimestamp(ts: Timestamp | undefined): string {
  return localInputOf(toDate(ts));
}

/** A datetime-local value as a Timestamp; undefined when empty; a string when unreadable. */
export function parseLocalInput(value: string): Timestamp | undefined | string {
  const text = value.trim();
  if (text === "") return undefined;
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) return `"${text}" is not a date and time`;
  return timestampFromDate(date);
}

/** The browser's own time zone, for the hints next to datetime-local fields. */
export function browserTimeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  } catch {
    return "local time";
  }
}

/** An ISO string for <time dateTime>, "" when unset. */
export function isoOf(ts: Timestamp | undefined): string {
  const date = toDate(ts);
  return date ? date.toISOString() : "";
}

let zones: readonly string[] | null = null;

/** The IANA time zones this browser knows, "UTC" first. */
export function timeZones(): readonly string[] {
  if (zones) return zones;
  let list: string[] = [];
  try {
    list = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  } catch {
    list = [];
  }
  zones = ["UTC", ...list.filter((z) => z !== "UTC")];
  return zones;
}

// --- the schedule ------------------------------------------------------------------------------
/** How a schedule fires, in one line: `cron "0 * * * *" in Europe/Paris`, `every 5 min`, `once at …`. */
export function triggerSummary(s: Schedule): string {
  switch (s.trigger.case) {
    case "cron":
      return `cron "${s.trigger.value.expression}" in ${s.timeZone || "UTC"}`;
    case "interval":
      return formatEvery(s.trigger.value.every);
    case "once":
      return `once at ${formatTime(s.trigger.value.at)}`;
    default:
      return "no trigger";
  }
}

/** The pipeline id a schedule runs, from its pipeline or its pinned version. */
export function pipelineIdOf(s: Schedule): string {
  if (s.pipeline) return idOf(s.pipeline);
  const m = /^pipelines\/([^/]+)\//.exec(s.pipelineVersion);
  return m ? m[1] : "";
}

/** The pinned version number, or null when each fire runs the default version. */
export function pinnedVersionOf(s: Schedule): number | null {
  const m = /\/versions\/(\d+)$/.exec(s.pipelineVersion);
  return m ? Number(m[1]) : null;
}

export function parametersJson(params: { [key: string]: Value }): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(params)) out[key] = toJson(ValueSchema, value);
  return out;
}

export function parametersOf(json: JsonObject): { [key: string]: Value } {
  const out: { [key: string]: Value } = {};
  for (const [key, value] of Object.entries(json)) out[key] = fromJson(ValueSchema, value as JsonValue);
  return out;
}

/** The parameters textarea as an object, or a string saying why it is not one. */
export function parseParameters(text: string): JsonObject | string {
  if (text.trim() === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return `not valid JSON: ${err instanceof Error ? err.message : String(err)}`;
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    return "must be a JSON object, such as {\"pause\": 0.5}";
  }
  return parsed as JsonObject;
}

// --- the policies ------------------------------------------------------------------------------
export const OVERLAP_OPTIONS: readonly { value: OverlapPolicy; label: string; hint: string }[] = [
  { value: OverlapPolicy.UNSPECIFIED, label: "Default (skip)", hint: "Not set: a fire while a run is going is skipped." },
  { value: OverlapPolicy.SKIP, label: "Skip", hint: "Skip the fire while an earlier run is going." },
  {
    value: OverlapPolicy.BUFFER_ONE,
    label: "Buffer one",
    hint: "Keep one fire waiting and start it when the running one ends; later fires are skipped.",
  },
  {
    value: OverlapPolicy.BUFFER_ALL,
    label: "Buffer all",
    hint: "Keep every fire waiting and start them one after another.",
  },
  { value: OverlapPolicy.CANCEL_OTHER, label: "Cancel other", hint: "Cancel the running run and start the new one." },
  { value: OverlapPolicy.ALLOW_ALL, label: "Allow all", hint: "Start the new run alongside." },
];

export const CATCHUP_OPTIONS: readonly { value: CatchupPolicy; label: string; hint: string }[] = [
  {
    value: CatchupPolicy.UNSPECIFIED,
    label: "Default (latest)",
    hint: "Not set: one run for the latest fire missed while the scheduler was down.",
  },
  { value: CatchupPolicy.NONE, label: "None", hint: "Skip fires missed while the scheduler was down." },
  { value: CatchupPolicy.LATEST, label: "Latest", hint: "One run for the latest missed fire." },
  {
    value: CatchupPolicy.ALL,
    label: "All",
    hint: "One run per missed fire within the catch-up window (default one hour), at most 100.",
  },
];

export function overlapLabel(p: OverlapPolicy): string {
  return OVERLAP_OPTIONS.find((o) => o.value === p)?.label ?? `policy ${p}`;
}

export function catchupLabel(p: CatchupPolicy): string {
  return CATCHUP_OPTIONS.find((o) => o.value === p)?.label ?? `policy ${p}`;
}
