// The backfill form of a schedule's page: a past range -> BackfillSchedule, then what it did
// (runs started or queued, fire times that already had a run, fire times the overlap skipped).
import type { BackfillScheduleResponse, Schedule } from "@raypipe/client/web";
import { useId, useState, type FormEvent } from "react";
import { client, shownError, violationsUnder, type ShownError } from "../../api";
import { ErrorBanner } from "../../components/common";
import { RunLink, Time } from "./parts";
import { FieldError } from "./ScheduleForm";
import { browserTimeZone, localInputOf, parseLocalInput } from "./util";

type Key = "start_time" | "end_time";

export function BackfillForm({ schedule, onDone }: { schedule: Schedule; onDone: () => void }) {
  const uid = useId();
  const [values, setValues] = useState<Record<Key, string>>(() => {
    const now = new Date();
    now.setSeconds(0, 0);
    return { start_time: localInputOf(new Date(now.getTime() - 24 * 3600 * 1000)), end_time: localInputOf(now) };
  });
  const [clientErrors, setClientErrors] = useState<Partial<Record<Key, string>>>({});
  const [error, setError] = useState<ShownError | null>(null);
  const [result, setResult] = useState<BackfillScheduleResponse | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    const errors: Partial<Record<Key, string>> = {};
    const start = parseLocalInput(values.start_time);
    const end = parseLocalInput(values.end_time);
    if (start === undefined) errors.start_time = "The start of the range is required.";
    else if (typeof start === "string") errors.start_time = start;
    if (end === undefined) errors.end_time = "The end of the range is required.";
    else if (typeof end === "string") errors.end_time = end;
    setClientErrors(errors);
    if (Object.keys(errors).length > 0 || typeof start !== "object" || typeof end !== "object") return;
    setBusy(true);
    setResult(null);
    try {
      const response = await client.schedules.backfillSchedule({ name: schedule.name, startTime: start, endTime: end });
      setError(null);
      setResult(response);
      onDone();
    } catch (err) {
      setError(shownError(err));
    } finally {
      setBusy(false);
    }
  }

  const problem = (key: Key) =>
    clientErrors[key] ??
    (violationsUnder(error, key)
      .map((v) => v.description)
      .join("; ") ||
      undefined);
  const known = new Set<string>(["start_time", "end_time"]);
  const banner: ShownError | null =
    error && error.violations.length > 0
      ? {
          ...error,
          message: "The range was refused: see the fields.",
          violations: error.violations.filter((v) => !known.has(v.field)),
        }
      : error;

  const input = (key: Key, label: string, hint: string) => {
    const p = problem(key);
    return (
      <div className="field sched-field">
        <label htmlFor={`${uid}-${key}`}>{label}</label>
        <input
          id={`${uid}-${key}`}
          type="datetime-local"
          step="1"
          value={values[key]}
          onChange={(e) => setValues((v) => ({ ...v, [key]: e.target.value }))}
          aria-invalid={p ? true : undefined}
          aria-describedby={`${uid}-${key}-hint${p ? ` ${uid}-${key}-error` : ""}`}
        />
        <span className="hint" id={`${uid}-${key}-hint`}>
          {hint}
        </span>
        <FieldError id={`${uid}-${key}-error`} message={p} />
      </div>
    );
  };

  const runs = result?.runs ?? [];
  return (
    <form className="panel sched-backfill" data-testid="backfill-form" aria-label="Backfill" onSubmit={submit} noValidate>
      <h2>Backfill</h2>
      <p className="hint">
        Starts one run for each fire time of the trigger in a past range, honouring the overlap policy; fire times that
        already had a run are not started twice. Times are in your browser's time zone ({browserTimeZone()}).
      </p>
      <ErrorBanner error={banner} title="Backfill failed" />
      <div className="sched-grid">
        {input("start_time", "From (exclusive)", "The start of the range; a fire at exactly this time is not included.")}
        {input("end_time", "To (inclusive)", "The end of the range; not in the future.")}
      </div>
      <button type="submit" disabled={busy}>
        {busy ? "Backfilling…" : "Backfill"}
      </button>
      {result && (
        <div className="sched-backfill-result" role="status" data-testid="backfill-result">
          <p>
            <strong data-testid="backfill-run-count">
              {runs.length} {runs.length === 1 ? "run" : "runs"}
            </strong>{" "}
            started or queued; {result.existing.length} fire {result.existing.length === 1 ? "time" : "times"} already
            had a run; {result.skipped.length} skipped by the overlap policy.
          </p>
          {runs.length > 0 && (
            <ul>
              {runs.map((run, i) => (
                <li key={run.name || `queued-${i}`}>
                  <Time ts={run.scheduledTime} />: <RunLink run={run} />
                </li>
              ))}
            </ul>
          )}
          {result.existing.length > 0 && (
            <details>
              <summary>Fire times that already had a run</summary>
              <ul>
                {result.existing.map((t, i) => (
                  <li key={i}>
                    <Time ts={t} />
                  </li>
                ))}
              </ul>
            </details>
          )}
          {result.skipped.length > 0 && (
            <details>
              <summary>Fire times skipped by the overlap policy</summary>
              <ul>
                {result.skipped.map((t, i) => (
                  <li key={i}>
                    <Time ts={t} />
                  </li>
                ))}
              </ul>
            </details>
          )}
        </div>
      )}
    </form>
  );
}
