// The schedule form, shared by create (CreateSchedule) and edit (UpdateSchedule with an
// update_mask of the fields changed and the etag read). Every BadRequest violation is shown on
// its field (aria-invalid + .field-error); the ones that match no field shown go in the banner.
import { create } from "@bufbuild/protobuf";
import {
  CatchupPolicy,
  OverlapPolicy,
  ScheduleRetryPolicySchema,
  ScheduleSchema,
  type Schedule,
} from "@raypipe/client/web";
import { useEffect, useId, useMemo, useRef, useState, type FormEvent, type ReactNode } from "react";
import { client, shownError, type ShownError } from "../../api";
import { ErrorBanner } from "../../components/common";
import { idOf } from "../../format";
import {
  CATCHUP_OPTIONS,
  DURATION_UNITS,
  OVERLAP_OPTIONS,
  browserTimeZone,
  durationValue,
  localInputOfTimestamp,
  parametersJson,
  parametersOf,
  parseDuration,
  parseLocalInput,
  parseParameters,
  pinnedVersionOf,
  pipelineIdOf,
  timeZones,
  type DurationUnit,
  type DurationValue,
} from "./util";

type TriggerKind = "cron" | "interval" | "once";

interface FormState {
  scheduleId: string;
  pipelineId: string;
  version: string;
  displayName: string;
  kind: TriggerKind;
  cron: string;
  timeZone: string;
  every: DurationValue;
  onceAt: string;
  startTime: string;
  endTime: string;
  maxRuns: string;
  overlapPolicy: OverlapPolicy;
  catchupPolicy: CatchupPolicy;
  catchupWindow: DurationValue;
  jitter: DurationValue;
  retryMaxRetries: string;
  retryInitialBackoff: DurationValue;
  retryMultiplier: string;
  retryMaxBackoff: DurationValue;
  paused: boolean;
  parameters: string;
}

type FieldKey = keyof FormState;

/** Request field paths -> the form field that shows their violations (longest prefix wins). */
export const VIOLATION_FIELDS: readonly (readonly [string, FieldKey])[] = [
  ["schedule_id", "scheduleId"],
  ["schedule.pipeline", "pipelineId"],
  ["schedule.pipeline_version", "version"],
  ["schedule.display_name", "displayName"],
  ["schedule.trigger", "kind"],
  ["schedule.cron", "cron"],
  ["schedule.time_zone", "timeZone"],
  ["schedule.interval", "every"],
  ["schedule.once", "onceAt"],
  ["schedule.start_time", "startTime"],
  ["schedule.end_time", "endTime"],
  ["schedule.max_runs", "maxRuns"],
  ["schedule.overlap_policy", "overlapPolicy"],
  ["schedule.catchup_policy", "catchupPolicy"],
  ["schedule.catchup_window", "catchupWindow"],
  ["schedule.jitter", "jitter"],
  ["schedule.retry", "retryMaxRetries"],
  ["schedule.retry.max_retries", "retryMaxRetries"],
  ["schedule.retry.initial_backoff", "retryInitialBackoff"],
  ["schedule.retry.backoff_multiplier", "retryMultiplier"],
  ["schedule.retry.max_backoff", "retryMaxBackoff"],
  ["schedule.paused", "paused"],
  ["schedule.parameters", "parameters"],
];

function fieldOfPath(path: string): FieldKey | null {
  let best: FieldKey | null = null;
  let bestLength = -1;
  for (const [prefix, key] of VIOLATION_FIELDS) {
    const matches =
      path === prefix || path.startsWith(`${prefix}.`) || path.startsWith(`${prefix}[`);
    if (matches && prefix.length > bestLength) {
      best = key;
      bestLength = prefix.length;
    }
  }
  return best;
}

const ADVANCED: ReadonlySet<FieldKey> = new Set<FieldKey>([
  "catchupWindow",
  "jitter",
  "retryMaxRetries",
  "retryInitialBackoff",
  "retryMultiplier",
  "retryMaxBackoff",
]);

const OTHER_ZONE = "__other__";

function emptyState(pipelineId: string): FormState {
  return {
    scheduleId: "",
    pipelineId,
    version: "",
    displayName: "",
    kind: "cron",
    cron: "0 * * * *",
    timeZone: "UTC",
    every: { value: "", unit: "minutes" },
    onceAt: "",
    startTime: "",
    endTime: "",
    maxRuns: "",
    overlapPolicy: OverlapPolicy.UNSPECIFIED,
    catchupPolicy: CatchupPolicy.UNSPECIFIED,
    catchupWindow: { value: "", unit: "hours" },
    jitter: { value: "", unit: "seconds" },
    retryMaxRetries: "",
    retryInitialBackoff: { value: "", unit: "minutes" },
    retryMultiplier: "",
    retryMaxBackoff: { value: "", unit: "minutes" },
    paused: false,
    parameters: "{}",
  };
}

function stateOf(s: Schedule): FormState {
  const version = pinnedVersionOf(s);
  const retry = s.retry;
  return {
    scheduleId: idOf(s.name),
    pipelineId: pipelineIdOf(s),
    version: version === null ? "" : String(version),
    displayName: s.displayName,
    kind: s.trigger.case ?? "cron",
    cron: s.trigger.case === "cron" ? s.trigger.value.expression : "",
    timeZone: s.timeZone || "UTC",
    every: durationValue(s.trigger.case === "interval" ? s.trigger.value.every : undefined),
    onceAt: s.trigger.case === "once" ? localInputOfTimestamp(s.trigger.value.at) : "",
    startTime: localInputOfTimestamp(s.startTime),
    endTime: localInputOfTimestamp(s.endTime),
    maxRuns: s.maxRuns === 0n ? "" : String(s.maxRuns),
    overlapPolicy: s.overlapPolicy,
    catchupPolicy: s.catchupPolicy,
    catchupWindow: durationValue(s.catchupWindow, "hours"),
    jitter: durationValue(s.jitter, "seconds"),
    retryMaxRetries: retry && retry.maxRetries !== 0 ? String(retry.maxRetries) : "",
    retryInitialBackoff: durationValue(retry?.initialBackoff),
    retryMultiplier: retry && retry.backoffMultiplier !== 0 ? String(retry.backoffMultiplier) : "",
    retryMaxBackoff: durationValue(retry?.maxBackoff),
    paused: s.paused,
    parameters: JSON.stringify(parametersJson(s.parameters), null, 2),
  };
}

function pipelineIdFrom(text: string): string {
  const t = text.trim();
  return t.startsWith("pipelines/") ? t.slice("pipelines/".length) : t;
}

/** The Schedule the form describes, and the problems found before sending anything. */
function build(state: FormState): { schedule: Schedule; errors: Map<FieldKey, string> } {
  const errors = new Map<FieldKey, string>();
  const schedule = create(ScheduleSchema, {});
  const pipelineId = pipelineIdFrom(state.pipelineId);
  if (!pipelineId) errors.set("pipelineId", "The pipeline id is required.");
  const version = state.version.trim();
  if (version && !/^[1-9]\d*$/.test(version)) errors.set("version", "A version is a number: 1, 2, 3…");
  schedule.pipeline = pipelineId ? `pipelines/${pipelineId}` : "";
  schedule.pipelineVersion = version && pipelineId ? `pipelines/${pipelineId}/versions/${version}` : "";
  schedule.displayName = state.displayName;

  if (state.kind === "cron") {
    schedule.trigger = { case: "cron", value: { $typeName: "raypipe.v1.CronTrigger", expression: state.cron.trim() } };
    schedule.timeZone = state.timeZone.trim();
  } else if (state.kind === "interval") {
    const every = parseDuration(state.every);
    if (every === undefined) errors.set("every", "The interval is required.");
    else if (typeof every === "string") errors.set("every", every);
    else schedule.trigger = { case: "interval", value: { $typeName: "raypipe.v1.IntervalTrigger", every } };
  } else {
    const at = parseLocalInput(state.onceAt);
    if (at === undefined) errors.set("onceAt", "The time of the one-time fire is required.");
    else if (typeof at === "string") errors.set("onceAt", at);
    else schedule.trigger = { case: "once", value: { $typeName: "raypipe.v1.OnceTrigger", at } };
  }

  for (const key of ["startTime", "endTime"] as const) {
    const ts = parseLocalInput(state[key]);
    if (typeof ts === "string") errors.set(key, ts);
    else if (key === "startTime") schedule.startTime = ts;
    else schedule.endTime = ts;
  }
  const maxRuns = state.maxRuns.trim();
  if (maxRuns && !/^-?\d+$/.test(maxRuns)) errors.set("maxRuns", "A whole number of runs (0 or empty: no limit).");
  else schedule.maxRuns = maxRuns ? BigInt(maxRuns) : 0n;
  schedule.overlapPolicy = state.overlapPolicy;
  schedule.catchupPolicy = state.catchupPolicy;

  for (const key of ["catchupWindow", "jitter"] as const) {
    const d = parseDuration(state[key]);
    if (typeof d === "string") errors.set(key, d);
    else if (key === "catchupWindow") schedule.catchupWindow = d;
    else schedule.jitter = d;
  }

  const retry = create(ScheduleRetryPolicySchema, {});
  let retrySet = false;
  const maxRetries = state.retryMaxRetries.trim();
  if (maxRetries) {
    if (!/^-?\d+$/.test(maxRetries)) errors.set("retryMaxRetries", "A whole number of retries.");
    else retry.maxRetries = Number(maxRetries);
    retrySet = true;
  }
  const multiplier = state.retryMultiplier.trim();
  if (multiplier) {
    const m = Number(multiplier);
    if (!Number.isFinite(m)) errors.set("retryMultiplier", `"${multiplier}" is not a number`);
    else retry.backoffMultiplier = m;
    retrySet = true;
  }
  for (const key of ["retryInitialBackoff", "retryMaxBackoff"] as const) {
    const d = parseDuration(state[key]);
    if (typeof d === "string") errors.set(key, d);
    else if (d) {
      if (key === "retryInitialBackoff") retry.initialBackoff = d;
      else retry.maxBackoff = d;
      retrySet = true;
    }
  }
  schedule.retry = retrySet ? retry : undefined;
  schedule.paused = state.paused;

  const params = parseParameters(state.parameters);
  if (typeof params === "string") errors.set("parameters", `Parameters ${params}`);
  else schedule.parameters = parametersOf(params);
  return { schedule, errors };
}

/** Whether two datetime-local values name the same instant ("…T10:00" and "…T10:00:00" do). */
function sameTime(a: string, b: string): boolean {
  if (a.trim() === b.trim()) return true;
  const x = new Date(a.trim()).getTime();
  const y = new Date(b.trim()).getTime();
  return Number.isFinite(x) && x === y;
}

function sameDuration(a: DurationValue, b: DurationValue): boolean {
  return a.value.trim() === b.value.trim() && (a.value.trim() === "" || a.unit === b.unit);
}

/** The update_mask paths of what changed between the schedule as read and the form. */
function changedPaths(initial: FormState, state: FormState): string[] {
  const paths: string[] = [];
  const pipelineChanged = pipelineIdFrom(initial.pipelineId) !== pipelineIdFrom(state.pipelineId);
  const versionChanged = initial.version.trim() !== state.version.trim();
  if (pipelineChanged) paths.push("pipeline");
  if (versionChanged || (pipelineChanged && state.version.trim() !== "")) paths.push("pipeline_version");
  if (initial.displayName !== state.displayName) paths.push("display_name");
  const triggerChanged =
    initial.kind !== state.kind ||
    (state.kind === "cron" && initial.cron.trim() !== state.cron.trim()) ||
    (state.kind === "interval" && !sameDuration(initial.every, state.every)) ||
    (state.kind === "once" && !sameTime(initial.onceAt, state.onceAt));
  if (triggerChanged) paths.push(state.kind);
  if (state.kind === "cron" && initial.timeZone.trim() !== state.timeZone.trim()) paths.push("time_zone");
  if (!sameTime(initial.startTime, state.startTime)) paths.push("start_time");
  if (!sameTime(initial.endTime, state.endTime)) paths.push("end_time");
  if (initial.maxRuns.trim() !== state.maxRuns.trim()) paths.push("max_runs");
  if (initial.overlapPolicy !== state.overlapPolicy) paths.push("overlap_policy");
  if (initial.catchupPolicy !== state.catchupPolicy) paths.push("catchup_policy");
  if (!sameDuration(initial.catchupWindow, state.catchupWindow)) paths.push("catchup_window");
  if (!sameDuration(initial.jitter, state.jitter)) paths.push("jitter");
  if (
    initial.retryMaxRetries.trim() !== state.retryMaxRetries.trim() ||
    initial.retryMultiplier.trim() !== state.retryMultiplier.trim() ||
    !sameDuration(initial.retryInitialBackoff, state.retryInitialBackoff) ||
    !sameDuration(initial.retryMaxBackoff, state.retryMaxBackoff)
  ) {
    paths.push("retry");
  }
  if (initial.parameters.trim() !== state.parameters.trim()) paths.push("parameters");
  return paths;
}

export interface ScheduleFormProps {
  /** Edit this schedule (UpdateSchedule with its etag); create a new one when absent. */
  readonly schedule?: Schedule;
  /** The pipeline id a new schedule starts with. */
  readonly initialPipeline?: string;
  readonly onSaved: (schedule: Schedule) => void;
  readonly onCancel: () => void;
}

export function ScheduleForm(props: ScheduleFormProps) {
  const editing = props.schedule;
  const uid = useId();
  const fid = (key: string) => `${uid}-${key}`;
  const initial = useMemo(
    () => (editing ? stateOf(editing) : emptyState(props.initialPipeline ?? "")),
    // The form starts from the schedule as it was read when it opened.
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [],
  );
  const [state, setState] = useState<FormState>(initial);
  const [clientErrors, setClientErrors] = useState<Map<FieldKey, string>>(new Map());
  const [error, setError] = useState<ShownError | null>(null);
  const [notice, setNotice] = useState("");
  const [busy, setBusy] = useState(false);
  const zones = timeZones();
  const [otherZone, setOtherZone] = useState(!zones.includes(initial.timeZone));
  const [advancedOpen, setAdvancedOpen] = useState(
    [...ADVANCED].some((k) => {
      const v = initial[k];
      return typeof v === "string" ? v.trim() !== "" : (v as DurationValue).value.trim() !== "";
    }),
  );
  const formRef = useRef<HTMLFormElement>(null);
  const [attempt, setAttempt] = useState(0);

  const set = <K extends FieldKey>(key: K, value: FormState[K]) => {
    setState((s) => ({ ...s, [key]: value }));
    setClientErrors((errs) => {
      if (!errs.has(key)) return errs;
      const next = new Map(errs);
      next.delete(key);
      return next;
    });
  };

  // The fields on screen: a violation of a hidden one goes in the banner.
  const visible = new Set<FieldKey>([
    "pipelineId",
    "version",
    "displayName",
    "kind",
    "startTime",
    "endTime",
    "maxRuns",
    "overlapPolicy",
    "catchupPolicy",
    "paused",
    "parameters",
    ...ADVANCED,
  ]);
  if (!editing) visible.add("scheduleId");
  if (state.kind === "cron") {
    visible.add("cron");
    visible.add("timeZone");
  } else if (state.kind === "interval") {
    visible.add("every");
  } else {
    visible.add("onceAt");
  }

  const serverErrors = new Map<FieldKey, string>();
  const unmatched = [];
  for (const v of error?.violations ?? []) {
    const key = fieldOfPath(v.field);
    if (key && visible.has(key)) {
      const before = serverErrors.get(key);
      serverErrors.set(key, before ? `${before}; ${v.description}` : v.description);
    } else {
      unmatched.push(v);
    }
  }
  // NOT_FOUND and FAILED_PRECONDITION about the pipeline carry no violation: shown there too.
  if (error?.reason === "PIPELINE_NOT_FOUND" || error?.reason === "PIPELINE_HAS_NO_VERSION") {
    serverErrors.set("pipelineId", error.message);
  } else if (error?.reason === "PIPELINE_VERSION_NOT_FOUND") {
    serverErrors.set("version", error.message);
  }
  const matched = (error?.violations.length ?? 0) - unmatched.length;
  const banner: ShownError | null =
    error && error.violations.length > 0
      ? {
          ...error,
          message:
            matched > 0
              ? `${matched} ${matched === 1 ? "problem is" : "problems are"} marked on the fields below.` +
                (unmatched.length > 0 ? " Also:" : "")
              : error.message,
          violations: unmatched,
        }
      : error;

  const errorOf = (key: FieldKey): string | undefined => clientErrors.get(key) ?? serverErrors.get(key);

  useEffect(() => {
    if ([...serverErrors.keys(), ...clientErrors.keys()].some((k) => ADVANCED.has(k))) setAdvancedOpen(true);
    // Focus the first field with a problem after a failed submit.
    const first = formRef.current?.querySelector<HTMLElement>('[aria-invalid="true"]');
    first?.focus();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [attempt]);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setNotice("");
    const built = build(state);
    setClientErrors(built.errors);
    if (built.errors.size > 0) {
      setError(null);
      setAttempt((a) => a + 1);
      return;
    }
    let paths: string[] = [];
    if (editing) {
      paths = changedPaths(initial, state);
      if (paths.length === 0) {
        setError(null);
        setNotice("Nothing changed: there is nothing to save.");
        return;
      }
      built.schedule.name = editing.name;
      built.schedule.etag = editing.etag;
    }
    setBusy(true);
    try {
      const response = editing
        ? await client.schedules.updateSchedule({ schedule: built.schedule, updateMask: { paths } })
        : await client.schedules.createSchedule({ schedule: built.schedule, scheduleId: state.scheduleId.trim() });
      setError(null);
      if (response.schedule) props.onSaved(response.schedule);
    } catch (err) {
      setError(shownError(err));
      setAttempt((a) => a + 1);
    } finally {
      setBusy(false);
    }
  }

  /** The props that tie a control to its error and hint. */
  const aria = (key: FieldKey, hint = false) => {
    const describedBy = [errorOf(key) ? fid(`${key}-error`) : "", hint ? fid(`${key}-hint`) : ""]
      .filter(Boolean)
      .join(" ");
    return {
      id: fid(key),
      "aria-invalid": errorOf(key) ? (true as const) : undefined,
      "aria-describedby": describedBy || undefined,
    };
  };

  const field = (key: FieldKey, label: string, control: ReactNode, hint?: ReactNode) => (
    <div className="field sched-field">
      <label htmlFor={fid(key)}>{label}</label>
      {control}
      {hint && (
        <span className="hint" id={fid(`${key}-hint`)}>
          {hint}
        </span>
      )}
      <FieldError id={fid(`${key}-error`)} message={errorOf(key)} />
    </div>
  );

  const duration = (key: "every" | "catchupWindow" | "jitter" | "retryInitialBackoff" | "retryMaxBackoff", label: string, hint?: string) =>
    field(
      key,
      label,
      <div className="sched-duration">
        <input
          type="number"
          min="0"
          step="any"
          inputMode="decimal"
          value={state[key].value}
          onChange={(e) => set(key, { ...state[key], value: e.target.value })}
          {...aria(key, Boolean(hint))}
        />
        <select
          aria-label={`${label} unit`}
          value={state[key].unit}
          onChange={(e) => set(key, { ...state[key], unit: e.target.value as DurationUnit })}
        >
          {DURATION_UNITS.map((u) => (
            <option key={u.unit} value={u.unit}>
              {u.label}
            </option>
          ))}
        </select>
      </div>,
      hint,
    );

  const localZone = browserTimeZone();
  const overlapHint = OVERLAP_OPTIONS.find((o) => o.value === state.overlapPolicy)?.hint;
  const catchupHint = CATCHUP_OPTIONS.find((o) => o.value === state.catchupPolicy)?.hint;
  const kindError = errorOf("kind");

  return (
    <form
      ref={formRef}
      className="sched-form panel"
      data-testid="schedule-form"
      aria-label={editing ? `Edit schedule ${idOf(editing.name)}` : "New schedule"}
      onSubmit={submit}
      noValidate
    >
      <h2>{editing ? `Edit schedule ${idOf(editing.name)}` : "New schedule"}</h2>
      <ErrorBanner error={banner} title={editing ? "The schedule was not saved" : "The schedule was not created"} />

      <fieldset className="sched-group">
        <legend>What to run</legend>
        <div className="sched-grid">
          {!editing &&
            field(
              "scheduleId",
              "Schedule id (optional)",
              <input
                type="text"
                value={state.scheduleId}
                onChange={(e) => set("scheduleId", e.target.value)}
                placeholder="chosen by the server"
                autoComplete="off"
                {...aria("scheduleId", true)}
              />,
              "Lowercase letters, digits and hyphens, starting with a letter.",
            )}
          {field(
            "pipelineId",
            "Pipeline id",
            <input
              type="text"
              value={state.pipelineId}
              onChange={(e) => set("pipelineId", e.target.value)}
              aria-required="true"
              autoComplete="off"
              list={fid("pipelines")}
              {...aria("pipelineId")}
            />,
          )}
          <PipelineSuggestions id={fid("pipelines")} />
          {field(
            "version",
            "Version",
            <input
              type="number"
              min="1"
              step="1"
              value={state.version}
              onChange={(e) => set("version", e.target.value)}
              placeholder="default version"
              {...aria("version", true)}
            />,
            state.version.trim()
              ? `Every fire runs exactly version ${state.version.trim()}.`
              : "Empty: each fire runs the pipeline's default version as of that fire.",
          )}
          {field(
            "displayName",
            "Display name",
            <input
              type="text"
              value={state.displayName}
              onChange={(e) => set("displayName", e.target.value)}
              autoComplete="off"
              {...aria("displayName")}
            />,
          )}
        </div>
      </fieldset>

      <fieldset className="sched-group">
        <legend>When</legend>
        <div
          role="radiogroup"
          aria-label="Trigger"
          className="row sched-kinds"
          id={fid("kind")}
          aria-invalid={kindError ? true : undefined}
          aria-describedby={kindError ? fid("kind-error") : undefined}
        >
          <span className="sched-kinds-label" aria-hidden="true">
            Trigger:
          </span>
          {(
            [
              ["cron", "Cron"],
              ["interval", "Interval"],
              ["once", "One-time"],
            ] as const
          ).map(([kind, label]) => (
            <label className="inline" key={kind}>
              <input
                type="radio"
                name={fid("kind-radio")}
                value={kind}
                checked={state.kind === kind}
                onChange={() => set("kind", kind)}
              />
              {label}
            </label>
          ))}
        </div>
        <FieldError id={fid("kind-error")} message={kindError} />
        <div className="sched-grid">
          {state.kind === "cron" && (
            <>
              {field(
                "cron",
                "Cron expression",
                <input
                  type="text"
                  className="mono"
                  value={state.cron}
                  onChange={(e) => set("cron", e.target.value)}
                  autoComplete="off"
                  spellCheck={false}
                  {...aria("cron", true)}
                />,
                "5 fields: minute hour day-of-month month day-of-week (such as 30 2 * * 1-5), or @hourly, @daily, @weekly, @monthly, @yearly.",
              )}
              <div className="field sched-field">
                <label htmlFor={fid("timeZone")}>Time zone</label>
                <select
                  value={otherZone ? OTHER_ZONE : state.timeZone}
                  onChange={(e) => {
                    if (e.target.value === OTHER_ZONE) {
                      setOtherZone(true);
                    } else {
                      setOtherZone(false);
                      set("timeZone", e.target.value);
                    }
                  }}
                  {...(otherZone
                    ? { id: fid("timeZone") }
                    : aria("timeZone", true))}
                >
                  {zones.map((z) => (
                    <option key={z} value={z}>
                      {z}
                    </option>
                  ))}
                  <option value={OTHER_ZONE}>Other…</option>
                </select>
                {otherZone && (
                  <>
                    <label htmlFor={fid("timeZone-other")} className="sched-sublabel">
                      Time zone name
                    </label>
                    <input
                      type="text"
                      value={state.timeZone}
                      onChange={(e) => set("timeZone", e.target.value)}
                      placeholder="an IANA name, such as Europe/Berlin"
                      autoComplete="off"
                      spellCheck={false}
                      {...aria("timeZone", true)}
                      id={fid("timeZone-other")}
                    />
                  </>
                )}
                <span className="hint" id={fid("timeZone-hint")}>
                  The cron expression's wall-clock times are in this zone.
                </span>
                <FieldError id={fid("timeZone-error")} message={errorOf("timeZone")} />
              </div>
            </>
          )}
          {state.kind === "interval" &&
            duration("every", "Every", "Elapsed time between fires, anchored at the start time (default: creation); at least 1 second.")}
          {state.kind === "once" &&
            field(
              "onceAt",
              "At",
              <input
                type="datetime-local"
                step="1"
                value={state.onceAt}
                onChange={(e) => set("onceAt", e.target.value)}
                {...aria("onceAt", true)}
              />,
              `In your browser's time zone (${localZone}); must be in the future.`,
            )}
        </div>
        <div className="sched-grid">
          {field(
            "startTime",
            "Start time (optional)",
            <input
              type="datetime-local"
              step="1"
              value={state.startTime}
              onChange={(e) => set("startTime", e.target.value)}
              {...aria("startTime", true)}
            />,
            `No fire before it (${localZone}).`,
          )}
          {field(
            "endTime",
            "End time (optional)",
            <input
              type="datetime-local"
              step="1"
              value={state.endTime}
              onChange={(e) => set("endTime", e.target.value)}
              {...aria("endTime", true)}
            />,
            `No fire after it (${localZone}).`,
          )}
          {field(
            "maxRuns",
            "Max runs",
            <input
              type="number"
              min="0"
              step="1"
              value={state.maxRuns}
              onChange={(e) => set("maxRuns", e.target.value)}
              placeholder="no limit"
              {...aria("maxRuns", true)}
            />,
            "Stop after this many runs were started by fires; empty or 0: no limit.",
          )}
        </div>
      </fieldset>

      <fieldset className="sched-group">
        <legend>Policies</legend>
        <div className="sched-grid">
          {field(
            "overlapPolicy",
            "Overlap policy",
            <select
              value={state.overlapPolicy}
              onChange={(e) => set("overlapPolicy", Number(e.target.value) as OverlapPolicy)}
              {...aria("overlapPolicy", true)}
            >
              {OVERLAP_OPTIONS.map((o) => (
                <option key={o.value} value={o.value}>
                  {o.label}
                </option>
              ))}
            </select>,
            overlapHint,
          )}
          {field(
            "catchupPolicy",
            "Catch-up policy",
            <select
              value={state.catchupPolicy}
              onChange={(e) => set("catchupPolicy", Number(e.target.value) as CatchupPolicy)}
              {...aria("catchupPolicy", true)}
            >
              {CATCHUP_OPTIONS.map((o) => (
                <option key={o.value} value={o.value}>
                  {o.label}
                </option>
              ))}
            </select>,
            catchupHint,
          )}
          <div className="field sched-field">
            <label className="inline">
              <input
                type="checkbox"
                checked={state.paused}
                disabled={Boolean(editing)}
                onChange={(e) => set("paused", e.target.checked)}
                {...aria("paused", true)}
              />
              {editing ? "Paused" : "Create paused"}
            </label>
            <span className="hint" id={fid("paused-hint")}>
              {editing
                ? "Change it with Pause and Resume on the schedule's page."
                : "A paused schedule fires once it is resumed."}
            </span>
            <FieldError id={fid("paused-error")} message={errorOf("paused")} />
          </div>
        </div>
        <details open={advancedOpen} onToggle={(e) => setAdvancedOpen((e.target as HTMLDetailsElement).open)}>
          <summary>Catch-up window, jitter and retries</summary>
          <div className="sched-grid">
            {duration("catchupWindow", "Catch-up window", "How far back the ALL catch-up policy reaches; default one hour.")}
            {duration("jitter", "Jitter", "Delays each fire by a deterministic amount below this; default none.")}
            {field(
              "retryMaxRetries",
              "Retries of a failed run",
              <input
                type="number"
                min="0"
                step="1"
                value={state.retryMaxRetries}
                onChange={(e) => set("retryMaxRetries", e.target.value)}
                placeholder="none"
                {...aria("retryMaxRetries")}
              />,
            )}
            {duration("retryInitialBackoff", "Initial backoff", "Delay before the first retry; default one minute.")}
            {field(
              "retryMultiplier",
              "Backoff multiplier",
              <input
                type="number"
                min="1"
                step="any"
                value={state.retryMultiplier}
                onChange={(e) => set("retryMultiplier", e.target.value)}
                placeholder="2"
                {...aria("retryMultiplier", true)}
              />,
              "At least 1; empty means 2.",
            )}
            {duration("retryMaxBackoff", "Max backoff", "Upper bound of one delay; empty: none.")}
          </div>
        </details>
      </fieldset>

      {field(
        "parameters",
        "Parameters (JSON object)",
        <textarea
          rows={5}
          value={state.parameters}
          onChange={(e) => set("parameters", e.target.value)}
          spellCheck={false}
          {...aria("parameters", true)}
        />,
        'Run parameters for every run, such as {"pause": 0.5}; each must be declared by the pipeline version.',
      )}

      {notice && (
        <p className="notice" role="status">
          {notice}
        </p>
      )}
      <div className="row">
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Saving…" : editing ? "Save changes" : "Create schedule"}
        </button>
        <button type="button" onClick={props.onCancel} disabled={busy}>
          Cancel
        </button>
      </div>
    </form>
  );
}

export function FieldError({ id, message }: { id: string; message: string | undefined }) {
  if (!message) return null;
  return (
    <span className="field-error" id={id}>
      {message}
    </span>
  );
}

/** The first page of pipelines as suggestions for the pipeline id (never every page). */
function PipelineSuggestions({ id }: { id: string }) {
  const [ids, setIds] = useState<string[]>([]);
  useEffect(() => {
    const controller = new AbortController();
    client.pipelines.listPipelines({ pageSize: 100 }, { signal: controller.signal }).then(
      (response) => setIds(response.pipelines.map((p) => idOf(p.name))),
      () => undefined, // suggestions only: the field works without them
    );
    return () => controller.abort();
  }, []);
  return (
    <datalist id={id}>
      {ids.map((p) => (
        <option key={p} value={p} />
      ))}
    </datalist>
  );
}
