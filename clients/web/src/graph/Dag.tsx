// A pipeline's DAG, read-only: a version's spec or a run's nodes coloured by state. The
// layout is computed once per graph shape (layout.ts), so a live run changes only the nodes
// whose state changed; React Flow draws only what is on screen for large graphs.
import {
  Background,
  Controls,
  Handle,
  MiniMap,
  Position,
  ReactFlow,
  type Edge,
  type Node,
  type NodeProps,
} from "@xyflow/react";
import {
  createContext,
  memo,
  useCallback,
  useContext,
  useLayoutEffect,
  useMemo,
  useRef,
  useSyncExternalStore,
} from "react";
import { layout, NODE_HEIGHT, NODE_WIDTH } from "./layout";

export interface DagNode {
  readonly id: string;
  readonly type: string;
  readonly dependsOn: readonly string[];
  /** A state name ("RUNNING"), coloured by its CSS class. */
  readonly state?: string;
  /** A second line: attempts, duration, progress. */
  readonly detail?: string;
  /** Marked as having a problem (the builder's validation). */
  readonly flagged?: boolean;
}

/**
 * What each drawn node shows, by id, outside React Flow's own store. React Flow re-runs a
 * selector for every node and edge whenever its nodes change (3,000 of them for a 1,000-way
 * fan-out, every frame of a live run); here its nodes stay the same for a graph's shape and a
 * change of state reaches only the component of the node that changed.
 */
class NodeViews {
  private views = new Map<string, { node: DagNode; selected: boolean }>();
  private listeners = new Map<string, Set<() => void>>();

  get(id: string): { node: DagNode; selected: boolean } | undefined {
    return this.views.get(id);
  }

  subscribe(id: string, listener: () => void): () => void {
    let set = this.listeners.get(id);
    if (!set) this.listeners.set(id, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Takes the current nodes; returns the ids whose view changed (to notify after commit). */
  update(nodes: readonly DagNode[], selected: string | null | undefined): string[] {
    const changed: string[] = [];
    for (const node of nodes) {
      const isSelected = node.id === selected;
      const old = this.views.get(node.id);
      if (old && old.node === node && old.selected === isSelected) continue;
      this.views.set(node.id, { node, selected: isSelected });
      changed.push(node.id);
    }
    return changed;
  }

  notify(ids: readonly string[]): void {
    for (const id of ids) for (const listener of this.listeners.get(id) ?? []) listener();
  }
}

const ViewsContext = createContext<NodeViews | null>(null);

type FlowNode = Node<Record<string, never>, "dag">;

const DagNodeView = memo(function DagNodeView({ id }: NodeProps<FlowNode>) {
  const views = useContext(ViewsContext)!;
  const view = useSyncExternalStore(
    useCallback((listener) => views.subscribe(id, listener), [views, id]),
    () => views.get(id),
  );
  if (!view) return null;
  const { node, selected } = view;
  const state = node.state?.toLowerCase() ?? "none";
  return (
    <div
      className={`dag-node state-${state}${selected ? " selected" : ""}${node.flagged ? " flagged" : ""}`}
      style={{ width: NODE_WIDTH, height: NODE_HEIGHT }}
      data-node-id={node.id}
      data-state={node.state ?? ""}
      title={`${node.id} (${node.type})${node.state ? `: ${node.state}` : ""}`}
    >
      <Handle type="target" position={Position.Left} isConnectable={false} />
      <div className="dag-node-id">{node.id}</div>
      <div className="dag-node-sub">
        {node.state ? <span className="dag-node-state">{node.state}</span> : node.type}
        {node.detail ? ` · ${node.detail}` : ""}
      </div>
      <Handle type="source" position={Position.Right} isConnectable={false} />
    </div>
  );
});

const nodeTypes = { dag: DagNodeView };
const FIT_VIEW = { maxZoom: 1, padding: 0.08 };

/** The graph's shape as a short string: the layout is recomputed only when this changes. */
function shapeKey(nodes: readonly DagNode[]): string {
  let hash = 0x811c9dc5; // FNV-1a over the ids and their dependencies
  const mix = (text: string) => {
    for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  };
  for (const n of nodes) {
    mix(n.id);
    mix("<");
    for (const d of n.dependsOn) mix(`${d},`);
    mix(";");
  }
  return `${nodes.length}:${(hash >>> 0).toString(36)}`;
}

export function Dag(props: {
  nodes: readonly DagNode[];
  selected?: string | null;
  onSelect?: (id: string) => void;
  height?: number | string;
  label: string;
}) {
  const { nodes, selected, onSelect } = props;
  const shape = shapeKey(nodes);
  // eslint-disable-next-line react-hooks/exhaustive-deps
  const positions = useMemo(() => layout(nodes), [shape]);
  const edges = useMemo<Edge[]>(() => {
    const ids = new Set(nodes.map((n) => n.id));
    const out: Edge[] = [];
    for (const n of nodes)
      for (const d of n.dependsOn) if (ids.has(d)) out.push({ id: `${d}->${n.id}`, source: d, target: n.id });
    return out;
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape]);
  // React Flow's nodes: one per id, fixed for the graph's shape.
  const flowNodes = useMemo<FlowNode[]>(
    () =>
      nodes.map((n) => ({
        id: n.id,
        type: "dag" as const,
        position: positions.get(n.id) ?? { x: 0, y: 0 },
        data: {},
        draggable: false,
        connectable: false,
        ariaLabel: `node ${n.id}`,
      })),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [shape, positions],
  );
  // What they show: pushed to the changed nodes' components only, once React has committed.
  const views = useMemo(() => new NodeViews(), []);
  const changed = views.update(nodes, selected);
  useLayoutEffect(() => views.notify(changed));
  // Props of React Flow that keep their identity across renders: it copies each changed prop
  // into its store, and every change of its store re-runs every node's and edge's selector.
  const selectedRef = useRef(selected);
  selectedRef.current = selected;
  const onSelectRef = useRef(onSelect);
  onSelectRef.current = onSelect;
  const onNodeClick = useCallback((_: unknown, node: FlowNode) => onSelectRef.current?.(node.id), []);
  const onSelectionChange = useCallback(({ nodes: chosen }: { nodes: FlowNode[] }) => {
    // Keyboard selection too: a focused node selected with Enter.
    const first = chosen[0];
    if (first && first.id !== selectedRef.current) onSelectRef.current?.(first.id);
  }, []);
  const large = nodes.length > 300;
  return (
    <div className="dag" style={{ height: props.height ?? 420 }} aria-label={props.label} role="figure">
      <ViewsContext.Provider value={views}>
      <ReactFlow
        key={shape /* a new shape is fitted to the view again */}
        nodes={flowNodes}
        edges={edges}
        nodeTypes={nodeTypes}
        fitView
        fitViewOptions={FIT_VIEW}
        minZoom={0.02}
        maxZoom={2}
        nodesDraggable={false}
        nodesConnectable={false}
        onlyRenderVisibleElements={large}
        onNodeClick={onNodeClick}
        onSelectionChange={onSelectionChange}
      >
        <Background gap={24} />
        <Controls showInteractive={false} />
        {!large && nodes.length > 12 && (
          <MiniMap pannable zoomable position="top-right" style={{ width: 140, height: 90 }} />
        )}
      </ReactFlow>
      </ViewsContext.Provider>
    </div>
  );
}
