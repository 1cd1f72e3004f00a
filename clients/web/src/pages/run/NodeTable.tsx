// A run's nodes as a table: what very large runs open on, and a keyboard-friendly way to pick
// a node. Filtered by state and id; shows a page of rows at a time so 100,000 rows stay fast.
import type { NodeExecution, Node as SpecNode } from "@raypipe/client/web";
import { useMemo, useState } from "react";
import { StateBadge } from "../../components/common";
import { durationBetween } from "../../format";
import { nodeState } from "../Run";

const ROWS = 200;

export function NodeTable(props: {
  nodes: readonly NodeExecution[];
  specNodes: ReadonlyMap<string, SpecNode>;
  selected: string | null;
  onSelect: (id: string) => void;
  stateFilter: string;
  onStateFilter: (state: string) => void;
}) {
  const [search, setSearch] = useState("");
  const [page, setPage] = useState(0);
  const rows = useMemo(
    () =>
      props.nodes.filter(
        (n) =>
          (!props.stateFilter || nodeState(n.state) === props.stateFilter) &&
          (!search || n.nodeId.includes(search)),
      ),
    [props.nodes, props.stateFilter, search],
  );
  const pages = Math.max(1, Math.ceil(rows.length / ROWS));
  const current = Math.min(page, pages - 1);
  return (
    <div data-testid="node-table">
      <div className="row">
        <label className="inline">
          Node id
          <input value={search} onChange={(e) => (setSearch(e.target.value), setPage(0))} />
        </label>
        {props.stateFilter && (
          <button type="button" onClick={() => props.onStateFilter("")}>
            State {props.stateFilter} ✕
          </button>
        )}
        <span className="muted">
          {rows.length.toLocaleString()} of {props.nodes.length.toLocaleString()} nodes
        </span>
      </div>
      <table>
        <thead>
          <tr>
            <th>Node</th>
            <th>Type</th>
            <th>State</th>
            <th>Attempts</th>
            <th>Duration</th>
          </tr>
        </thead>
        <tbody>
          {rows.slice(current * ROWS, (current + 1) * ROWS).map((n) => (
            <tr key={n.nodeId} className={n.nodeId === props.selected ? "selected" : ""}>
              <td>
                <button type="button" className="link" onClick={() => props.onSelect(n.nodeId)}>
                  {n.nodeId}
                </button>
              </td>
              <td>{props.specNodes.get(n.nodeId)?.type ?? ""}</td>
              <td>
                <StateBadge state={nodeState(n.state)} />
              </td>
              <td>{n.attempt}</td>
              <td>{durationBetween(n.startTime, n.endTime)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {pages > 1 && (
        <nav className="pager" aria-label="Node pages">
          <button type="button" disabled={current === 0} onClick={() => setPage(current - 1)}>
            ← Previous
          </button>
          <span>
            {current + 1} / {pages}
          </span>
          <button type="button" disabled={current >= pages - 1} onClick={() => setPage(current + 1)}>
            Next →
          </button>
        </nav>
      )}
    </div>
  );
}
