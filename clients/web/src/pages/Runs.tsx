// The execution history: runs newest first, paged by the server and filtered by pipeline,
// version, state and schedule (ListRuns), with the filters in the address so a filtered
// history has a link of its own.
import { Run_State } from "@raypipe/client/web";
import { useState, type FormEvent } from "react";
import { Link, useSearchParams } from "react-router";
import { client } from "../api";
import { ErrorBanner, Loading, Pager, StateBadge, useLoad, usePageTokens } from "../components/common";
import { durationBetween, enumLabel, formatTime, idOf } from "../format";

const PAGE_SIZE = 25;
const STATES = [
  Run_State.PENDING,
  Run_State.RUNNING,
  Run_State.SUCCEEDED,
  Run_State.FAILED,
  Run_State.CANCELLING,
  Run_State.CANCELLED,
];

export function runState(state: Run_State): string {
  return enumLabel(Run_State, state, "STATE_");
}

export function RunsPage() {
  const [params, setParams] = useSearchParams();
  const pipeline = params.get("pipeline") ?? "";
  const version = params.get("version") ?? "";
  const schedule = params.get("schedule") ?? "";
  const states = params.getAll("state");
  const key = params.toString();
  const pages = usePageTokens(key);
  const runs = useLoad(
    (signal) =>
      client.runs.listRuns(
        {
          pageSize: PAGE_SIZE,
          pageToken: pages.token,
          pipeline: pipeline ? `pipelines/${pipeline}` : "",
          pipelineVersion: pipeline && version ? `pipelines/${pipeline}/versions/${version}` : "",
          schedule: schedule ? `schedules/${schedule}` : "",
          states: states.map((s) => Run_State[`STATE_${s}` as keyof typeof Run_State] as Run_State),
          omitNodes: true,
        },
        { signal },
      ),
    [key, pages.token],
  );

  return (
    <section>
      <h1>Runs</h1>
      <Filters
        key={key}
        initial={{ pipeline, version, schedule, states }}
        onApply={(f) => {
          const next = new URLSearchParams();
          if (f.pipeline) next.set("pipeline", f.pipeline);
          if (f.pipeline && f.version) next.set("version", f.version);
          if (f.schedule) next.set("schedule", f.schedule);
          for (const s of f.states) next.append("state", s);
          setParams(next);
        }}
      />
      <ErrorBanner error={runs.error} title="Could not list runs" />
      {runs.loading && !runs.data && <Loading what="runs" />}
      {runs.data && (
        <>
          <table data-testid="runs-table" aria-busy={runs.loading}>
            <thead>
              <tr>
                <th>Run</th>
                <th>Pipeline</th>
                <th>Version</th>
                <th>State</th>
                <th>Created</th>
                <th>Duration</th>
                <th>Schedule</th>
              </tr>
            </thead>
            <tbody>
              {runs.data.runs.map((run) => {
                const id = idOf(run.name);
                const pipelineId = idOf(run.pipeline);
                return (
                  <tr key={run.name} data-testid={`run-row-${id}`}>
                    <td>
                      <Link to={`/runs/${id}`}>{run.displayName || id}</Link>
                      <div className="muted mono">{id}</div>
                    </td>
                    <td>
                      <Link to={`/pipelines/${pipelineId}`}>{pipelineId}</Link>
                    </td>
                    <td>
                      {run.pipelineVersion && (
                        <Link to={`/${run.pipelineVersion}`}>{idOf(run.pipelineVersion)}</Link>
                      )}
                    </td>
                    <td>
                      <StateBadge state={runState(run.state)} />
                    </td>
                    <td>{formatTime(run.createTime)}</td>
                    <td>{durationBetween(run.startTime, run.endTime)}</td>
                    <td>{run.schedule && <Link to={`/${run.schedule}`}>{idOf(run.schedule)}</Link>}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          {runs.data.runs.length === 0 && <p className="muted">No runs match.</p>}
          <Pager
            label="Runs"
            page={pages.page}
            hasPrevious={pages.hasPrevious}
            nextToken={runs.data.nextPageToken}
            onPrevious={pages.previous}
            onNext={pages.next}
            busy={runs.loading}
          />
        </>
      )}
    </section>
  );
}

interface FilterValues {
  pipeline: string;
  version: string;
  schedule: string;
  states: string[];
}

function Filters({ initial, onApply }: { initial: FilterValues; onApply: (f: FilterValues) => void }) {
  const [values, setValues] = useState<FilterValues>(initial);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    onApply(values);
  };
  const toggle = (state: string) =>
    setValues((v) => ({
      ...v,
      states: v.states.includes(state) ? v.states.filter((s) => s !== state) : [...v.states, state],
    }));
  return (
    <form className="panel row" onSubmit={submit} aria-label="Filter runs" data-testid="runs-filters">
      <label>
        Pipeline id
        <input value={values.pipeline} onChange={(e) => setValues({ ...values, pipeline: e.target.value.trim() })} />
      </label>
      <label>
        Version
        <input
          type="number"
          min={1}
          style={{ width: 90 }}
          value={values.version}
          disabled={!values.pipeline}
          onChange={(e) => setValues({ ...values, version: e.target.value })}
        />
      </label>
      <label>
        Schedule id
        <input value={values.schedule} onChange={(e) => setValues({ ...values, schedule: e.target.value.trim() })} />
      </label>
      <fieldset className="row" style={{ border: "none", padding: 0, margin: 0 }}>
        <legend className="hint">States</legend>
        {STATES.map((s) => {
          const name = runState(s);
          return (
            <label key={name} className="inline">
              <input type="checkbox" checked={values.states.includes(name)} onChange={() => toggle(name)} />
              {name}
            </label>
          );
        })}
      </fieldset>
      <button type="submit" className="primary">
        Apply
      </button>
      <button type="button" onClick={() => onApply({ pipeline: "", version: "", schedule: "", states: [] })}>
        Clear
      </button>
    </form>
  );
}
