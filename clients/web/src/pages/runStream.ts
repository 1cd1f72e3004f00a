// A run, live: WatchRun's snapshot and events folded into the run's record, with the client's
// reconnect (a broken stream comes back with a fresh snapshot). Events are applied as they
// arrive and handed to React once per animation frame, so a 1,000-node fan-out that sends
// thousands of events renders a frame at a time, and a node record that did not change keeps
// its identity (the graph redraws only the nodes that changed).
import {
  RunEvent_Type,
  isTerminal,
  type NodeExecution,
  type Run,
} from "@raypipe/client/web";
import { useEffect, useState } from "react";
import { client, shownError, type ShownError } from "../api";

/** The latest progress a running node reported (a trainer's epoch). */
export interface NodeProgress {
  readonly message: string;
  readonly metrics: Readonly<Record<string, number>>;
}

export interface LiveRun {
  readonly run: Run | null;
  /** The run's nodes in the spec's order, current as of the last event. */
  readonly nodes: readonly NodeExecution[];
  readonly progress: ReadonlyMap<string, NodeProgress>;
  /** The stream is open (the run has not ended). */
  readonly live: boolean;
  readonly error: ShownError | null;
  /** Events received, snapshots included. */
  readonly events: number;
}

const EMPTY: LiveRun = { run: null, nodes: [], progress: new Map(), live: true, error: null, events: 0 };

/**
 * Whether two records of a node show the same thing. Cheaper than a reflective equals over
 * 1,000 records per batch: a node changes by its state, attempt, times, metrics, error,
 * artifacts, notes or task, and each of those changes one of these.
 */
function sameNode(a: NodeExecution, b: NodeExecution): boolean {
  if (
    a.state !== b.state ||
    a.attempt !== b.attempt ||
    a.rayTaskId !== b.rayTaskId ||
    a.cachedFrom !== b.cachedFrom ||
    a.artifacts.length !== b.artifacts.length ||
    a.notes.length !== b.notes.length ||
    a.startTime?.seconds !== b.startTime?.seconds ||
    a.startTime?.nanos !== b.startTime?.nanos ||
    a.endTime?.seconds !== b.endTime?.seconds ||
    a.endTime?.nanos !== b.endTime?.nanos ||
    (a.error?.message ?? "") !== (b.error?.message ?? "")
  ) {
    return false;
  }
  const ka = Object.keys(a.metrics);
  if (ka.length !== Object.keys(b.metrics).length) return false;
  return ka.every((k) => a.metrics[k] === b.metrics[k]);
}

export function useLiveRun(name: string, restart: number): LiveRun {
  const [state, setState] = useState<LiveRun>(EMPTY);
  useEffect(() => {
    const controller = new AbortController();
    let run: Run | null = null;
    let nodes: NodeExecution[] = [];
    let index = new Map<string, number>();
    const progress = new Map<string, NodeProgress>();
    let live = true;
    let error: ShownError | null = null;
    let events = 0;
    let frame = 0;
    const flush = () => {
      frame = 0;
      setState({ run, nodes: nodes.slice(), progress: new Map(progress), live, error, events });
    };
    const schedule = () => {
      if (frame === 0) frame = requestAnimationFrame(flush);
    };
    setState(EMPTY);
    void (async () => {
      try {
        for await (const response of client.watchRun(name, { signal: controller.signal })) {
          events += 1;
          const event = response.event;
          if (response.run) {
            run = response.run;
            const previous = new Map(nodes.map((n) => [n.nodeId, n]));
            nodes = run.nodes.map((n) => {
              const old = previous.get(n.nodeId);
              return old && sameNode(old, n) ? old : n;
            });
            index = new Map(nodes.map((n, i) => [n.nodeId, i]));
          } else if (event && run !== null) {
            const current: Run = run;
            const i = index.get(event.nodeId);
            if (event.type === RunEvent_Type.NODE_STATE_CHANGED && i !== undefined) {
              const node = nodes[i]!;
              if (node.state !== event.nodeState) nodes[i] = { ...node, state: event.nodeState };
            } else if (event.type === RunEvent_Type.RUN_STATE_CHANGED) {
              run = { ...current, state: event.runState };
            }
          }
          if (event?.type === RunEvent_Type.NODE_PROGRESS && event.nodeId) {
            progress.set(event.nodeId, { message: event.message, metrics: { ...event.metrics } });
          }
          schedule();
        }
        live = run ? !isTerminal(run.state) : false;
      } catch (err) {
        if (controller.signal.aborted) return;
        error = shownError(err);
        live = false;
      }
      schedule();
    })();
    return () => {
      controller.abort();
      if (frame !== 0) cancelAnimationFrame(frame);
    };
  }, [name, restart]);
  return state;
}
