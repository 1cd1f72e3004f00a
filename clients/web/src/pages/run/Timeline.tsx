// A Gantt chart of a run: one bar per node that started, from its start to its end (or now),
// on the run's time axis, ordered by start.
import type { NodeExecution, Run } from "@raypipe/client/web";
import { StateBadge } from "../../components/common";
import { formatSeconds, toDate } from "../../format";
import { nodeState } from "../Run";

const ROWS = 1000;

export function Timeline({ run, nodes, onSelect }: { run: Run; nodes: readonly NodeExecution[]; onSelect: (id: string) => void }) {
  const now = Date.now();
  const started = nodes
    .map((n) => ({ n, start: toDate(n.startTime)?.getTime(), end: toDate(n.endTime)?.getTime() }))
    .filter((r): r is { n: NodeExecution; start: number; end: number | undefined } => r.start !== undefined)
    .sort((a, b) => a.start - b.start);
  if (!started.length) return <p className="muted">No node has started yet.</p>;
  const t0 = toDate(run.startTime)?.getTime() ?? started[0]!.start;
  const t1 = Math.max(toDate(run.endTime)?.getTime() ?? now, ...started.map((r) => r.end ?? now));
  const span = Math.max(1, t1 - t0);
  return (
    <div className="gantt" data-testid="timeline" aria-label="Timeline of node start and end">
      <div className="row muted" style={{ justifyContent: "space-between", paddingLeft: 160 }}>
        <span>0 s</span>
        <span>{formatSeconds(span / 2000)}</span>
        <span>{formatSeconds(span / 1000)}</span>
      </div>
      {started.slice(0, ROWS).map(({ n, start, end }) => {
        const state = nodeState(n.state);
        const left = ((start - t0) / span) * 100;
        const width = (((end ?? now) - start) / span) * 100;
        return (
          <div className="gantt-row" key={n.nodeId}>
            <button type="button" className="gantt-label" onClick={() => onSelect(n.nodeId)} title={n.nodeId}>
              {n.nodeId}
            </button>
            <div className="gantt-track">
              <div
                className={`gantt-bar state-${state.toLowerCase()}`}
                style={{ left: `${left}%`, width: `${width}%` }}
                title={`${n.nodeId}: ${state}, ${formatSeconds(((end ?? now) - start) / 1000)}`}
              />
            </div>
          </div>
        );
      })}
      {started.length > ROWS && (
        <p className="muted">
          The first {ROWS.toLocaleString()} of {started.length.toLocaleString()} started nodes; the Nodes view lists all.
        </p>
      )}
      <p className="hint">
        <StateBadge state="RUNNING" /> bars grow until the node ends.
      </p>
    </div>
  );
}
