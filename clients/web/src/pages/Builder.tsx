// The visual pipeline builder (/builder, /builder?pipeline={id}&version={n}): a palette of the
// server's node types (ListNodeTypes), an editable React Flow canvas whose edges are checked
// by artifact kind, a side form for the selected node generated from its type's parameter
// schema, pipeline-level settings, live validation (ValidatePipelineSpec, debounced) with each
// violation shown on its node and field, YAML import/export in the format `raypipe apply`
// reads, and saving as a new version (the client's apply()).
import { toJsonString } from "@bufbuild/protobuf";
import { Code, hasCode, PipelineSpecSchema, type NodeType, type Node as SpecNode } from "@raypipe/client/web";
import {
  applyEdgeChanges,
  applyNodeChanges,
  Background,
  Controls,
  MarkerType,
  MiniMap,
  ReactFlow,
  ReactFlowProvider,
  useReactFlow,
  type Connection,
  type Edge,
  type EdgeChange,
  type FinalConnectionState,
  type NodeChange,
  type XYPosition,
} from "@xyflow/react";
import { useCallback, useEffect, useMemo, useRef, useState, type DragEvent } from "react";
import { useSearchParams } from "react-router";
import { client, shownError, type ShownError } from "../api";
import { ErrorBanner, Loading, useLoad } from "../components/common";
import { NODE_HEIGHT, NODE_WIDTH } from "../graph/layout";
import { BuilderNodeView, type BuilderViewNode } from "./builder/BuilderNode";
import {
  autoLayout,
  buildSpec,
  canvasFromSpec,
  connectionProblem,
  EMPTY_SETTINGS,
  firstLine,
  freeSpot,
  kindName,
  kindProblem,
  makeEdge,
  mapViolations,
  mergeProblems,
  newKey,
  newSpecNode,
  uniqueNodeId,
  type BuilderFlowNode,
  type MappedViolations,
  type NodeProblems,
  type SpecSettings,
} from "./builder/model";
import { NodeForm } from "./builder/NodeForm";
import { PipelineSettings } from "./builder/PipelineSettings";
import { SaveForm } from "./builder/SaveForm";
import { downloadText, ExportPanel, ImportPanel, specYaml } from "./builder/YamlPanels";
import { useValidation } from "./builder/useValidation";

/** The drag-and-drop data type a palette item carries: the node type's name. */
export const DND_TYPE = "application/raypipe-node-type";

const nodeTypes = { builder: BuilderNodeView };

export function BuilderPage() {
  return (
    <ReactFlowProvider>
      <Builder />
    </ReactFlowProvider>
  );
}

function problemLines(problems: NodeProblems | undefined): string[] {
  if (!problems) return [];
  const out: string[] = [];
  for (const [field, list] of problems) for (const d of list) out.push(field === "node" ? d : `${field}: ${d}`);
  return out;
}

function Palette(props: { types: readonly NodeType[]; onAdd: (type: string) => void }) {
  return (
    <ul className="palette builder-palette" aria-label="Node types">
      {props.types.map((t) => {
        const inputs = t.inputs.map(kindName).join(", ") || "none";
        const summary = firstLine(t.description);
        return (
          <li
            key={t.type}
            className="palette-item"
            draggable
            data-testid={`palette-item-${t.type}`}
            title={`${t.type}: drag onto the canvas, or press Add`}
            onDragStart={(e) => {
              e.dataTransfer.setData(DND_TYPE, t.type);
              e.dataTransfer.setData("text/plain", t.type);
              e.dataTransfer.effectAllowed = "copyMove";
            }}
          >
            <div className="row builder-palette-head">
              <strong className="mono">{t.type}</strong>
              <span className="spacer" />
              <button type="button" aria-label={`Add ${t.type}`} onClick={() => props.onAdd(t.type)}>
                Add
              </button>
            </div>
            <div className="hint">{summary}</div>
            <div className="kinds">
              in: {inputs} → out: {kindName(t.output)}
            </div>
          </li>
        );
      })}
    </ul>
  );
}

function ValidationPanel(props: {
  validation: ReturnType<typeof useValidation>;
  problems: MappedViolations;
  idOf: (key: string) => string | undefined;
  onSelect: (key: string) => void;
}) {
  const v = props.validation;
  const state = v.state === "empty" ? "empty" : v.pending ? "checking" : v.state;
  let text: string;
  if (state === "empty") text = "Empty: add nodes from the palette.";
  else if (state === "checking") text = "Checking…";
  else if (v.state === "valid") text = `Valid. Order: ${v.order.join(" → ")}`;
  else if (v.state === "invalid") {
    const n = v.error.violations.length || 1;
    text = `Invalid: ${n} problem${n > 1 ? "s" : ""}`;
  } else if (v.state === "error") text = `Could not validate: ${v.error.code} ${v.error.message}`;
  else text = "";
  const nodeProblems = [...props.problems.byNode.entries()].filter(([key]) => props.idOf(key) !== undefined);
  return (
    <section className="panel builder-validation" aria-label="Validation">
      <div className={`builder-validation-status state-${state}`} data-testid="validation-status" data-state={state} role="status" aria-live="polite">
        {text}
      </div>
      {v.state === "invalid" && !v.pending && v.error.violations.length === 0 && <p className="field-error">{v.error.message}</p>}
      {nodeProblems.length > 0 && (
        <ul className="builder-problems" data-testid="node-problems" aria-label="Problems of nodes">
          {nodeProblems.map(([key, problems]) => (
            <li key={key}>
              <button type="button" className="linklike" onClick={() => props.onSelect(key)} aria-label={`Select node ${props.idOf(key)}`}>
                {props.idOf(key)}
              </button>
              : {problemLines(problems).join("; ")}
            </li>
          ))}
        </ul>
      )}
      {props.problems.other.length > 0 && (
        <ul className="builder-problems" data-testid="validation-problems" aria-label="Problems not on a node">
          {props.problems.other.map((p) => (
            <li key={`${p.field}:${p.description}`}>
              <code>{p.field}</code>: {p.description}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

function Builder() {
  const [search] = useSearchParams();
  const pipelineParam = search.get("pipeline") ?? "";
  const versionParam = search.get("version") ?? "";
  const rf = useReactFlow<BuilderViewNode, Edge>();
  const wrapper = useRef<HTMLDivElement>(null);

  const types = useLoad((signal) => client.pipelines.listNodeTypes({}, { signal }).then((r) => r.nodeTypes), []);
  const typeMap = useMemo(() => new Map((types.data ?? []).map((t) => [t.type, t])), [types.data]);

  const [nodes, setNodes] = useState<BuilderFlowNode[]>([]);
  const [edges, setEdges] = useState<Edge[]>([]);
  const [settings, setSettings] = useState<SpecSettings>(EMPTY_SETTINGS);
  const [status, setStatus] = useState("");
  const [pipelineId, setPipelineId] = useState(pipelineParam);
  const [displayName, setDisplayName] = useState("");
  const [panel, setPanel] = useState<"none" | "import" | "export">("none");
  const [loadError, setLoadError] = useState<ShownError | null>(null);
  const [loadNote, setLoadNote] = useState("");
  const [loading, setLoading] = useState(false);
  const [saveProblems, setSaveProblems] = useState<{ specKey: string; mapped: MappedViolations } | null>(null);

  const spec = useMemo(() => buildSpec(nodes, edges, settings), [nodes, edges, settings]);
  const specKey = useMemo(() => toJsonString(PipelineSpecSchema, spec), [spec]);
  const nodeKeys = useMemo(() => nodes.map((n) => n.id), [nodes]);
  const validation = useValidation(spec, specKey, nodeKeys);

  const problems = useMemo(() => {
    const fromValidation = validation.state === "invalid" ? validation.mapped : null;
    const fromSave = saveProblems && saveProblems.specKey === specKey ? saveProblems.mapped : null;
    return mergeProblems(fromValidation, fromSave);
  }, [validation, saveProblems, specKey]);

  const idByKey = useMemo(() => new Map(nodes.map((n) => [n.id, n.data.node.id])), [nodes]);
  const idOfKey = useCallback((key: string) => idByKey.get(key), [idByKey]);

  // ------------------------------------------------------------------ loading ?pipeline=&version=
  useEffect(() => {
    if (!pipelineParam) return;
    const controller = new AbortController();
    const signal = controller.signal;
    setPipelineId(pipelineParam);
    setLoadError(null);
    setLoadNote("");
    setLoading(true);
    (async () => {
      const name = `pipelines/${pipelineParam}`;
      let defaultVersion = "";
      try {
        const { pipeline } = await client.pipelines.getPipeline({ name }, { signal });
        setDisplayName(pipeline?.displayName ?? "");
        defaultVersion = pipeline?.defaultVersion ?? "";
      } catch (err) {
        if (hasCode(err, Code.NotFound) && !versionParam) {
          if (!signal.aborted) setLoadNote(`Pipeline ${pipelineParam} does not exist yet: Save creates it.`);
          return;
        }
        throw err;
      }
      const versionName = versionParam ? `${name}/versions/${versionParam}` : defaultVersion;
      if (!versionName) {
        if (!signal.aborted) setLoadNote(`Pipeline ${pipelineParam} has no version yet: Save stores its first.`);
        return;
      }
      const { pipelineVersion } = await client.pipelines.getPipelineVersion({ name: versionName }, { signal });
      if (signal.aborted || !pipelineVersion?.spec) return;
      const canvas = canvasFromSpec(pipelineVersion.spec);
      setNodes(canvas.nodes);
      setEdges(canvas.edges);
      setSettings(canvas.settings);
      setLoadNote(`Started from ${pipelineParam} version ${pipelineVersion.versionNumber}; saving stores a new version.`);
      setTimeout(() => void rf.fitView({ padding: 0.15, maxZoom: 1 }), 0);
    })()
      .catch((err: unknown) => {
        if (!signal.aborted) setLoadError(shownError(err));
      })
      .finally(() => {
        if (!signal.aborted) setLoading(false);
      });
    return () => controller.abort();
  }, [pipelineParam, versionParam, rf]);

  // ------------------------------------------------------------------ selection and editing
  const selectedNodes = nodes.filter((n) => n.selected);
  const selected = selectedNodes.length === 1 ? selectedNodes[0] : undefined;
  const selectedEdges = edges.filter((e) => e.selected);

  const selectOnly = useCallback((key: string) => {
    setNodes((ns) => ns.map((n) => (n.id === key ? (n.selected ? n : { ...n, selected: true }) : n.selected ? { ...n, selected: false } : n)));
    setEdges((es) => es.map((e) => (e.selected ? { ...e, selected: false } : e)));
  }, []);

  const updateNode = useCallback((key: string, node: SpecNode) => {
    setNodes((ns) => ns.map((n) => (n.id === key ? { ...n, data: { ...n.data, node } } : n)));
  }, []);

  /** Scrolls the canvas so that a node at `p` can be seen, if it is outside the view. */
  const ensureVisible = useCallback(
    (p: XYPosition) => {
      const rect = wrapper.current?.getBoundingClientRect();
      if (!rect) return;
      const a = rf.screenToFlowPosition({ x: rect.left, y: rect.top });
      const b = rf.screenToFlowPosition({ x: rect.right, y: rect.bottom });
      if (p.x < a.x || p.y < a.y || p.x + NODE_WIDTH > b.x || p.y + NODE_HEIGHT > b.y) {
        setTimeout(() => void rf.fitView({ padding: 0.15, maxZoom: 1 }), 0);
      }
    },
    [rf],
  );

  const addNode = useCallback(
    (type: string, dropAt?: XYPosition) => {
      const taken = new Set(nodes.map((n) => n.data.node.id));
      const id = uniqueNodeId(type, taken);
      const key = newKey();
      const from = nodes.filter((n) => n.selected).length === 1 ? nodes.find((n) => n.selected) : undefined;
      let position: XYPosition;
      if (dropAt) position = dropAt;
      else {
        let p: XYPosition;
        if (from) p = { x: from.position.x + NODE_WIDTH + 70, y: from.position.y };
        else {
          const rect = wrapper.current?.getBoundingClientRect();
          const c = rect ? rf.screenToFlowPosition({ x: rect.left + rect.width / 2, y: rect.top + rect.height / 2 }) : { x: 0, y: 0 };
          p = { x: c.x - NODE_WIDTH / 2, y: c.y - NODE_HEIGHT / 2 };
        }
        position = freeSpot(nodes, p, NODE_WIDTH, NODE_HEIGHT);
      }
      const node: BuilderFlowNode = {
        id: key,
        type: "builder",
        position,
        selected: true,
        data: { node: newSpecNode(id, type), danglingDeps: [] },
      };
      setNodes((ns) => [...ns.map((n) => (n.selected ? { ...n, selected: false } : n)), node]);
      let note = `Added ${id}.`;
      let edge: Edge | null = null;
      if (from) {
        const problem = kindProblem(typeMap.get(from.data.node.type), typeMap.get(type));
        if (problem) note = `Added ${id}; not connected to ${from.data.node.id}: ${problem}.`;
        else {
          edge = makeEdge(from.id, key);
          note = `Added ${id} after ${from.data.node.id}.`;
        }
      }
      setEdges((es) => [...es.map((e) => (e.selected ? { ...e, selected: false } : e)), ...(edge ? [edge] : [])]);
      setStatus(note);
      ensureVisible(position);
    },
    [nodes, typeMap, rf, ensureVisible],
  );

  const deleteSelected = useCallback(() => {
    const gone = new Set(nodes.filter((n) => n.selected).map((n) => n.id));
    const goneEdges = edges.filter((e) => e.selected || gone.has(e.source) || gone.has(e.target));
    if (gone.size === 0 && goneEdges.length === 0) return;
    setNodes((ns) => ns.filter((n) => !gone.has(n.id)));
    setEdges((es) => es.filter((e) => !(e.selected || gone.has(e.source) || gone.has(e.target))));
    setStatus(`Deleted ${gone.size} node${gone.size === 1 ? "" : "s"} and ${goneEdges.length} edge${goneEdges.length === 1 ? "" : "s"}.`);
  }, [nodes, edges]);

  const deleteNode = useCallback(
    (key: string) => {
      const id = nodes.find((n) => n.id === key)?.data.node.id ?? key;
      setNodes((ns) => ns.filter((n) => n.id !== key));
      setEdges((es) => es.filter((e) => e.source !== key && e.target !== key));
      setStatus(`Deleted ${id}.`);
    },
    [nodes],
  );

  const connect = useCallback(
    (source: string, target: string) => {
      const problem = connectionProblem(nodes, edges, typeMap, source, target);
      if (problem) {
        setStatus(`Not connected: ${problem}.`);
        return;
      }
      setEdges((es) => [...es, makeEdge(source, target)]);
      setStatus(`Connected ${idOfKey(source)} → ${idOfKey(target)}.`);
    },
    [nodes, edges, typeMap, idOfKey],
  );

  // ------------------------------------------------------------------ React Flow callbacks
  const onNodesChange = useCallback((changes: NodeChange<BuilderViewNode>[]) => {
    setNodes((ns) => applyNodeChanges(changes as unknown as NodeChange<BuilderFlowNode>[], ns));
    if (changes.some((c) => c.type === "remove")) setStatus("Deleted the selection.");
  }, []);
  const onEdgesChange = useCallback((changes: EdgeChange<Edge>[]) => setEdges((es) => applyEdgeChanges(changes, es)), []);
  const isValidConnection = useCallback(
    (c: Connection | Edge) => connectionProblem(nodes, edges, typeMap, c.source, c.target) === null,
    [nodes, edges, typeMap],
  );
  const onConnect = useCallback((c: Connection) => connect(c.source, c.target), [connect]);
  const onConnectEnd = useCallback(
    (_: MouseEvent | TouchEvent, state: FinalConnectionState) => {
      if (state.isValid !== false || !state.fromNode || !state.toNode || !state.fromHandle) return;
      const fromSource = state.fromHandle.type === "source";
      if (state.toHandle && state.toHandle.type === state.fromHandle.type) {
        setStatus("Not connected: drag from a node's output (right) to another node's input (left).");
        return;
      }
      const [source, target] = fromSource ? [state.fromNode.id, state.toNode.id] : [state.toNode.id, state.fromNode.id];
      const problem = connectionProblem(nodes, edges, typeMap, source, target);
      setStatus(`Not connected: ${problem ?? "that connection is not allowed"}.`);
    },
    [nodes, edges, typeMap],
  );

  const onDragOver = (e: DragEvent<HTMLDivElement>) => {
    if (e.dataTransfer.types.includes(DND_TYPE)) {
      e.preventDefault();
      e.dataTransfer.dropEffect = e.dataTransfer.effectAllowed === "copy" ? "copy" : "move";
    }
  };
  const onDrop = (e: DragEvent<HTMLDivElement>) => {
    const type = e.dataTransfer.getData(DND_TYPE);
    if (!type) return;
    e.preventDefault();
    const p = rf.screenToFlowPosition({ x: e.clientX, y: e.clientY });
    addNode(type, { x: p.x - NODE_WIDTH / 2, y: p.y - NODE_HEIGHT / 2 });
  };

  const viewNodes = useMemo<BuilderViewNode[]>(
    () =>
      nodes.map((n) => ({
        ...n,
        ariaLabel: `node ${n.data.node.id} (${n.data.node.type})`,
        data: { ...n.data, nodeType: typeMap.get(n.data.node.type), problems: problemLines(problems.byNode.get(n.id)) },
      })),
    [nodes, typeMap, problems],
  );
  const viewEdges = useMemo<Edge[]>(
    () =>
      edges.map((e) => ({
        ...e,
        markerEnd: { type: MarkerType.ArrowClosed },
        ariaLabel: `edge ${idOfKey(e.source)} to ${idOfKey(e.target)}`,
      })),
    [edges, idOfKey],
  );

  const importSpec = (imported: typeof spec) => {
    const canvas = canvasFromSpec(imported);
    setNodes(canvas.nodes);
    setEdges(canvas.edges);
    setSettings(canvas.settings);
    setPanel("none");
    setStatus(`Imported ${canvas.nodes.length} node${canvas.nodes.length === 1 ? "" : "s"}.`);
    setTimeout(() => void rf.fitView({ padding: 0.15, maxZoom: 1 }), 0);
  };

  const yaml = useMemo(() => (panel === "export" ? specYaml(spec) : ""), [panel, spec]);
  const fileName = `${pipelineId.trim() || "pipeline"}.yaml`;

  // The side form's dependency choices: every other node, with the kind problem if any.
  const upstream = selected
    ? edges.filter((e) => e.target === selected.id).map((e) => ({ key: e.source, id: idOfKey(e.source) ?? e.source }))
    : [];
  const candidates = selected
    ? nodes
        .filter((n) => n.id !== selected.id)
        .map((n) => ({
          key: n.id,
          id: n.data.node.id,
          problem: kindProblem(typeMap.get(n.data.node.type), typeMap.get(selected.data.node.type)),
        }))
    : [];

  return (
    <section className="builder-page" aria-labelledby="builder-title">
      <div className="row">
        <h1 id="builder-title">Pipeline builder</h1>
        {loading && <Loading what="the pipeline version" />}
        {loadNote && <span className="muted" data-testid="load-note">{loadNote}</span>}
      </div>
      <ErrorBanner error={loadError} title="Could not load the pipeline version" />
      <SaveForm
        pipelineId={pipelineId}
        onPipelineId={setPipelineId}
        displayName={displayName}
        onDisplayName={setDisplayName}
        spec={spec}
        nodeKeys={nodeKeys}
        onSaved={(error, keys) =>
          setSaveProblems(error ? { specKey, mapped: mapViolations(error.violations, keys) } : null)
        }
      />
      <div className="builder">
        <aside className="panel builder-palette-panel" aria-labelledby="palette-title">
          <h2 id="palette-title">Node types</h2>
          <p className="hint">Drag a type onto the canvas, or press Add: it is connected after the selected node when the kinds fit.</p>
          <ErrorBanner error={types.error} title="Could not list node types" />
          {types.loading && !types.data && <Loading what="node types" />}
          {types.data && <Palette types={types.data} onAdd={(t) => addNode(t)} />}
        </aside>

        <div className="builder-center">
          <div className="row builder-toolbar" role="toolbar" aria-label="Canvas">
            <button
              type="button"
              onClick={() => {
                setNodes((ns) => autoLayout(ns, edges));
                setTimeout(() => void rf.fitView({ padding: 0.15, maxZoom: 1 }), 0);
              }}
              disabled={nodes.length === 0}
            >
              Auto layout
            </button>
            <button type="button" onClick={() => void rf.fitView({ padding: 0.15, maxZoom: 1 })} disabled={nodes.length === 0}>
              Fit view
            </button>
            <button
              type="button"
              className="danger"
              onClick={deleteSelected}
              disabled={selectedNodes.length === 0 && selectedEdges.length === 0}
              aria-label="Delete selected"
            >
              Delete selected
            </button>
            <span className="spacer" />
            <button type="button" aria-expanded={panel === "import"} onClick={() => setPanel(panel === "import" ? "none" : "import")}>
              Import YAML
            </button>
            <button
              type="button"
              onClick={() => {
                downloadText(specYaml(spec), fileName);
                setPanel("export");
              }}
            >
              Export YAML
            </button>
          </div>
          <div className="canvas builder-canvas" data-testid="builder-canvas" ref={wrapper} onDragOver={onDragOver} onDrop={onDrop}>
            <ReactFlow<BuilderViewNode, Edge>
              nodes={viewNodes}
              edges={viewEdges}
              nodeTypes={nodeTypes}
              onNodesChange={onNodesChange}
              onEdgesChange={onEdgesChange}
              onConnect={onConnect}
              onConnectEnd={onConnectEnd}
              isValidConnection={isValidConnection}
              deleteKeyCode={["Delete", "Backspace"]}
              minZoom={0.05}
              maxZoom={2}
              onlyRenderVisibleElements={nodes.length > 300}
              ariaLabelConfig={{ "node.a11yDescription.default": "Press Enter or Space to select, Delete to remove, arrow keys to move." }}
            >
              <Background gap={24} />
              <Controls />
              {nodes.length > 12 && nodes.length <= 300 && <MiniMap pannable zoomable />}
            </ReactFlow>
          </div>
          <p className="builder-status" role="status" aria-live="polite" data-testid="canvas-status">
            {status || "Select a node to edit it; drag from a node's right handle to another's left handle to connect them."}
          </p>
          <ValidationPanel validation={validation} problems={problems} idOf={idOfKey} onSelect={selectOnly} />
          {panel === "import" && <ImportPanel onImport={importSpec} onClose={() => setPanel("none")} />}
          {panel === "export" && <ExportPanel yaml={yaml} fileName={fileName} onClose={() => setPanel("none")} />}
        </div>

        <div className="builder-side">
          {selected ? (
            <NodeForm
              key={selected.id}
              node={selected.data.node}
              nodeType={typeMap.get(selected.data.node.type)}
              problems={problems.byNode.get(selected.id) ?? new Map()}
              upstream={upstream}
              danglingDeps={selected.data.danglingDeps}
              candidates={candidates}
              onChange={(node) => updateNode(selected.id, node)}
              onAddDependency={(key) => connect(key, selected.id)}
              onRemoveDependency={(key) => {
                setEdges((es) => es.filter((e) => !(e.source === key && e.target === selected.id)));
                setStatus(`Removed the dependency of ${selected.data.node.id} on ${idOfKey(key)}.`);
              }}
              onRemoveDangling={(dep) =>
                setNodes((ns) =>
                  ns.map((n) =>
                    n.id === selected.id ? { ...n, data: { ...n.data, danglingDeps: n.data.danglingDeps.filter((d) => d !== dep) } } : n,
                  ),
                )
              }
              onDelete={() => deleteNode(selected.id)}
            />
          ) : (
            <div className="panel hint" data-testid="node-form-empty">
              {selectedNodes.length > 1
                ? `${selectedNodes.length} nodes selected: select one to edit it.`
                : "Select a node on the canvas to edit its id, parameters and resources."}
            </div>
          )}
          <PipelineSettings settings={settings} violations={problems.other} onChange={setSettings} />
        </div>
      </div>
    </section>
  );
}
