// Automatic layered layout of a DAG, left to right. Small graphs go through dagre (crossing
// minimisation, network-simplex ranking). dagre's cost grows much faster than the graph: on
// this project's machines a 200-node chain took 1 s, and a 2,000-node chain overflowed its
// recursion; elkjs took 4 to 6 s at 2,000 nodes. Larger graphs therefore get a linear-time
// layering: each node one layer right of its deepest dependency, ordered within its layer by
// the mean position of its dependencies, and a tall layer wrapped into several columns so the
// whole graph stays readable when fitted to the screen (a 2,000-way fan-out is a block, not
// a 100,000-pixel line).
import dagre from "@dagrejs/dagre";

export interface LayoutNode {
  readonly id: string;
  readonly dependsOn: readonly string[];
}

export interface Point {
  readonly x: number;
  readonly y: number;
}

export const NODE_WIDTH = 180;
export const NODE_HEIGHT = 48;
/** At most this many nodes go through dagre; more get the linear layering. */
export const DAGRE_LIMIT = 150;
const LAYER_GAP = 70;
const ROW_GAP = 14;
/** A layer with more nodes than this is wrapped into columns of this many. */
const COLUMN_LIMIT = 40;

export function layout(nodes: readonly LayoutNode[]): Map<string, Point> {
  return nodes.length <= DAGRE_LIMIT ? dagreLayout(nodes) : layeredLayout(nodes);
}

function dagreLayout(nodes: readonly LayoutNode[]): Map<string, Point> {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "LR", nodesep: ROW_GAP + 6, ranksep: LAYER_GAP, marginx: 10, marginy: 10 });
  g.setDefaultEdgeLabel(() => ({}));
  const ids = new Set(nodes.map((n) => n.id));
  for (const n of nodes) g.setNode(n.id, { width: NODE_WIDTH, height: NODE_HEIGHT });
  for (const n of nodes) for (const d of n.dependsOn) if (ids.has(d)) g.setEdge(d, n.id);
  dagre.layout(g);
  const out = new Map<string, Point>();
  for (const n of nodes) {
    const p = g.node(n.id);
    out.set(n.id, { x: p.x - NODE_WIDTH / 2, y: p.y - NODE_HEIGHT / 2 });
  }
  return out;
}

/** Layers by longest path (Kahn's order); nodes in a cycle or with unknown deps go to layer 0. */
export function layers(nodes: readonly LayoutNode[]): string[][] {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const children = new Map<string, string[]>();
  const indegree = new Map<string, number>();
  for (const n of nodes) {
    const deps = n.dependsOn.filter((d) => byId.has(d) && d !== n.id);
    indegree.set(n.id, deps.length);
    for (const d of deps) {
      const list = children.get(d);
      if (list) list.push(n.id);
      else children.set(d, [n.id]);
    }
  }
  const layer = new Map<string, number>();
  const queue: string[] = [];
  for (const n of nodes) if (indegree.get(n.id) === 0) queue.push(n.id);
  for (let head = 0; head < queue.length; head++) {
    const id = queue[head]!;
    const level = layer.get(id) ?? 0;
    layer.set(id, level);
    for (const c of children.get(id) ?? []) {
      layer.set(c, Math.max(layer.get(c) ?? 0, level + 1));
      const left = (indegree.get(c) ?? 0) - 1;
      indegree.set(c, left);
      if (left === 0) queue.push(c);
    }
  }
  const out: string[][] = [];
  for (const n of nodes) {
    const level = layer.get(n.id) ?? 0;
    (out[level] ??= []).push(n.id);
  }
  return out.filter((l) => l !== undefined);
}

function layeredLayout(nodes: readonly LayoutNode[]): Map<string, Point> {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const rowOf = new Map<string, number>();
  const out = new Map<string, Point>();
  let x = 0;
  for (const layer of layers(nodes)) {
    // Order by the mean row of the dependencies (barycentre), keeping the spec's order on ties.
    const keyed = layer.map((id, index) => {
      const deps = byId.get(id)!.dependsOn.filter((d) => rowOf.has(d));
      const mean = deps.length ? deps.reduce((s, d) => s + rowOf.get(d)!, 0) / deps.length : index;
      return { id, mean, index };
    });
    keyed.sort((a, b) => a.mean - b.mean || a.index - b.index);
    const columns = Math.ceil(keyed.length / COLUMN_LIMIT);
    const perColumn = Math.ceil(keyed.length / columns);
    keyed.forEach(({ id }, i) => {
      const column = Math.floor(i / perColumn);
      const row = i % perColumn;
      rowOf.set(id, i);
      out.set(id, { x: x + column * (NODE_WIDTH + ROW_GAP), y: row * (NODE_HEIGHT + ROW_GAP) });
    });
    x += columns * (NODE_WIDTH + ROW_GAP) - ROW_GAP + LAYER_GAP;
  }
  return out;
}
