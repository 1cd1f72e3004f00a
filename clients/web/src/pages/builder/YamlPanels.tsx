// Import and export of the YAML document `raypipe apply` reads: the protobuf JSON mapping of
// raypipe.v1.PipelineSpec (snake_case or camelCase keys on import; snake_case on export, like
// examples/pipelines/*.yaml).
import { fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { PipelineSpecSchema, type PipelineSpec } from "@raypipe/client/web";
import { useId, useState } from "react";
import { parse, stringify, YAMLParseError } from "yaml";

/** A YAML document as a PipelineSpec, or an error message that says what is wrong. */
export function parseSpecYaml(text: string): { spec: PipelineSpec } | { error: string } {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    if (err instanceof YAMLParseError) {
      const pos = err.linePos?.[0];
      return { error: `Not valid YAML${pos ? ` (line ${pos.line}, column ${pos.col})` : ""}: ${err.message}` };
    }
    return { error: `Not valid YAML: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (doc === null || doc === undefined) return { error: "The document is empty." };
  if (typeof doc !== "object" || Array.isArray(doc)) return { error: "The document is not a mapping (a PipelineSpec has nodes:, parameters:, failure_policy:)." };
  try {
    return { spec: fromJson(PipelineSpecSchema, doc as JsonValue, { ignoreUnknownFields: false }) };
  } catch (err) {
    return { error: `Not a raypipe.v1.PipelineSpec: ${err instanceof Error ? err.message : String(err)}` };
  }
}

export function specYaml(spec: PipelineSpec): string {
  const json = toJson(PipelineSpecSchema, spec, { useProtoFieldName: true });
  // int64 memory_bytes is a string in the JSON mapping; a plain number reads better and parses the same.
  const nodes = (json as { nodes?: { resources?: { memory_bytes?: unknown } }[] }).nodes ?? [];
  for (const node of nodes) {
    const bytes = node.resources?.memory_bytes;
    if (typeof bytes === "string" && Number.isSafeInteger(Number(bytes))) node.resources!.memory_bytes = Number(bytes);
  }
  return stringify(json, { lineWidth: 0 });
}

export function ImportPanel(props: { onImport: (spec: PipelineSpec) => void; onClose: () => void }) {
  const [text, setText] = useState("");
  const [error, setError] = useState<string | null>(null);
  const errorId = useId();
  const run = (source: string) => {
    const result = parseSpecYaml(source);
    if ("error" in result) {
      setError(result.error);
      return;
    }
    setError(null);
    props.onImport(result.spec);
  };
  return (
    <section className="panel builder-import" aria-labelledby="import-title" data-testid="import-panel">
      <div className="row">
        <h2 id="import-title">Import YAML</h2>
        <span className="spacer" />
        <button type="button" onClick={props.onClose}>
          Close
        </button>
      </div>
      <p className="hint">
        A pipeline file as <code>raypipe apply</code> reads it (see examples/pipelines). Importing replaces the canvas.
      </p>
      <label>
        YAML file
        <input
          type="file"
          accept=".yaml,.yml,.json,application/yaml,text/yaml,application/json"
          onChange={(e) => {
            const file = e.target.files?.[0];
            if (!file) return;
            void file.text().then((t) => {
              setText(t);
              run(t);
            });
            e.target.value = "";
          }}
        />
      </label>
      <label>
        Pipeline YAML
        <textarea
          rows={10}
          value={text}
          spellCheck={false}
          aria-invalid={error !== null}
          aria-describedby={error ? errorId : undefined}
          onChange={(e) => setText(e.target.value)}
          placeholder={"nodes:\n  - id: load\n    type: data_loader\n    params: {path: data.csv}"}
        />
      </label>
      {error && (
        <div className="error-banner" role="alert" id={errorId} data-testid="import-error">
          {error}
        </div>
      )}
      <div className="row">
        <button type="button" className="primary" onClick={() => run(text)} disabled={text.trim() === ""}>
          Import
        </button>
      </div>
    </section>
  );
}

export function ExportPanel(props: { yaml: string; fileName: string; onClose: () => void }) {
  const download = () => downloadText(props.yaml, props.fileName);
  return (
    <section className="panel builder-export" aria-labelledby="export-title">
      <div className="row">
        <h2 id="export-title">Export YAML</h2>
        <span className="spacer" />
        <button type="button" onClick={download}>
          Download {props.fileName}
        </button>
        <button type="button" onClick={props.onClose}>
          Close
        </button>
      </div>
      <pre className="builder-yaml" data-testid="export-yaml" tabIndex={0} aria-label="Exported YAML">
        {props.yaml}
      </pre>
    </section>
  );
}

/** Starts a download of `text` as `fileName`. */
export function downloadText(text: string, fileName: string) {
  const url = URL.createObjectURL(new Blob([text], { type: "application/yaml" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = fileName;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
