// The side form of the selected node: id, display name, its dependencies (a keyboard way to
// connect nodes), the parameters from the type's schema, resources, retry, timeout and cache.
// Each server violation of the node is shown on its field; any that no field shows is listed.
import { create, type JsonObject } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import {
  CachePolicySchema,
  GpuPolicy,
  ResourcesSchema,
  RetryPolicySchema,
  type Node as SpecNode,
  type NodeType,
} from "@raypipe/client/web";
import { useState } from "react";
import { formatBytes } from "../../format";
import { Field, NumberText, useSyncedText } from "./fields";
import { firstLine, kindName, paramFields, type NodeProblems } from "./model";
import { ParamForm } from "./ParamForm";

const MIB = 1024n * 1024n;
const GIB = 1024n * MIB;

export interface DependencyOption {
  readonly key: string;
  readonly id: string;
  /** Why it cannot be an upstream of this node; null when it can. */
  readonly problem: string | null;
}

function resourcesEmpty(r: SpecNode["resources"]): boolean {
  return !r || (r.numCpus === 0 && r.numGpus === 0 && r.memoryBytes === 0n && r.acceleratorType === "" && r.gpuPolicy === GpuPolicy.UNSPECIFIED);
}

function retryEmpty(r: SpecNode["retry"]): boolean {
  return (
    !r ||
    (r.maxRetries === 0 &&
      !r.initialBackoff &&
      r.backoffMultiplier === 0 &&
      !r.maxBackoff &&
      !r.retryApplicationErrors &&
      r.retryOn.length === 0)
  );
}

function durationSeconds(d: SpecNode["timeout"]): number | undefined {
  if (!d || (d.seconds === 0n && d.nanos === 0)) return undefined;
  return Number(d.seconds) + d.nanos / 1e9;
}

function secondsDuration(s: number | undefined): SpecNode["timeout"] {
  if (s === undefined) return undefined;
  const whole = Math.trunc(s);
  return create(DurationSchema, { seconds: BigInt(whole), nanos: Math.round((s - whole) * 1e9) });
}

/** Memory as a number of MiB or GiB; empty is "not set" (0 bytes). */
function MemoryField(props: { bytes: bigint; defaultBytes: bigint; errors: string[] | undefined; onChange: (b: bigint) => void }) {
  const [unit, setUnit] = useState<bigint>(() => (props.bytes !== 0n && props.bytes % GIB !== 0n ? MIB : GIB));
  const toBytes = (t: string, u: bigint): bigint | null => {
    const s = t.trim();
    if (s === "") return 0n;
    const n = Number(s);
    if (!Number.isFinite(n)) return null;
    return BigInt(Math.round(n * Number(u)));
  };
  const [text, setText] = useSyncedText(
    props.bytes,
    (b) => (b === 0n ? "" : String(Number(b) / Number(unit))),
    (t, b) => toBytes(t, unit) === b,
  );
  const local = toBytes(text, unit) === null ? ["not a number"] : [];
  const errors = [...local, ...(props.errors ?? [])];
  const hint = `Bytes reserved for scheduling${props.bytes !== 0n ? `: ${props.bytes.toString()} B (${formatBytes(Number(props.bytes))})` : ""}; default ${
    props.defaultBytes === 0n ? "no reservation" : formatBytes(Number(props.defaultBytes))
  }`;
  return (
    <Field label="Memory" hint={hint} errors={errors}>
      {(control) => (
        <div className="row builder-memory">
          <input
            {...control}
            type="text"
            inputMode="decimal"
            value={text}
            onChange={(e) => {
              setText(e.target.value);
              const b = toBytes(e.target.value, unit);
              if (b !== null) props.onChange(b);
            }}
          />
          <select
            aria-label="Memory unit"
            value={unit === GIB ? "GiB" : "MiB"}
            onChange={(e) => {
              const u = e.target.value === "GiB" ? GIB : MIB;
              setUnit(u);
              const b = toBytes(text, u);
              if (b !== null) props.onChange(b);
            }}
          >
            <option value="MiB">MiB</option>
            <option value="GiB">GiB</option>
          </select>
        </div>
      )}
    </Field>
  );
}

export function NodeForm(props: {
  node: SpecNode;
  nodeType: NodeType | undefined;
  problems: NodeProblems;
  upstream: readonly { key: string; id: string }[];
  danglingDeps: readonly string[];
  candidates: readonly DependencyOption[];
  onChange: (node: SpecNode) => void;
  onAddDependency: (key: string) => void;
  onRemoveDependency: (key: string) => void;
  onRemoveDangling: (id: string) => void;
  onDelete: () => void;
}) {
  const { node, nodeType, problems, onChange } = props;
  const fields = paramFields(nodeType);
  const [dependency, setDependency] = useState("");
  const resources = node.resources ?? create(ResourcesSchema, {});
  const defaults = nodeType?.defaultResources ?? create(ResourcesSchema, {});
  const retry = node.retry ?? create(RetryPolicySchema, {});
  const setResources = (patch: Partial<Pick<typeof resources, "numCpus" | "numGpus" | "memoryBytes" | "acceleratorType" | "gpuPolicy">>) => {
    const next = create(ResourcesSchema, { ...resources, ...patch });
    onChange({ ...node, resources: resourcesEmpty(next) ? undefined : next });
  };
  const setRetry = (patch: Partial<Pick<typeof retry, "maxRetries" | "retryApplicationErrors">>) => {
    const next = create(RetryPolicySchema, { ...retry, ...patch });
    onChange({ ...node, retry: retryEmpty(next) ? undefined : next });
  };
  const cache = node.cache ?? create(CachePolicySchema, {});
  const setCache = (patch: Partial<Pick<typeof cache, "enabled" | "cacheVersion">>) => {
    const next = create(CachePolicySchema, { ...cache, ...patch });
    onChange({ ...node, cache: !next.enabled && next.cacheVersion === "" ? undefined : next });
  };

  // Every field key the form shows; the node's other violations are listed at the top.
  const shown = new Set([
    "id",
    "type",
    "display_name",
    "depends_on",
    "params",
    "resources.num_cpus",
    "resources.num_gpus",
    "resources.memory_bytes",
    "resources.gpu_policy",
    "resources.accelerator_type",
    "retry.max_retries",
    "timeout",
    "cache",
  ]);
  const unshown: string[] = [];
  for (const [key, list] of problems) {
    if (shown.has(key) || key.startsWith("params.")) continue;
    unshown.push(...list.map((d) => (key === "node" ? d : `${key}: ${d}`)));
  }
  const summary = firstLine(nodeType?.description ?? "");
  const candidates = props.candidates.filter((c) => !props.upstream.some((u) => u.key === c.key));
  const chosen = candidates.find((c) => c.key === dependency);

  return (
    <form className="panel node-form" data-testid="node-form" aria-label={`Node ${node.id}`} onSubmit={(e) => e.preventDefault()}>
      <div className="row">
        <h2 className="builder-form-title">
          {node.id || "(no id)"} <span className="muted">({node.type})</span>
        </h2>
        <span className="spacer" />
        <button type="button" className="danger" onClick={props.onDelete} aria-label={`Delete node ${node.id}`}>
          Delete
        </button>
      </div>
      {nodeType ? (
        <p className="hint">
          {summary} Takes {nodeType.inputs.map(kindName).join(", ") || "nothing"}; gives {kindName(nodeType.output)}.
        </p>
      ) : null}
      {nodeType && nodeType.description.includes("\n") && (
        <details className="builder-doc">
          <summary>About {nodeType.type}</summary>
          <pre>{nodeType.description}</pre>
        </details>
      )}
      {nodeType ? null : (
        <p className="field-error">Unknown node type {node.type}: the server has no such type.</p>
      )}
      {problems.get("type") && <div className="field-error">type: {problems.get("type")!.join("; ")}</div>}
      {unshown.length > 0 && (
        <div className="field-error" role="group" aria-label="Other problems of this node">
          <ul className="builder-problems">
            {unshown.map((d) => (
              <li key={d}>{d}</li>
            ))}
          </ul>
        </div>
      )}
      <Field label="Node id" required hint="Lowercase letters, digits and underscores, starting with a letter." errors={problems.get("id")}>
        {(c) => <input {...c} type="text" value={node.id} spellCheck={false} onChange={(e) => onChange({ ...node, id: e.target.value })} />}
      </Field>
      <Field label="Node display name" hint={`Shown instead of the id; default ${node.id || "the id"}.`} errors={problems.get("display_name")}>
        {(c) => <input {...c} type="text" value={node.displayName} onChange={(e) => onChange({ ...node, displayName: e.target.value })} />}
      </Field>

      <fieldset className="builder-fieldset">
        <legend>Depends on</legend>
        {problems.get("depends_on") && <div className="field-error">{problems.get("depends_on")!.join("; ")}</div>}
        {props.upstream.length === 0 && props.danglingDeps.length === 0 && <p className="hint">No upstream node.</p>}
        <ul className="builder-deps">
          {props.upstream.map((u) => (
            <li key={u.key}>
              <code>{u.id}</code>{" "}
              <button type="button" onClick={() => props.onRemoveDependency(u.key)} aria-label={`Remove dependency on ${u.id}`}>
                Remove
              </button>
            </li>
          ))}
          {props.danglingDeps.map((d) => (
            <li key={`dangling:${d}`}>
              <code>{d}</code> <span className="field-error">(not on the canvas)</span>{" "}
              <button type="button" onClick={() => props.onRemoveDangling(d)} aria-label={`Remove dependency on ${d}`}>
                Remove
              </button>
            </li>
          ))}
        </ul>
        {candidates.length > 0 && (
          <div className="row builder-add-dep">
            <label className="inline">
              Add dependency
              <select value={dependency} onChange={(e) => setDependency(e.target.value)}>
                <option value="">(choose a node)</option>
                {candidates.map((c) => (
                  <option key={c.key} value={c.key}>
                    {c.id}
                    {c.problem ? " (not compatible)" : ""}
                  </option>
                ))}
              </select>
            </label>
            <button
              type="button"
              disabled={!chosen || chosen.problem !== null}
              onClick={() => {
                if (chosen && !chosen.problem) {
                  props.onAddDependency(chosen.key);
                  setDependency("");
                }
              }}
            >
              Connect
            </button>
            {chosen?.problem && <div className="hint">{chosen.problem}</div>}
          </div>
        )}
      </fieldset>

      <fieldset className="builder-fieldset">
        <legend>Parameters</legend>
        <ParamForm
          fields={fields}
          params={node.params ?? {}}
          problems={problems}
          onChange={(params: JsonObject) => onChange({ ...node, params: Object.keys(params).length ? params : undefined })}
        />
      </fieldset>

      <fieldset className="builder-fieldset">
        <legend>Resources</legend>
        {problems.get("resources") && <div className="field-error">{problems.get("resources")!.join("; ")}</div>}
        <div className="grid2">
          <NumberText
            label="CPUs"
            value={resources.numCpus || undefined}
            placeholder={String(defaults.numCpus || 1)}
            hint={`num_cpus; default ${defaults.numCpus || 1}`}
            errors={problems.get("resources.num_cpus")}
            onChange={(v) => setResources({ numCpus: v ?? 0 })}
          />
          <NumberText
            label="GPUs"
            value={resources.numGpus || undefined}
            placeholder={String(defaults.numGpus)}
            hint={`num_gpus; default ${defaults.numGpus}`}
            errors={problems.get("resources.num_gpus")}
            onChange={(v) => setResources({ numGpus: v ?? 0 })}
          />
        </div>
        <MemoryField
          bytes={resources.memoryBytes}
          defaultBytes={defaults.memoryBytes}
          errors={problems.get("resources.memory_bytes")}
          onChange={(b) => setResources({ memoryBytes: b })}
        />
        <div className="grid2">
          <Field label="GPU policy" hint="When the cluster has no GPU: fail (REQUIRED) or run on CPU (PREFERRED)." errors={problems.get("resources.gpu_policy")}>
            {(c) => (
              <select {...c} value={String(resources.gpuPolicy)} onChange={(e) => setResources({ gpuPolicy: Number(e.target.value) as GpuPolicy })}>
                <option value={String(GpuPolicy.UNSPECIFIED)}>(not set: REQUIRED)</option>
                <option value={String(GpuPolicy.REQUIRED)}>REQUIRED</option>
                <option value={String(GpuPolicy.PREFERRED)}>PREFERRED</option>
              </select>
            )}
          </Field>
          <Field
            label="Accelerator type"
            hint={`Such as A100; default ${defaults.acceleratorType || "any"}`}
            errors={problems.get("resources.accelerator_type")}
          >
            {(c) => <input {...c} type="text" value={resources.acceleratorType} onChange={(e) => setResources({ acceleratorType: e.target.value })} />}
          </Field>
        </div>
      </fieldset>

      <fieldset className="builder-fieldset">
        <legend>Retry and timeout</legend>
        {problems.get("retry") && <div className="field-error">{problems.get("retry")!.join("; ")}</div>}
        <div className="grid2">
          <NumberText
            label="Max retries"
            integer
            value={retry.maxRetries || undefined}
            placeholder="0"
            hint="Extra attempts after the first; default none."
            errors={problems.get("retry.max_retries")}
            onChange={(v) => setRetry({ maxRetries: v ?? 0 })}
          />
          <NumberText
            label="Timeout (seconds)"
            value={durationSeconds(node.timeout)}
            placeholder="no limit"
            hint="Longest one attempt may run; default no limit."
            errors={problems.get("timeout")}
            onChange={(v) => onChange({ ...node, timeout: secondsDuration(v) })}
          />
        </div>
        <label className="inline">
          <input type="checkbox" checked={retry.retryApplicationErrors} onChange={(e) => setRetry({ retryApplicationErrors: e.target.checked })} />
          Retry application errors (exceptions of the node's own code)
        </label>
      </fieldset>

      <fieldset className="builder-fieldset">
        <legend>Cache</legend>
        {problems.get("cache") && <div className="field-error">{problems.get("cache")!.join("; ")}</div>}
        <label className="inline">
          <input type="checkbox" checked={cache.enabled} onChange={(e) => setCache({ enabled: e.target.checked })} />
          Reuse a stored output of an identical earlier execution
        </label>
        <Field label="Cache version" hint="Change it to invalidate earlier cached outputs.">
          {(c) => <input {...c} type="text" value={cache.cacheVersion} onChange={(e) => setCache({ cacheVersion: e.target.value })} />}
        </Field>
      </fieldset>
    </form>
  );
}
