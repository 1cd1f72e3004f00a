// /schedules: every schedule, newest first, paged by the server (ListSchedules), optionally of
// one pipeline (?pipeline=ID). Each row pauses, resumes or triggers its schedule; "New
// schedule" opens the shared form (CreateSchedule).
import type { Run, Schedule } from "@raypipe/client/web";
import { useEffect, useState, type FormEvent } from "react";
import { Link, useSearchParams } from "react-router";
import { client, shownError, violationsUnder, type ShownError } from "../api";
import { ErrorBanner, Loading, Pager, useLoad, usePageTokens } from "../components/common";
import { formatNumber, idOf } from "../format";
import { PipelineOf, RunLink, ScheduleState, Time } from "./schedule/parts";
import { ScheduleForm } from "./schedule/ScheduleForm";
import { triggerSummary } from "./schedule/util";

const PAGE_SIZE = 25;

export function SchedulesPage() {
  const [params, setParams] = useSearchParams();
  const pipeline = (params.get("pipeline") ?? "").trim();
  const pipelineId = pipeline.startsWith("pipelines/") ? pipeline.slice("pipelines/".length) : pipeline;
  const pager = usePageTokens(pipelineId);
  const list = useLoad(
    (signal) =>
      client.schedules.listSchedules(
        { pageSize: PAGE_SIZE, pageToken: pager.token, pipeline: pipelineId ? `pipelines/${pipelineId}` : "" },
        { signal },
      ),
    [pager.token, pipelineId],
  );

  const [filterText, setFilterText] = useState(pipelineId);
  useEffect(() => setFilterText(pipelineId), [pipelineId]);
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState<Schedule | null>(null);
  const [busy, setBusy] = useState<ReadonlySet<string>>(new Set());
  const [triggered, setTriggered] = useState<ReadonlyMap<string, Run>>(new Map());
  const [actionError, setActionError] = useState<{ title: string; error: ShownError } | null>(null);

  function applyFilter(event: FormEvent) {
    event.preventDefault();
    const next = new URLSearchParams(params);
    const value = filterText.trim();
    if (value) next.set("pipeline", value.startsWith("pipelines/") ? value.slice("pipelines/".length) : value);
    else next.delete("pipeline");
    setParams(next);
  }

  function clearFilter() {
    const next = new URLSearchParams(params);
    next.delete("pipeline");
    setFilterText("");
    setParams(next);
  }

  async function act(schedule: Schedule, what: "pause" | "resume" | "trigger") {
    const id = idOf(schedule.name);
    setBusy((b) => new Set(b).add(schedule.name));
    setActionError(null);
    try {
      if (what === "pause") {
        await client.schedules.pauseSchedule({ name: schedule.name });
      } else if (what === "resume") {
        await client.schedules.resumeSchedule({ name: schedule.name });
      } else {
        const response = await client.schedules.triggerSchedule({ name: schedule.name });
        const run = response.run;
        if (run) setTriggered((t) => new Map(t).set(schedule.name, run));
      }
      list.reload();
    } catch (err) {
      const title = { pause: "Pausing", resume: "Resuming", trigger: "Triggering" }[what];
      setActionError({ title: `${title} schedule ${id} failed`, error: shownError(err) });
    } finally {
      setBusy((b) => {
        const next = new Set(b);
        next.delete(schedule.name);
        return next;
      });
    }
  }

  const filterProblem = violationsUnder(list.error, "pipeline")
    .map((v) => v.description)
    .join("; ");
  const schedules = list.data?.schedules ?? [];

  return (
    <section className="sched-page">
      <div className="row">
        <h1>Schedules</h1>
        <span className="spacer" />
        <button type="button" className="primary" onClick={() => setCreating(true)} disabled={creating}>
          New schedule
        </button>
      </div>

      {creating && (
        <ScheduleForm
          initialPipeline={pipelineId}
          onCancel={() => setCreating(false)}
          onSaved={(schedule) => {
            setCreating(false);
            setCreated(schedule);
            list.reload();
          }}
        />
      )}
      {created && (
        <p className="notice" role="status" data-testid="schedule-created">
          Created schedule <Link to={`/schedules/${idOf(created.name)}`}>{idOf(created.name)}</Link> (
          {triggerSummary(created)}; next fire <Time ts={created.nextFireTime} none="none" />
          ).{" "}
          <button type="button" onClick={() => setCreated(null)} aria-label="Dismiss">
            ×
          </button>
        </p>
      )}

      <form className="row sched-filter" onSubmit={applyFilter} role="search" aria-label="Filter schedules">
        <label className="inline" htmlFor="sched-filter-pipeline">
          Pipeline
        </label>
        <input
          id="sched-filter-pipeline"
          type="text"
          value={filterText}
          onChange={(e) => setFilterText(e.target.value)}
          placeholder="any pipeline (an id)"
          autoComplete="off"
          aria-invalid={filterProblem ? true : undefined}
          aria-describedby={filterProblem ? "sched-filter-error" : undefined}
        />
        <button type="submit">Filter</button>
        {pipelineId && (
          <button type="button" onClick={clearFilter}>
            Clear filter
          </button>
        )}
        {filterProblem && (
          <span className="field-error" id="sched-filter-error">
            {filterProblem}
          </span>
        )}
        <span className="spacer" />
        <button type="button" onClick={list.reload} disabled={list.loading}>
          Refresh
        </button>
      </form>

      {actionError && <ErrorBanner error={actionError.error} title={actionError.title} />}
      {list.error && !filterProblem && <ErrorBanner error={list.error} title="Listing schedules failed" />}
      {list.loading && !list.data && <Loading what="schedules" />}

      {list.data && (
        <>
          <table className="sched-table" aria-label="Schedules" aria-busy={list.loading || undefined}>
            <thead>
              <tr>
                <th scope="col">ID</th>
                <th scope="col">Display name</th>
                <th scope="col">Pipeline</th>
                <th scope="col">Trigger</th>
                <th scope="col">Next fire</th>
                <th scope="col">Last fire</th>
                <th scope="col">Runs started</th>
                <th scope="col">State</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {schedules.length === 0 && (
                <tr>
                  <td colSpan={9} className="muted">
                    {pipelineId ? `No schedule of pipeline ${pipelineId}.` : "No schedule yet."}{" "}
                    {pager.hasPrevious ? "" : "Create one with New schedule."}
                  </td>
                </tr>
              )}
              {schedules.map((s) => {
                const id = idOf(s.name);
                const run = triggered.get(s.name);
                const rowBusy = busy.has(s.name);
                return (
                  <tr key={s.name} data-testid={`schedule-row-${id}`}>
                    <td>
                      <Link to={`/schedules/${id}`}>{id}</Link>
                    </td>
                    <td>{s.displayName || <span className="muted">—</span>}</td>
                    <td>
                      <PipelineOf schedule={s} />
                    </td>
                    <td className="sched-trigger">{triggerSummary(s)}</td>
                    <td data-testid="next-fire-time">
                      <Time ts={s.nextFireTime} none="none" />
                    </td>
                    <td data-testid="last-fire-time">
                      <Time ts={s.lastFireTime} none="never" />
                    </td>
                    <td data-testid="runs-started">{formatNumber(Number(s.runsStarted))}</td>
                    <td>
                      <ScheduleState schedule={s} />
                    </td>
                    <td>
                      <div className="sched-actions">
                        {s.paused ? (
                          <button type="button" onClick={() => act(s, "resume")} disabled={rowBusy}>
                            Resume
                          </button>
                        ) : (
                          <button type="button" onClick={() => act(s, "pause")} disabled={rowBusy}>
                            Pause
                          </button>
                        )}
                        <button type="button" onClick={() => act(s, "trigger")} disabled={rowBusy}>
                          Trigger now
                        </button>
                      </div>
                      {run && (
                        <div className="sched-triggered" role="status" data-testid={`triggered-run-${id}`}>
                          Started run <RunLink run={run} />
                        </div>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          <Pager
            label="Schedules"
            page={pager.page}
            hasPrevious={pager.hasPrevious}
            nextToken={list.data.nextPageToken}
            onPrevious={pager.previous}
            onNext={pager.next}
            busy={list.loading}
          />
        </>
      )}
    </section>
  );
}
