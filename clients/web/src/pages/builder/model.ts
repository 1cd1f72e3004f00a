// The builder's model: the canvas holds React Flow nodes whose data is a raypipe.v1 Node
// message (without depends_on) and edges whose direction is upstream -> downstream. The
// PipelineSpec is derived from them; violations the server gives for `spec.nodes[i]...` are
// mapped back to the node that was at index i of the spec that was sent.
import { create, fromJson, toJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  ArtifactKind,
  FailurePolicy,
  NodeSchema,
  PipelineSpecSchema,
  type FieldViolation,
  type Node as SpecNode,
  type NodeType,
  type PipelineSpec,
  type TrackingPolicy,
} from "@raypipe/client/web";
import type { Edge, Node as FlowNode, XYPosition } from "@xyflow/react";
import { layout } from "../../graph/layout";

/** What a canvas node carries: the spec node (its depends_on comes from the edges). */
export type BuilderData = {
  node: SpecNode;
  /** depends_on entries that name no node on the canvas (from an imported spec), kept so the server flags them. */
  danglingDeps: string[];
};
export type BuilderFlowNode = FlowNode<BuilderData, "builder">;

/** Pipeline-level settings. */
export interface SpecSettings {
  /** Rows of the parameters editor, in order: the default as the user wrote it. */
  parameters: ParamRow[];
  failurePolicy: FailurePolicy;
  tracking: TrackingPolicy | undefined;
}

export interface ParamRow {
  readonly key: string;
  name: string;
  text: string;
}

export const EMPTY_SETTINGS: SpecSettings = { parameters: [], failurePolicy: FailurePolicy.UNSPECIFIED, tracking: undefined };

export function kindName(kind: ArtifactKind): string {
  return ArtifactKind[kind] ?? String(kind);
}

/** The first line of a type's description, without reStructuredText's double backquotes. */
export function firstLine(description: string): string {
  return (description.split("\n")[0] ?? "").replace(/``/g, "");
}

// ---------------------------------------------------------------------------------------------
// Kinds and connections

/** The kinds a type accepts from upstream; empty: accepts nothing. */
function accepted(type: NodeType): ArtifactKind[] {
  return type.inputs.filter((k) => k !== ArtifactKind.NONE && k !== ArtifactKind.UNSPECIFIED);
}

/** Whether a node of this type can have upstream nodes at all (unknown types: yes, the server decides). */
export function takesInputs(type: NodeType | undefined): boolean {
  return type === undefined || accepted(type).length > 0;
}

/** Why `source` cannot feed `target` by artifact kind; null when it can. */
export function kindProblem(source: NodeType | undefined, target: NodeType | undefined): string | null {
  if (!source || !target) return null; // an unknown type: the server's validation says what is wrong
  const accepts = accepted(target);
  if (accepts.length === 0) return `${target.type} takes no inputs`;
  if (accepts.includes(ArtifactKind.ANY)) return null;
  if (source.output === ArtifactKind.ANY) return null;
  if (accepts.includes(source.output)) return null;
  const gives = source.output === ArtifactKind.NONE ? "gives nothing" : `gives ${kindName(source.output)}`;
  return `${target.type} takes ${accepts.map(kindName).join(" or ")}; ${source.type} ${gives}`;
}

/** Whether `to` is reachable from `from` along the edges (upstream -> downstream). */
function reaches(edges: readonly Edge[], from: string, to: string): boolean {
  const out = new Map<string, string[]>();
  for (const e of edges) {
    const list = out.get(e.source);
    if (list) list.push(e.target);
    else out.set(e.source, [e.target]);
  }
  const seen = new Set<string>([from]);
  const stack = [from];
  while (stack.length) {
    const id = stack.pop()!;
    if (id === to) return true;
    for (const next of out.get(id) ?? []) {
      if (!seen.has(next)) {
        seen.add(next);
        stack.push(next);
      }
    }
  }
  return false;
}

/** Why an edge source -> target (canvas keys) is refused; null when it is allowed. */
export function connectionProblem(
  nodes: readonly BuilderFlowNode[],
  edges: readonly Edge[],
  types: ReadonlyMap<string, NodeType>,
  sourceKey: string,
  targetKey: string,
): string | null {
  const source = nodes.find((n) => n.id === sourceKey);
  const target = nodes.find((n) => n.id === targetKey);
  if (!source || !target) return "unknown node";
  const s = source.data.node;
  const t = target.data.node;
  if (sourceKey === targetKey) return `${s.id} cannot depend on itself`;
  if (edges.some((e) => e.source === sourceKey && e.target === targetKey)) return `${t.id} already depends on ${s.id}`;
  const kinds = kindProblem(types.get(s.type), types.get(t.type));
  if (kinds) return `${s.id} → ${t.id}: ${kinds}`;
  if (reaches(edges, targetKey, sourceKey)) return `${s.id} → ${t.id} would make a cycle (${s.id} already depends on ${t.id})`;
  return null;
}

export function edgeId(source: string, target: string): string {
  return `e:${source}->${target}`;
}

export function makeEdge(source: string, target: string): Edge {
  return { id: edgeId(source, target), source, target };
}

// ---------------------------------------------------------------------------------------------
// Ids

/** A node id for a new node of `type`: `type`, `type_2`, `type_3`, ... not taken yet. */
export function uniqueNodeId(type: string, taken: ReadonlySet<string>): string {
  let base = type.toLowerCase().replace(/[^a-z0-9_]/g, "_");
  if (!/^[a-z]/.test(base)) base = `n_${base}`;
  base = base.slice(0, 58);
  if (!taken.has(base)) return base;
  for (let i = 2; ; i++) {
    const id = `${base}_${i}`;
    if (!taken.has(id)) return id;
  }
}

let keyCounter = 0;
/** A canvas key, stable while the node's spec id is edited. */
export function newKey(): string {
  keyCounter += 1;
  return `k${Date.now().toString(36)}_${keyCounter}`;
}

export function newSpecNode(id: string, type: string): SpecNode {
  return create(NodeSchema, { id, type });
}

// ---------------------------------------------------------------------------------------------
// Parameters editor values

/** A parameter default as the user wrote it: a number, a boolean, null, JSON, or else the text itself. */
export function typedDefault(text: string): JsonValue {
  const t = text.trim();
  if (t === "true") return true;
  if (t === "false") return false;
  if (t === "null") return null;
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t)) return Number(t);
  if (/^["[{]/.test(t)) {
    try {
      return JSON.parse(t) as JsonValue;
    } catch {
      // not JSON: the text itself
    }
  }
  return text;
}

export function defaultText(value: JsonValue): string {
  if (typeof value === "string") {
    return typedDefault(value) === value ? value : JSON.stringify(value);
  }
  return JSON.stringify(value);
}

// ---------------------------------------------------------------------------------------------
// Spec <-> canvas

/** The upstream keys of each node, in edge order. */
export function upstreamKeys(edges: readonly Edge[]): Map<string, string[]> {
  const deps = new Map<string, string[]>();
  for (const e of edges) {
    const list = deps.get(e.target);
    if (list) list.push(e.source);
    else deps.set(e.target, [e.source]);
  }
  return deps;
}

export function buildSpec(nodes: readonly BuilderFlowNode[], edges: readonly Edge[], settings: SpecSettings): PipelineSpec {
  const idOf = new Map(nodes.map((n) => [n.id, n.data.node.id]));
  const deps = upstreamKeys(edges);
  const parameters: PipelineSpec["parameters"] = {};
  for (const row of settings.parameters) {
    if (row.name.trim() === "" && row.text.trim() === "") continue;
    parameters[row.name.trim()] = fromJson(ValueSchema, typedDefault(row.text));
  }
  return create(PipelineSpecSchema, {
    nodes: nodes.map((n) => ({
      ...n.data.node,
      dependsOn: [...(deps.get(n.id) ?? []).map((k) => idOf.get(k) ?? k), ...n.data.danglingDeps],
    })),
    parameters,
    failurePolicy: settings.failurePolicy,
    tracking: settings.tracking,
  });
}

/** A spec's nodes on the canvas, laid out automatically, and its pipeline-level settings. */
export function canvasFromSpec(spec: PipelineSpec): { nodes: BuilderFlowNode[]; edges: Edge[]; settings: SpecSettings } {
  const keyOf = new Map<string, string>();
  const keyed = spec.nodes.map((n) => {
    const key = newKey();
    if (!keyOf.has(n.id)) keyOf.set(n.id, key);
    return { key, node: n };
  });
  const edges: Edge[] = [];
  const nodes: BuilderFlowNode[] = keyed.map(({ key, node }) => {
    const danglingDeps: string[] = [];
    for (const dep of node.dependsOn) {
      const source = keyOf.get(dep);
      if (source === undefined || edges.some((e) => e.source === source && e.target === key)) danglingDeps.push(dep);
      else edges.push(makeEdge(source, key));
    }
    return {
      id: key,
      type: "builder",
      position: { x: 0, y: 0 },
      data: { node: { ...node, dependsOn: [] }, danglingDeps },
    };
  });
  const settings: SpecSettings = {
    parameters: Object.entries(spec.parameters).map(([name, value]) => ({
      key: newKey(),
      name,
      text: defaultText(toJson(ValueSchema, value)),
    })),
    failurePolicy: spec.failurePolicy,
    tracking: spec.tracking,
  };
  return { nodes: autoLayout(nodes, edges), edges, settings };
}

export function autoLayout(nodes: readonly BuilderFlowNode[], edges: readonly Edge[]): BuilderFlowNode[] {
  const deps = upstreamKeys(edges);
  const positions = layout(nodes.map((n) => ({ id: n.id, dependsOn: deps.get(n.id) ?? [] })));
  return nodes.map((n) => ({ ...n, position: positions.get(n.id) ?? n.position }));
}

/** The first free spot at or below `p` (so nodes added at one place do not pile up). */
export function freeSpot(nodes: readonly BuilderFlowNode[], p: XYPosition, width: number, height: number): XYPosition {
  let y = p.y;
  for (let i = 0; i < 50; i++) {
    const hit = nodes.some((n) => Math.abs(n.position.x - p.x) < width && Math.abs(n.position.y - y) < height);
    if (!hit) return { x: p.x, y };
    y += height + 20;
  }
  return { x: p.x, y };
}

// ---------------------------------------------------------------------------------------------
// Violations

/** Violations of one node by field key (`id`, `params.test_size`, `resources.num_cpus`, `depends_on`, `node`, ...). */
export type NodeProblems = Map<string, string[]>;

export interface MappedViolations {
  /** By canvas key. */
  readonly byNode: Map<string, NodeProblems>;
  /** Violations that name no node: spec-level ones, the pipeline's fields. */
  readonly other: FieldViolation[];
}

const NODE_PATH = /^(?:pipeline_version\.)?spec\.nodes\[(\d+)\](.*)$/;

/** The field key a violation's remaining path (after `spec.nodes[i]`) is shown on. */
export function fieldKey(rest: string): string {
  const path = rest.replace(/^\./, "");
  if (path === "") return "node";
  const segments = path.split(".");
  const head = segments[0]!.replace(/\[\d+\]$/, "");
  const second = segments[1]?.replace(/\[\d+\]$/, "");
  switch (head) {
    case "params":
      return second ? `params.${second}` : "params";
    case "resources":
      return second ? `resources.${second}` : "resources";
    case "retry":
      return second === "max_retries" ? "retry.max_retries" : "retry";
    case "cache":
      return "cache";
    default:
      return head;
  }
}

/** Maps violations to nodes: index i of the spec that was sent is `keys[i]`. */
export function mapViolations(violations: readonly FieldViolation[], keys: readonly string[]): MappedViolations {
  const byNode = new Map<string, NodeProblems>();
  const other: FieldViolation[] = [];
  for (const v of violations) {
    const match = NODE_PATH.exec(v.field);
    const key = match ? keys[Number(match[1])] : undefined;
    if (!match || key === undefined) {
      other.push(v);
      continue;
    }
    const field = fieldKey(match[2] ?? "");
    let problems = byNode.get(key);
    if (!problems) {
      problems = new Map();
      byNode.set(key, problems);
    }
    const list = problems.get(field);
    if (list) list.push(v.description);
    else problems.set(field, [v.description]);
  }
  return { byNode, other };
}

export function mergeProblems(a: MappedViolations | null, b: MappedViolations | null): MappedViolations {
  const byNode = new Map<string, NodeProblems>();
  for (const m of [a, b]) {
    if (!m) continue;
    for (const [key, problems] of m.byNode) {
      const into: NodeProblems = byNode.get(key) ?? new Map();
      for (const [field, list] of problems) {
        const have = into.get(field) ?? [];
        into.set(field, [...have, ...list.filter((d) => !have.includes(d))]);
      }
      byNode.set(key, into);
    }
  }
  const other: FieldViolation[] = [];
  for (const v of [...(a?.other ?? []), ...(b?.other ?? [])]) {
    if (!other.some((o) => o.field === v.field && o.description === v.description)) other.push(v);
  }
  return { byNode, other };
}

// ---------------------------------------------------------------------------------------------
// JSON Schema (in Struct form) -> form fields

export type ParamWidget = "string" | "number" | "boolean" | "enum" | "json" | "value";

export interface ParamField {
  readonly name: string;
  readonly schema: JsonObject;
  readonly widget: ParamWidget;
  readonly required: boolean;
  readonly enumValues: readonly JsonValue[];
  readonly nullable: boolean;
  readonly hasDefault: boolean;
  readonly defaultValue: JsonValue | undefined;
  readonly description: string;
  /** A short summary of what the schema accepts: "number > 0 and < 1, or integer ≥ 1". */
  readonly accepts: string;
}

function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function jsonType(v: JsonValue): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

/** Every JSON type a schema admits, looking through oneOf/anyOf/enum/const. */
function schemaTypes(schema: JsonObject, depth = 0): Set<string> {
  const out = new Set<string>();
  const type = schema["type"];
  if (typeof type === "string") out.add(type);
  else if (Array.isArray(type)) for (const t of type) if (typeof t === "string") out.add(t);
  const en = schema["enum"];
  if (Array.isArray(en)) for (const v of en) out.add(jsonType(v));
  if ("const" in schema) out.add(jsonType(schema["const"] ?? null));
  if (depth < 3) {
    for (const k of ["oneOf", "anyOf"]) {
      const alts = schema[k];
      if (Array.isArray(alts)) for (const alt of alts) if (isObject(alt)) for (const t of schemaTypes(alt, depth + 1)) out.add(t);
    }
  }
  return out;
}

function fmt(n: JsonValue | undefined): string {
  return typeof n === "number" ? String(n) : JSON.stringify(n);
}

function summary(schema: JsonObject, depth = 0): string {
  const parts: string[] = [];
  const en = schema["enum"];
  if (Array.isArray(en)) return `one of ${en.map((v) => (typeof v === "string" ? v : JSON.stringify(v))).join(", ")}`;
  if ("const" in schema) return JSON.stringify(schema["const"]);
  for (const k of ["oneOf", "anyOf"]) {
    const alts = schema[k];
    if (Array.isArray(alts) && depth < 2) return alts.filter(isObject).map((a) => summary(a, depth + 1)).join(", or ");
  }
  const type = schema["type"];
  parts.push(Array.isArray(type) ? type.join(" or ") : typeof type === "string" ? type : "any value");
  const bounds: string[] = [];
  if (schema["minimum"] !== undefined) bounds.push(`≥ ${fmt(schema["minimum"])}`);
  if (schema["exclusiveMinimum"] !== undefined) bounds.push(`> ${fmt(schema["exclusiveMinimum"])}`);
  if (schema["maximum"] !== undefined) bounds.push(`≤ ${fmt(schema["maximum"])}`);
  if (schema["exclusiveMaximum"] !== undefined) bounds.push(`< ${fmt(schema["exclusiveMaximum"])}`);
  if (bounds.length) parts.push(bounds.join(" and "));
  const items = schema["items"];
  if (isObject(items) && Array.isArray(items["enum"])) parts.push(`of ${summary(items, depth + 1)}`);
  else if (isObject(items) && typeof items["type"] === "string") parts.push(`of ${items["type"]}`);
  return parts.join(" ");
}

export function paramFields(type: NodeType | undefined): ParamField[] {
  const schema = type?.parameterSchema;
  const properties = schema?.["properties"];
  if (!isObject(properties)) return [];
  const requiredList = schema?.["required"];
  const required = new Set(Array.isArray(requiredList) ? requiredList.filter((r): r is string => typeof r === "string") : []);
  const fields: ParamField[] = [];
  for (const [name, raw] of Object.entries(properties)) {
    const prop: JsonObject = isObject(raw) ? raw : {};
    const types = schemaTypes(prop);
    const nullable = types.has("null");
    types.delete("null");
    const en = prop["enum"];
    let widget: ParamWidget;
    if (Array.isArray(en) && en.length > 0) widget = "enum";
    else if (types.size === 1 && types.has("boolean")) widget = "boolean";
    else if (types.size === 1 && types.has("string")) widget = "string";
    else if (types.size > 0 && [...types].every((t) => t === "number" || t === "integer")) widget = "number";
    else if (types.size > 0 && [...types].every((t) => t === "object" || t === "array")) widget = "json";
    else widget = "value";
    const description = typeof prop["description"] === "string" ? prop["description"] : "";
    fields.push({
      name,
      schema: prop,
      widget,
      required: required.has(name),
      enumValues: Array.isArray(en) ? en : [],
      nullable,
      hasDefault: "default" in prop,
      defaultValue: prop["default"],
      description,
      accepts: summary(prop),
    });
  }
  fields.sort((a, b) => Number(b.required) - Number(a.required) || a.name.localeCompare(b.name));
  return fields;
}

/** Text typed in a number or mixed field as a JSON value: a number, true/false/null, JSON, else the text. */
export function parseValueText(text: string): JsonValue | undefined {
  const t = text.trim();
  if (t === "") return undefined;
  try {
    return JSON.parse(t) as JsonValue;
  } catch {
    return text;
  }
}

export function valueText(value: JsonValue | undefined): string {
  if (value === undefined) return "";
  if (typeof value === "string") return parseValueText(value) === value ? value : JSON.stringify(value);
  return JSON.stringify(value);
}

export function sameJson(a: JsonValue | undefined, b: JsonValue | undefined): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
