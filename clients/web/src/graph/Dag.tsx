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
import { memo, useMemo, useRef } from "react";
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

type DagNodeData = { node: DagNode; selected: boolean };
type FlowNode = Node<DagNodeData, "dag">;

const DagNodeView = memo(function DagNodeView({ data }: NodeProps<FlowNode>) {
  const { node } = data;
  const state = node.state?.toLowerCase() ?? "none";
  return (
    <div
      className={`dag-node state-${state}${data.selected ? " selected" : ""}${node.flagged ? " flagged" : ""}`}
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

/** The graph's shape as a string: the layout is recomputed only when this changes. */
function shapeKey(nodes: readonly DagNode[]): string {
  return nodes.map((n) => `${n.id}<${n.dependsOn.join(",")}`).join(";");
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
  // One React Flow node per DagNode object, made again only when that object (or whether it
  // is selected) changes: a live run that changes 3 of 2,000 nodes redraws those 3.
  const cache = useRef(new Map<string, { source: DagNode; selected: boolean; flow: FlowNode }>());
  const flowNodes = useMemo<FlowNode[]>(() => {
    const previous = cache.current;
    const next = new Map<string, { source: DagNode; selected: boolean; flow: FlowNode }>();
    const out = nodes.map((n) => {
      const isSelected = n.id === selected;
      const old = previous.get(n.id);
      const position = positions.get(n.id) ?? { x: 0, y: 0 };
      const flow =
        old && old.source === n && old.selected === isSelected && old.flow.position === position
          ? old.flow
          : {
              id: n.id,
              type: "dag" as const,
              position,
              data: { node: n, selected: isSelected },
              draggable: false,
              connectable: false,
              ariaLabel: `node ${n.id}${n.state ? `, ${n.state}` : ""}`,
            };
      next.set(n.id, { source: n, selected: isSelected, flow });
      return flow;
    });
    cache.current = next;
    return out;
  }, [nodes, positions, selected]);
  const large = nodes.length > 300;
  return (
    <div className="dag" style={{ height: props.height ?? 420 }} aria-label={props.label} role="figure">
      <ReactFlow
        nodes={flowNodes}
        edges={edges}
        nodeTypes={nodeTypes}
        fitView
        minZoom={0.02}
        maxZoom={2}
        nodesDraggable={false}
        nodesConnectable={false}
        onlyRenderVisibleElements={large}
        onNodeClick={(_, node) => onSelect?.(node.id)}
        onSelectionChange={({ nodes: chosen }) => {
          // Keyboard selection too: a focused node selected with Enter.
          const first = chosen[0];
          if (first && first.id !== selected) onSelect?.(first.id);
        }}
      >
        <Background gap={24} />
        <Controls showInteractive={false} />
        {!large && nodes.length > 12 && (
          <MiniMap pannable zoomable position="top-right" style={{ width: 140, height: 90 }} />
        )}
      </ReactFlow>
    </div>
  );
}
