// Small pieces both schedule pages show: a time, the pipeline a schedule runs, its state
// badge and the run a "Trigger now" started.
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { Run_State, type Run, type Schedule } from "@raypipe/client/web";
import { Link } from "react-router";
import { StateBadge } from "../../components/common";
import { enumLabel, formatTime, idOf } from "../../format";
import { isoOf, pinnedVersionOf, pipelineIdOf } from "./util";

export function Time({ ts, none = "—" }: { ts: Timestamp | undefined; none?: string }) {
  const iso = isoOf(ts);
  if (!iso) return <span className="muted">{none}</span>;
  return (
    <time dateTime={iso} title={iso}>
      {formatTime(ts)}
    </time>
  );
}

export function PipelineOf({ schedule }: { schedule: Schedule }) {
  const pipelineId = pipelineIdOf(schedule);
  const version = pinnedVersionOf(schedule);
  if (!pipelineId) return <span className="muted">—</span>;
  return (
    <>
      <Link to={`/pipelines/${pipelineId}`}>{pipelineId}</Link>
      {version !== null ? (
        <>
          {" "}
          <Link to={`/pipelines/${pipelineId}/versions/${version}`} className="sched-version">
            version {version}
          </Link>
        </>
      ) : (
        <span className="muted"> (default version)</span>
      )}
    </>
  );
}

export function ScheduleState({ schedule }: { schedule: Schedule }) {
  return schedule.paused ? (
    <span className="badge paused">paused</span>
  ) : (
    <span className="badge sched-active">active</span>
  );
}

/** The run a TriggerSchedule (or a backfill) started, with a link to it. */
export function RunLink({ run }: { run: Run }) {
  if (!run.name) {
    return (
      <span>
        queued for <Time ts={run.scheduledTime} />
      </span>
    );
  }
  const id = idOf(run.name);
  return (
    <span>
      <Link to={`/runs/${id}`}>{id}</Link> <StateBadge state={enumLabel(Run_State, run.state, "STATE_")} />
    </span>
  );
}
