// The Run form of a pipeline version: one input per spec parameter, typed from its default
// (number, checkbox, text, or JSON for lists and objects), and the run's display name.
// Submitting calls CreateRun on that version and opens the new run.
import { fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import type { FieldViolation, PipelineVersion } from "@raypipe/client/web";
import { useId, useMemo, useState, type FormEvent } from "react";
import { useNavigate } from "react-router";
import { client, shownError, violationsUnder, type ShownError } from "../../api";
import { ErrorBanner } from "../../components/common";
import { idOf } from "../../format";

type Kind = "number" | "boolean" | "string" | "json";

interface Param {
  readonly name: string;
  readonly kind: Kind;
  readonly initial: JsonValue;
}

function kindOf(value: JsonValue): Kind {
  if (typeof value === "number") return "number";
  if (typeof value === "boolean") return "boolean";
  if (typeof value === "string") return "string";
  return "json";
}

/** What the input holds for a value: text for everything but checkboxes. */
function asInput(param: Param): string | boolean {
  switch (param.kind) {
    case "boolean":
      return param.initial as boolean;
    case "number":
      return String(param.initial);
    case "string":
      return param.initial as string;
    case "json":
      return JSON.stringify(param.initial, null, 2);
  }
}

/** The input's value as JSON, or the problem with it. */
function parse(param: Param, input: string | boolean): { value: JsonValue } | { problem: string } {
  switch (param.kind) {
    case "boolean":
      return { value: Boolean(input) };
    case "string":
      return { value: String(input) };
    case "number": {
      const text = String(input).trim();
      const n = Number(text);
      if (text === "" || !Number.isFinite(n)) return { problem: "enter a number" };
      return { value: n };
    }
    case "json":
      try {
        return { value: JSON.parse(String(input)) as JsonValue };
      } catch (e) {
        return { problem: `not valid JSON: ${e instanceof Error ? e.message : String(e)}` };
      }
  }
}

/** The violations the server reports for parameter `name`, however it spells the path. */
function parameterViolations(error: ShownError | null, name: string): FieldViolation[] {
  const paths = [
    `run.parameters['${name}']`,
    `run.parameters["${name}"]`,
    `run.parameters[${name}]`,
    `run.parameters.${name}`,
    `parameters['${name}']`,
    `parameters.${name}`,
  ];
  return (error?.violations ?? [])
    .filter((v) => paths.some((p) => v.field === p || v.field.startsWith(`${p}.`) || v.field.startsWith(`${p}[`)));
}

function newRequestId(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function RunForm({ version, pipelineId }: { version: PipelineVersion; pipelineId: string }) {
  const navigate = useNavigate();
  const formId = useId();
  const params = useMemo<Param[]>(() => {
    const entries = Object.entries(version.spec?.parameters ?? {}) as [string, Value][];
    return entries
      .map(([name, value]) => {
        const initial = toJson(ValueSchema, value);
        return { name, kind: kindOf(initial), initial };
      })
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }, [version]);
  const [inputs, setInputs] = useState<Record<string, string | boolean>>(() =>
    Object.fromEntries(params.map((p) => [p.name, asInput(p)])),
  );
  const [displayName, setDisplayName] = useState("");
  const [local, setLocal] = useState<Record<string, string>>({});
  const [error, setError] = useState<ShownError | null>(null);
  const [pending, setPending] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    const parameters: Record<string, Value> = {};
    const problems: Record<string, string> = {};
    for (const p of params) {
      const parsed = parse(p, inputs[p.name] ?? asInput(p));
      if ("problem" in parsed) problems[p.name] = parsed.problem;
      else parameters[p.name] = fromJson(ValueSchema, parsed.value);
    }
    setLocal(problems);
    if (Object.keys(problems).length > 0) {
      setError(null);
      return;
    }
    setPending(true);
    setError(null);
    try {
      const response = await client.runs.createRun({
        run: { pipelineVersion: version.name, parameters, displayName: displayName.trim() },
        requestId: newRequestId(),
      });
      navigate(`/runs/${idOf(response.run?.name ?? "")}`);
    } catch (e) {
      setError(shownError(e));
      setPending(false);
    }
  }

  const nameProblems = violationsUnder(error, "run.display_name").map((v) => v.description);
  // The banner says what no field shows: the violations of other fields, or the error itself.
  const placed = new Set([
    ...violationsUnder(error, "run.display_name"),
    ...params.flatMap((p) => parameterViolations(error, p.name)),
  ]);
  const unplaced = (error?.violations ?? []).filter((v) => !placed.has(v));
  const banner: ShownError | null =
    error && (error.violations.length === 0 || unplaced.length > 0) ? { ...error, violations: unplaced } : null;
  return (
    <form onSubmit={submit} data-testid="run-form" aria-label={`Run version ${version.versionNumber}`} noValidate>
      {params.length === 0 && <p className="hint">This version declares no parameters.</p>}
      {params.map((p) => {
        const id = `${formId}-p-${p.name}`;
        const problems = [...(local[p.name] ? [local[p.name]!] : []), ...parameterViolations(error, p.name).map((v) => v.description)];
        const invalid = problems.length > 0;
        const errorId = `${id}-error`;
        const value = inputs[p.name] ?? asInput(p);
        const set = (v: string | boolean) => setInputs((old) => ({ ...old, [p.name]: v }));
        const errorText = invalid && (
          <span className="field-error" id={errorId}>
            {problems.join("; ")}
          </span>
        );
        if (p.kind === "boolean") {
          return (
            <div className="field" key={p.name}>
              <label className="inline" htmlFor={id}>
                <input
                  id={id}
                  type="checkbox"
                  name={p.name}
                  checked={Boolean(value)}
                  onChange={(e) => set(e.target.checked)}
                  aria-invalid={invalid}
                  aria-describedby={invalid ? errorId : undefined}
                  data-testid={`run-param-${p.name}`}
                />
                <code>{p.name}</code>
              </label>
              {errorText}
            </div>
          );
        }
        return (
          <div className="field" key={p.name}>
            <label htmlFor={id}>
              <span>
                <code>{p.name}</code> <span className="hint">({p.kind === "json" ? "JSON" : p.kind})</span>
              </span>
            </label>
            {p.kind === "json" ? (
              <textarea
                id={id}
                name={p.name}
                rows={Math.min(8, String(value).split("\n").length + 1)}
                value={String(value)}
                onChange={(e) => set(e.target.value)}
                aria-invalid={invalid}
                aria-describedby={invalid ? errorId : undefined}
                data-testid={`run-param-${p.name}`}
                spellCheck={false}
              />
            ) : (
              <input
                id={id}
                name={p.name}
                type={p.kind === "number" ? "number" : "text"}
                step={p.kind === "number" ? "any" : undefined}
                value={String(value)}
                onChange={(e) => set(e.target.value)}
                aria-invalid={invalid}
                aria-describedby={invalid ? errorId : undefined}
                data-testid={`run-param-${p.name}`}
              />
            )}
            {errorText}
          </div>
        );
      })}
      <div className="field">
        <label htmlFor={`${formId}-display-name`}>Run display name</label>
        <input
          id={`${formId}-display-name`}
          value={displayName}
          onChange={(e) => setDisplayName(e.target.value)}
          placeholder={`${pipelineId}-…`}
          aria-invalid={nameProblems.length > 0}
          aria-describedby={nameProblems.length > 0 ? `${formId}-display-name-error` : `${formId}-display-name-hint`}
          data-testid="run-display-name"
        />
        {nameProblems.length > 0 ? (
          <span className="field-error" id={`${formId}-display-name-error`}>
            {nameProblems.join("; ")}
          </span>
        ) : (
          <span className="hint" id={`${formId}-display-name-hint`}>
            Optional; the server names the run otherwise.
          </span>
        )}
      </div>
      {error && !banner && (
        <p className="field-error" role="alert">
          The server did not accept the run: see the marked fields.
        </p>
      )}
      <ErrorBanner error={banner} title="Could not start the run" />
      <button type="submit" className="primary" disabled={pending} data-testid="run-submit">
        {pending ? "Starting…" : `Run version ${version.versionNumber}`}
      </button>
    </form>
  );
}
