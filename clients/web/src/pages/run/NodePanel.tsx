// The selected node of a run: state, attempts, times, metrics, notes, error with traceback,
// logs per attempt, artifacts, and links to its Ray task and cached source.
import { ArtifactKind, NodeExecution_State, type NodeExecution, type Node as SpecNode } from "@raypipe/client/web";
import { Link } from "react-router";
import { StateBadge } from "../../components/common";
import { durationBetween, enumLabel, formatNumber, formatTime, idOf } from "../../format";
import { epochOf, nodeState } from "../Run";
import type { NodeProgress } from "../runStream";
import { NodeLogs } from "./NodeLogs";

export function NodePanel(props: {
  runName: string;
  node: NodeExecution;
  spec: SpecNode | undefined;
  progress: NodeProgress | undefined;
  rayTaskLink: string;
  rayNodeLink: string;
}) {
  const { node, spec, progress } = props;
  const running = node.state === NodeExecution_State.RUNNING;
  const epoch = running && progress ? epochOf(progress) : null;
  const metrics = Object.entries(node.metrics).sort(([a], [b]) => a.localeCompare(b));
  return (
    <div className="panel" data-testid="node-panel">
      <div className="row">
        <h2 style={{ margin: 0 }}>{node.nodeId}</h2>
        <StateBadge state={nodeState(node.state)} />
      </div>
      <dl className="kv" style={{ marginTop: 8 }}>
        <dt>Type</dt>
        <dd>{spec?.type ?? "—"}</dd>
        <dt>Attempts</dt>
        <dd data-testid="node-attempts">{node.attempt}</dd>
        <dt>Started</dt>
        <dd>{formatTime(node.startTime)}</dd>
        <dt>Ended</dt>
        <dd>{formatTime(node.endTime)}</dd>
        <dt>Duration</dt>
        <dd>{durationBetween(node.startTime, node.endTime)}</dd>
        <dt>Ray task</dt>
        <dd>
          {node.rayTaskId ? (
            props.rayTaskLink ? (
              <a href={props.rayTaskLink} target="_blank" rel="noreferrer" className="mono" data-testid="ray-task-link">
                {node.rayTaskId}
              </a>
            ) : (
              <span className="mono">{node.rayTaskId}</span>
            )
          ) : (
            "—"
          )}
        </dd>
        <dt>Ray node</dt>
        <dd data-testid="ray-node">
          {node.rayNodeId ? (
            props.rayNodeLink ? (
              <a href={props.rayNodeLink} target="_blank" rel="noreferrer" title={node.rayNodeId}>
                {node.rayNodeAddress || node.rayNodeId.slice(0, 12)}
              </a>
            ) : (
              <span title={node.rayNodeId}>{node.rayNodeAddress || node.rayNodeId.slice(0, 12)}</span>
            )
          ) : (
            "—"
          )}
        </dd>
        {node.cachedFrom && (
          <>
            <dt>Cached from</dt>
            <dd>
              <Link to={`/${node.cachedFrom}`}>{idOf(node.cachedFrom)}</Link>
            </dd>
          </>
        )}
      </dl>
      {progress && running && (
        <div style={{ marginTop: 8 }} data-testid="node-progress">
          {epoch && epoch.total > 0 && (
            <progress max={epoch.total} value={epoch.epoch} aria-label="Epochs" style={{ width: "100%" }} />
          )}
          <div className="hint">{progress.message}</div>
        </div>
      )}
      {node.notes.length > 0 && (
        <>
          <h3>Notes</h3>
          <ul>
            {node.notes.map((note) => (
              <li key={note}>{note}</li>
            ))}
          </ul>
        </>
      )}
      {node.error && (node.error.message || node.error.type) && (
        <>
          <h3>Error</h3>
          <p role="alert" data-testid="node-error">
            <code>{node.error.type}</code> {node.error.message}
          </p>
          {node.error.traceback && (
            <details open>
              <summary>Traceback</summary>
              <pre className="traceback" data-testid="node-traceback">
                {node.error.traceback}
              </pre>
            </details>
          )}
        </>
      )}
      <h3>Metrics</h3>
      {metrics.length ? (
        <table data-testid="node-metrics">
          <tbody>
            {metrics.map(([k, v]) => (
              <tr key={k}>
                <th scope="row">{k}</th>
                <td className="mono">{formatNumber(v)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p className="muted">None yet.</p>
      )}
      {node.artifacts.length > 0 && (
        <>
          <h3>Artifacts</h3>
          <table data-testid="node-artifacts">
            <tbody>
              {node.artifacts.map((a) => (
                <tr key={a.name + a.uri}>
                  <th scope="row">{a.name}</th>
                  <td>{enumLabel(ArtifactKind, a.kind, "ARTIFACT_KIND_")}</td>
                  <td className="mono" style={{ overflowWrap: "anywhere" }}>
                    {a.uri}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      {node.attempt > 0 && <NodeLogs runName={props.runName} node={node} />}
    </div>
  );
}
