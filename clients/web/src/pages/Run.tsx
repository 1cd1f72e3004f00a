// A run, live: its DAG coloured by state (or, for very large runs, a per-state summary and a
// node table), a progress bar, a timeline of node start and end, Cancel and Retry, and for the
// selected node its state, attempts, times, metrics, error, logs per attempt, artifacts and
// links into the Ray dashboard and MLflow.
import {
  NodeExecution_State,
  Run_State,
  isTerminal,
  type NodeExecution,
  type Node as SpecNode,
} from "@raypipe/client/web";
import { useMemo, useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { client, shownError, type ShownError } from "../api";
import { ConfirmDialog, ErrorBanner, Loading, StateBadge, useLoad } from "../components/common";
import { rayNodeUrl, rayTaskUrl, useUiConfig } from "../config";
import { durationBetween, enumLabel, formatTime, idOf } from "../format";
import { Dag, type DagNode } from "../graph/Dag";
import { NodePanel } from "./run/NodePanel";
import { NodeTable } from "./run/NodeTable";
import { Timeline } from "./run/Timeline";
import { useLiveRun, type NodeProgress } from "./runStream";

/** Above this many nodes the page opens on the table; the graph stays one click away. */
export const GRAPH_DEFAULT_LIMIT = 5000;

export function nodeState(state: NodeExecution_State): string {
  return enumLabel(NodeExecution_State, state, "STATE_");
}

const FINISHED = new Set([
  NodeExecution_State.SUCCEEDED,
  NodeExecution_State.FAILED,
  NodeExecution_State.SKIPPED,
  NodeExecution_State.CANCELLED,
  NodeExecution_State.CACHED,
]);

type View = "graph" | "table" | "timeline";

export function RunPage() {
  const { runId = "" } = useParams();
  const name = `runs/${runId}`;
  const [restart, setRestart] = useState(0);
  const live = useLiveRun(name, restart);
  const run = live.run;
  const version = useLoad(
    async (signal) =>
      run?.pipelineVersion
        ? (await client.pipelines.getPipelineVersion({ name: run.pipelineVersion }, { signal })).pipelineVersion
        : undefined,
    [run?.pipelineVersion ?? ""],
  );
  const specNodes = useMemo(() => new Map((version.data?.spec?.nodes ?? []).map((n) => [n.id, n])), [version.data]);
  const [selected, setSelected] = useState<string | null>(null);
  const [view, setView] = useState<View | null>(null);
  const [tableFilter, setTableFilter] = useState<string>("");
  const config = useUiConfig();

  const dagNodes = useDagNodes(live.nodes, specNodes, live.progress);

  if (live.error && !run) {
    return (
      <section>
        <h1>Run {runId}</h1>
        {live.error.code === "NOT_FOUND" ? (
          <p role="alert">
            There is no run <code>{runId}</code>. See the <Link to="/runs">run history</Link>.
          </p>
        ) : (
          <ErrorBanner error={live.error} title="Could not follow the run" />
        )}
      </section>
    );
  }
  if (!run) return <Loading what={`run ${runId}`} />;

  const shownView: View = view ?? (live.nodes.length > GRAPH_DEFAULT_LIMIT ? "table" : "graph");
  const selectedNode = live.nodes.find((n) => n.nodeId === selected) ?? null;
  const state = enumLabel(Run_State, run.state, "STATE_");
  const pipelineId = idOf(run.pipeline);

  return (
    <section>
      <div className="row">
        <h1 style={{ margin: 0 }}>{run.displayName || runId}</h1>
        <StateBadge state={state} />
        <span className="muted mono">{runId}</span>
        <span className="spacer" />
        <RunActions name={name} state={run.state} onRetried={() => setRestart((r) => r + 1)} />
      </div>
      <dl className="kv" style={{ marginTop: 8 }}>
        <dt>Pipeline</dt>
        <dd>
          <Link to={`/pipelines/${pipelineId}`}>{pipelineId}</Link>
          {run.pipelineVersion && (
            <>
              {" "}
              version <Link to={`/${run.pipelineVersion}`}>{idOf(run.pipelineVersion)}</Link>
            </>
          )}
        </dd>
        <dt>Created</dt>
        <dd>
          {formatTime(run.createTime)}
          {run.creator && <span data-testid="run-creator"> by {run.creator}</span>}
        </dd>
        <dt>Started / ended</dt>
        <dd>
          {formatTime(run.startTime)} → {formatTime(run.endTime)} ({durationBetween(run.startTime, run.endTime)})
        </dd>
        {run.schedule && (
          <>
            <dt>Schedule</dt>
            <dd>
              <Link to={`/${run.schedule}`}>{idOf(run.schedule)}</Link> at {formatTime(run.scheduledTime)}
            </dd>
          </>
        )}
        {run.retryOf && (
          <>
            <dt>Retry of</dt>
            <dd>
              <Link to={`/${run.retryOf}`}>{idOf(run.retryOf)}</Link>
            </dd>
          </>
        )}
        {Object.keys(run.parameters).length > 0 && (
          <>
            <dt>Parameters</dt>
            <dd className="mono">{JSON.stringify(run.parameters)}</dd>
          </>
        )}
        <dt>MLflow</dt>
        <dd>
          {run.tracking?.url ? (
            <a href={run.tracking.url} target="_blank" rel="noreferrer" data-testid="mlflow-link">
              MLflow run {run.tracking.runId}
            </a>
          ) : (
            <span className="muted">{run.tracking ? run.tracking.problem || "not recorded yet" : "tracking off"}</span>
          )}
        </dd>
      </dl>
      {run.error && run.error.message && (
        <div className="error-banner" role="alert" data-testid="run-error">
          <strong>{run.error.nodeId ? `Node ${run.error.nodeId} failed` : "The run failed"}</strong>:{" "}
          <code>{run.error.type}</code> {run.error.message}
        </div>
      )}
      <ErrorBanner error={live.error} title="The live view stopped" />
      <Progress nodes={live.nodes} live={live.live} />
      <Counts
        nodes={live.nodes}
        onPick={(s) => {
          setTableFilter(s);
          setView("table");
        }}
      />
      <div className="tabs" role="tablist" aria-label="Run views">
        {(["graph", "table", "timeline"] as const).map((v) => (
          <button
            key={v}
            type="button"
            role="tab"
            aria-selected={shownView === v}
            onClick={() => setView(v)}
            data-testid={`view-${v}`}
          >
            {v === "graph" ? "Graph" : v === "table" ? "Nodes" : "Timeline"}
          </button>
        ))}
      </div>
      <div className="split">
        <div>
          {shownView === "graph" &&
            (version.error ? (
              <ErrorBanner error={version.error} title="Could not load the version's graph" />
            ) : !version.data ? (
              <Loading what="the graph" />
            ) : (
              <Dag
                nodes={dagNodes}
                selected={selected}
                onSelect={setSelected}
                height={560}
                label={`Graph of run ${runId}`}
              />
            ))}
          {shownView === "table" && (
            <NodeTable
              nodes={live.nodes}
              specNodes={specNodes}
              selected={selected}
              onSelect={setSelected}
              stateFilter={tableFilter}
              onStateFilter={setTableFilter}
            />
          )}
          {shownView === "timeline" && <Timeline run={run} nodes={live.nodes} onSelect={setSelected} />}
        </div>
        <aside aria-label="Node details">
          {selectedNode ? (
            <NodePanel
              key={selectedNode.nodeId}
              runName={name}
              node={selectedNode}
              spec={specNodes.get(selectedNode.nodeId)}
              progress={live.progress.get(selectedNode.nodeId)}
              rayTaskLink={rayTaskUrl(config.rayDashboardUrl, selectedNode.rayTaskId)}
              rayNodeLink={rayNodeUrl(config.rayDashboardUrl, selectedNode.rayNodeId)}
            />
          ) : (
            <p className="muted panel">Select a node to see its state, metrics, error and logs.</p>
          )}
        </aside>
      </div>
    </section>
  );
}

/** DagNodes for the graph; one object per NodeExecution object, so unchanged nodes keep theirs. */
function useDagNodes(
  nodes: readonly NodeExecution[],
  specNodes: ReadonlyMap<string, SpecNode>,
  progress: ReadonlyMap<string, NodeProgress>,
): DagNode[] {
  const cache = useMemo(() => new WeakMap<NodeExecution, { progress?: NodeProgress; dag: DagNode }>(), [specNodes]);
  return useMemo(
    () =>
      nodes.map((n) => {
        const p = n.state === NodeExecution_State.RUNNING ? progress.get(n.nodeId) : undefined;
        const hit = cache.get(n);
        if (hit && hit.progress === p) return hit.dag;
        const spec = specNodes.get(n.nodeId);
        const details: string[] = [];
        if (n.attempt > 1) details.push(`attempt ${n.attempt}`);
        const epoch = p ? epochOf(p) : null;
        if (epoch) details.push(epoch.total ? `epoch ${epoch.epoch}/${epoch.total}` : `epoch ${epoch.epoch}`);
        const dag: DagNode = {
          id: n.nodeId,
          type: spec?.type ?? "",
          dependsOn: spec?.dependsOn ?? [],
          state: nodeState(n.state),
          detail: details.join(" · "),
        };
        cache.set(n, { progress: p, dag });
        return dag;
      }),
    [nodes, specNodes, progress, cache],
  );
}

/** A trainer's epoch from its progress: the `epoch` metric, and the total from "epoch 3/10". */
export function epochOf(p: NodeProgress): { epoch: number; total: number } | null {
  const epoch = p.metrics.epoch;
  const match = /epoch (\d+)\/(\d+)/.exec(p.message);
  if (epoch === undefined && !match) return null;
  return { epoch: epoch ?? Number(match![1]), total: match ? Number(match[2]) : 0 };
}

function Progress({ nodes, live }: { nodes: readonly NodeExecution[]; live: boolean }) {
  const total = nodes.length;
  let succeeded = 0;
  let failed = 0;
  let running = 0;
  let other = 0;
  for (const n of nodes) {
    if (n.state === NodeExecution_State.SUCCEEDED || n.state === NodeExecution_State.CACHED) succeeded++;
    else if (n.state === NodeExecution_State.FAILED) failed++;
    else if (n.state === NodeExecution_State.RUNNING) running++;
    else if (FINISHED.has(n.state)) other++;
  }
  const finished = succeeded + failed + other;
  const pct = (k: number) => `${total ? (100 * k) / total : 0}%`;
  return (
    <div className="row" style={{ margin: "10px 0" }}>
      <div
        className="progress"
        role="progressbar"
        aria-label="Nodes finished"
        aria-valuemin={0}
        aria-valuemax={total}
        aria-valuenow={finished}
        data-testid="run-progress"
      >
        <div className="p-succeeded" style={{ width: pct(succeeded) }} />
        <div className="p-failed" style={{ width: pct(failed) }} />
        <div className="p-other" style={{ width: pct(other) }} />
        <div className="p-running" style={{ width: pct(running) }} />
      </div>
      <span data-testid="run-progress-text">
        {finished} / {total} nodes finished{live ? " · live" : ""}
      </span>
    </div>
  );
}

function Counts({ nodes, onPick }: { nodes: readonly NodeExecution[]; onPick: (state: string) => void }) {
  const counts = new Map<string, number>();
  for (const n of nodes) {
    const s = nodeState(n.state);
    counts.set(s, (counts.get(s) ?? 0) + 1);
  }
  return (
    <div className="counts" aria-label="Nodes by state" data-testid="state-counts">
      {[...counts.entries()].map(([s, k]) => (
        <button key={s} type="button" onClick={() => onPick(s)} title={`Show the ${s} nodes`}>
          <StateBadge state={s} /> {k.toLocaleString()}
        </button>
      ))}
    </div>
  );
}

function RunActions({ name, state, onRetried }: { name: string; state: Run_State; onRetried: () => void }) {
  const navigate = useNavigate();
  const [confirming, setConfirming] = useState(false);
  const [error, setError] = useState<ShownError | null>(null);
  const [busy, setBusy] = useState(false);
  const terminal = isTerminal(state);
  const canCancel = !terminal && state !== Run_State.CANCELLING;
  const canRetry = state === Run_State.FAILED || state === Run_State.CANCELLED;
  const act = async (what: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    try {
      await what();
    } catch (err) {
      setError(shownError(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="row">
      {canCancel && (
        <button type="button" className="danger" disabled={busy} onClick={() => setConfirming(true)}>
          Cancel run
        </button>
      )}
      {canRetry && (
        <button
          type="button"
          className="primary"
          disabled={busy}
          onClick={() =>
            act(async () => {
              const { run } = await client.runs.retryRun({ name, requestId: crypto.randomUUID() });
              if (run) {
                navigate(`/${run.name}`);
                onRetried();
              }
            })
          }
        >
          Retry
        </button>
      )}
      <ConfirmDialog
        open={confirming}
        title="Cancel this run?"
        confirmLabel="Cancel run"
        onCancel={() => setConfirming(false)}
        onConfirm={() => {
          setConfirming(false);
          void act(async () => {
            await client.runs.cancelRun({ name });
          });
        }}
      >
        Running nodes are stopped and nodes that have not started never will. The run ends CANCELLED.
      </ConfirmDialog>
      <ErrorBanner error={error} />
    </div>
  );
}
