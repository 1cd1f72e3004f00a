// /schedules/:scheduleId: one schedule (GetSchedule) with every field, and what can be done
// with it: Pause/Resume (with a note), Trigger now, Backfill, Edit (UpdateSchedule through the
// shared form), Delete (DeleteSchedule with the etag read) and its runs (/runs?schedule=ID).
import type { Run, Schedule as ScheduleMessage } from "@raypipe/client/web";
import { useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { client, shownError, type ShownError } from "../api";
import { ConfirmDialog, ErrorBanner, Loading, useLoad } from "../components/common";
import { formatNumber, idOf } from "../format";
import { BackfillForm } from "./schedule/BackfillForm";
import { PipelineOf, RunLink, ScheduleState, Time } from "./schedule/parts";
import { ScheduleForm } from "./schedule/ScheduleForm";
import { catchupLabel, formatEvery, formatSpan, overlapLabel, parametersJson, triggerSummary } from "./schedule/util";

export function SchedulePage() {
  const { scheduleId = "" } = useParams();
  const name = `schedules/${scheduleId}`;
  const navigate = useNavigate();
  const loaded = useLoad(
    async (signal) => (await client.schedules.getSchedule({ name }, { signal })).schedule ?? null,
    [name],
  );
  const [editing, setEditing] = useState<ScheduleMessage | null>(null);
  const [note, setNote] = useState("");
  const [busy, setBusy] = useState(false);
  const [actionError, setActionError] = useState<{ title: string; error: ShownError } | null>(null);
  const [triggered, setTriggered] = useState<Run | null>(null);
  const [message, setMessage] = useState("");
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [showBackfill, setShowBackfill] = useState(false);

  const schedule = loaded.data;

  if (loaded.error?.code === "NOT_FOUND") {
    return (
      <section className="sched-page">
        <h1>Schedule {scheduleId}</h1>
        <div className="notice" role="alert" data-testid="schedule-not-found">
          <strong>Schedule not found.</strong> There is no schedule <code>{name}</code>: it was deleted or never
          existed. <Link to="/schedules">All schedules</Link>
        </div>
      </section>
    );
  }
  if (!schedule) {
    return (
      <section className="sched-page">
        <h1>Schedule {scheduleId}</h1>
        {loaded.error ? (
          <>
            <ErrorBanner error={loaded.error} title="Reading the schedule failed" />
            <button type="button" onClick={loaded.reload}>
              Try again
            </button>
          </>
        ) : (
          <Loading what="the schedule" />
        )}
      </section>
    );
  }

  async function act(what: "pause" | "resume" | "trigger" | "delete") {
    if (!schedule) return;
    setBusy(true);
    setActionError(null);
    setMessage("");
    try {
      if (what === "pause") {
        await client.schedules.pauseSchedule({ name: schedule.name, note });
        setMessage("Paused.");
        setNote("");
      } else if (what === "resume") {
        const response = await client.schedules.resumeSchedule({ name: schedule.name, note });
        setMessage(response.schedule?.nextFireTime ? "Resumed: it fires again from its next fire time." : "Resumed.");
        setNote("");
      } else if (what === "trigger") {
        const response = await client.schedules.triggerSchedule({ name: schedule.name });
        setTriggered(response.run ?? null);
      } else {
        await client.schedules.deleteSchedule({ name: schedule.name, etag: schedule.etag });
        setConfirmDelete(false);
        navigate("/schedules");
        return;
      }
      loaded.reload();
    } catch (err) {
      setConfirmDelete(false);
      const title = { pause: "Pausing", resume: "Resuming", trigger: "Triggering", delete: "Deleting" }[what];
      setActionError({ title: `${title} the schedule failed`, error: shownError(err) });
    } finally {
      setBusy(false);
    }
  }

  const id = idOf(schedule.name);
  const retry = schedule.retry;
  const params = parametersJson(schedule.parameters);

  return (
    <section className="sched-page">
      <div className="row">
        <h1>
          Schedule {id}
          {schedule.displayName && <span className="muted"> — {schedule.displayName}</span>}
        </h1>
        <ScheduleState schedule={schedule} />
        <span className="spacer" />
        <Link to={`/runs?schedule=${encodeURIComponent(id)}`} className="button">
          Runs of this schedule
        </Link>
        <button type="button" onClick={loaded.reload} disabled={loaded.loading}>
          Refresh
        </button>
      </div>
      <p className="muted">
        <Link to="/schedules">All schedules</Link>
      </p>

      <div className="row sched-toolbar" role="group" aria-label="Schedule actions">
        <label className="inline" htmlFor="sched-note">
          Note
        </label>
        <input
          id="sched-note"
          type="text"
          value={note}
          onChange={(e) => setNote(e.target.value)}
          placeholder={schedule.paused ? "why resume (optional)" : "why pause (optional)"}
          autoComplete="off"
        />
        {schedule.paused ? (
          <button type="button" onClick={() => act("resume")} disabled={busy}>
            Resume
          </button>
        ) : (
          <button type="button" onClick={() => act("pause")} disabled={busy}>
            Pause
          </button>
        )}
        <button type="button" onClick={() => act("trigger")} disabled={busy}>
          Trigger now
        </button>
        <button
          type="button"
          onClick={() => setShowBackfill((v) => !v)}
          aria-expanded={showBackfill}
          aria-controls="sched-backfill"
        >
          Backfill…
        </button>
        <button
          type="button"
          onClick={() => {
            setMessage("");
            setEditing(schedule);
          }}
          disabled={busy || editing !== null}
        >
          Edit
        </button>
        <button type="button" className="danger" onClick={() => setConfirmDelete(true)} disabled={busy}>
          Delete
        </button>
      </div>

      {actionError && <ErrorBanner error={actionError.error} title={actionError.title} />}
      {loaded.error && <ErrorBanner error={loaded.error} title="Refreshing the schedule failed" />}
      {message && (
        <p className="notice" role="status">
          {message}
        </p>
      )}
      {triggered && (
        <p className="notice" role="status" data-testid="triggered-run">
          Started run <RunLink run={triggered} /> (scheduled time <Time ts={triggered.scheduledTime} />
          ).
        </p>
      )}

      {editing && (
        <ScheduleForm
          key={editing.etag}
          schedule={editing}
          onCancel={() => setEditing(null)}
          onSaved={() => {
            setEditing(null);
            setMessage("Saved.");
            loaded.reload();
          }}
        />
      )}

      {showBackfill && (
        <div id="sched-backfill">
          <BackfillForm schedule={schedule} onDone={loaded.reload} />
        </div>
      )}

      <div className="grid2 sched-details">
        <div className="panel">
          <h2>Trigger</h2>
          <dl className="kv">
            <dt>Trigger</dt>
            <dd data-testid="trigger-summary">{triggerSummary(schedule)}</dd>
            {schedule.trigger.case === "cron" && (
              <>
                <dt>Cron expression</dt>
                <dd>
                  <code>{schedule.trigger.value.expression}</code>
                </dd>
              </>
            )}
            {schedule.trigger.case === "interval" && (
              <>
                <dt>Interval</dt>
                <dd>
                  {formatEvery(schedule.trigger.value.every)} (anchored at the start time, or the creation time)
                </dd>
              </>
            )}
            {schedule.trigger.case === "once" && (
              <>
                <dt>Fires once at</dt>
                <dd>
                  <Time ts={schedule.trigger.value.at} />
                </dd>
              </>
            )}
            <dt>Time zone</dt>
            <dd data-testid="time-zone">
              {schedule.timeZone || "UTC"}
              {!schedule.timeZone && <span className="muted"> (default)</span>}
              {schedule.trigger.case !== "cron" && <span className="muted"> (used by cron triggers only)</span>}
            </dd>
            <dt>Next fire time</dt>
            <dd data-testid="next-fire-time">
              <Time ts={schedule.nextFireTime} none="none: it will not fire again" />
              {schedule.paused && schedule.nextFireTime && <span className="muted"> (paused: it does not fire)</span>}
            </dd>
            <dt>Last fire time</dt>
            <dd data-testid="last-fire-time">
              <Time ts={schedule.lastFireTime} none="never fired" />
            </dd>
            <dt>Runs started</dt>
            <dd data-testid="runs-started">
              {formatNumber(Number(schedule.runsStarted))}
              {schedule.maxRuns > 0n && <span className="muted"> of at most {formatNumber(Number(schedule.maxRuns))}</span>}
            </dd>
            <dt>Start time</dt>
            <dd>
              <Time ts={schedule.startTime} none="— (from creation)" />
            </dd>
            <dt>End time</dt>
            <dd>
              <Time ts={schedule.endTime} none="— (no end)" />
            </dd>
            <dt>Max runs</dt>
            <dd>{schedule.maxRuns > 0n ? formatNumber(Number(schedule.maxRuns)) : "no limit"}</dd>
          </dl>
        </div>
        <div className="panel">
          <h2>Settings</h2>
          <dl className="kv">
            <dt>Name</dt>
            <dd>
              <code>{schedule.name}</code>
            </dd>
            <dt>Display name</dt>
            <dd>{schedule.displayName || <span className="muted">—</span>}</dd>
            <dt>Pipeline</dt>
            <dd>
              <PipelineOf schedule={schedule} />
            </dd>
            <dt>State</dt>
            <dd data-testid="schedule-state">
              <ScheduleState schedule={schedule} />
            </dd>
            <dt>Pause note</dt>
            <dd data-testid="pause-note">{schedule.pauseNote || <span className="muted">—</span>}</dd>
            <dt>Overlap policy</dt>
            <dd>{overlapLabel(schedule.overlapPolicy)}</dd>
            <dt>Catch-up policy</dt>
            <dd>{catchupLabel(schedule.catchupPolicy)}</dd>
            <dt>Catch-up window</dt>
            <dd>{formatSpan(schedule.catchupWindow, "default (1 h)")}</dd>
            <dt>Catch-up note</dt>
            <dd data-testid="catchup-note">{schedule.catchupNote || <span className="muted">—</span>}</dd>
            <dt>Jitter</dt>
            <dd>{formatSpan(schedule.jitter, "none")}</dd>
            <dt>Retries</dt>
            <dd>
              {retry && retry.maxRetries > 0 ? (
                <>
                  {retry.maxRetries} {retry.maxRetries === 1 ? "retry" : "retries"}, first after{" "}
                  {formatSpan(retry.initialBackoff, "1 min (default)")}, ×{retry.backoffMultiplier || 2} each time
                  {retry.maxBackoff && formatSpan(retry.maxBackoff, "") ? `, at most ${formatSpan(retry.maxBackoff)}` : ""}
                </>
              ) : (
                "none"
              )}
            </dd>
            <dt>Created</dt>
            <dd>
              <Time ts={schedule.createTime} />
              {schedule.creator && <span data-testid="schedule-creator"> by {schedule.creator}</span>}
            </dd>
            <dt>Updated</dt>
            <dd>
              <Time ts={schedule.updateTime} />
              {schedule.updater && <span data-testid="schedule-updater"> by {schedule.updater}</span>}
            </dd>
            <dt>Etag</dt>
            <dd>
              <code>{schedule.etag}</code>
            </dd>
          </dl>
        </div>
      </div>

      <div className="panel sched-params">
        <h2>Parameters</h2>
        {Object.keys(params).length === 0 ? (
          <p className="muted">None: runs take the version's defaults.</p>
        ) : (
          <pre data-testid="schedule-parameters">{JSON.stringify(params, null, 2)}</pre>
        )}
      </div>

      <ConfirmDialog
        open={confirmDelete}
        title={`Delete schedule ${id}?`}
        confirmLabel="Delete"
        onConfirm={() => act("delete")}
        onCancel={() => setConfirmDelete(false)}
      >
        <p>
          It stops firing and is removed; the runs it started are kept. The delete is refused if the schedule changed
          since this page read it.
        </p>
      </ConfirmDialog>
    </section>
  );
}
