// Saving the canvas as a pipeline version with the client's apply(): ValidatePipelineSpec,
// then GetPipeline, CreatePipeline when it is NOT_FOUND, and CreatePipelineVersion unless
// the spec's digest equals the default version's (then nothing new is stored, as
// `raypipe apply` does). Violations of the pipeline's fields go on those fields; violations of
// the spec (`spec.nodes[i]...`, `pipeline_version.spec.nodes[i]...`) go to the page, which
// shows them on the nodes.
import type { PipelineSpec } from "@raypipe/client/web";
import { useState } from "react";
import { Link } from "react-router";
import { client, shownError, violationsByField, type ShownError } from "../../api";
import { ErrorBanner } from "../../components/common";
import { Field } from "./fields";

export interface SaveOutcome {
  readonly pipelineId: string;
  readonly versionNumber: string;
  readonly pipelineCreated: boolean;
  readonly versionCreated: boolean;
}

export function SaveForm(props: {
  pipelineId: string;
  onPipelineId: (id: string) => void;
  displayName: string;
  onDisplayName: (name: string) => void;
  spec: PipelineSpec;
  /** Called with the spec's node keys as they were sent, and the failure (null on success). */
  onSaved: (error: ShownError | null, keys: readonly string[]) => void;
  nodeKeys: readonly string[];
}) {
  const [description, setDescription] = useState("");
  const [saving, setSaving] = useState(false);
  const [error, setError] = useState<ShownError | null>(null);
  const [outcome, setOutcome] = useState<SaveOutcome | null>(null);
  const byField = violationsByField(error);
  const fieldErrors = (...paths: string[]) => paths.flatMap((p) => (byField.has(p) ? [byField.get(p)!] : []));

  const submit = async () => {
    const id = props.pipelineId.trim();
    const keys = [...props.nodeKeys];
    setSaving(true);
    setError(null);
    setOutcome(null);
    try {
      const result = await client.apply(id, props.spec, {
        description,
        displayName: props.displayName,
      });
      setOutcome({
        pipelineId: id,
        versionNumber: result.version.versionNumber.toString(),
        pipelineCreated: result.pipelineCreated,
        versionCreated: result.versionCreated,
      });
      props.onSaved(null, keys);
    } catch (err) {
      const shown = shownError(err);
      setError(shown);
      props.onSaved(shown, keys);
    } finally {
      setSaving(false);
    }
  };

  return (
    <form
      className="panel builder-save"
      data-testid="save-form"
      aria-label="Save as a pipeline version"
      onSubmit={(e) => {
        e.preventDefault();
        void submit();
      }}
    >
      <div className="builder-save-fields">
        <Field
          label="Pipeline id"
          required
          hint="Lowercase letters, digits and hyphens; created if it does not exist."
          errors={fieldErrors("pipeline_id", "parent", "name")}
        >
          {(c) => (
            <input
              {...c}
              type="text"
              required
              spellCheck={false}
              value={props.pipelineId}
              onChange={(e) => props.onPipelineId(e.target.value)}
            />
          )}
        </Field>
        <Field label="Pipeline display name" hint="Used when the pipeline is created." errors={fieldErrors("pipeline.display_name")}>
          {(c) => <input {...c} type="text" value={props.displayName} onChange={(e) => props.onDisplayName(e.target.value)} />}
        </Field>
        <Field label="Version description" hint="The new version's change note." errors={fieldErrors("pipeline_version.description")}>
          {(c) => <input {...c} type="text" value={description} onChange={(e) => setDescription(e.target.value)} />}
        </Field>
        <div className="builder-save-actions">
          <button type="submit" className="primary" disabled={saving}>
            {saving ? "Saving…" : "Save"}
          </button>
        </div>
      </div>
      <ErrorBanner error={error} title="Save failed" />
      <div data-testid="save-result" role="status" aria-live="polite" className={outcome ? "notice builder-saved" : undefined}>
        {outcome &&
          (outcome.versionCreated ? (
            <>
              {outcome.pipelineCreated ? `Created pipeline ${outcome.pipelineId}. ` : ""}
              Saved as version {outcome.versionNumber}:{" "}
              <Link to={`/pipelines/${outcome.pipelineId}/versions/${outcome.versionNumber}`}>
                {outcome.pipelineId} version {outcome.versionNumber}
              </Link>
            </>
          ) : (
            <>
              No new version: the spec is the same as the default version {outcome.versionNumber}:{" "}
              <Link to={`/pipelines/${outcome.pipelineId}/versions/${outcome.versionNumber}`}>
                {outcome.pipelineId} version {outcome.versionNumber}
              </Link>
            </>
          ))}
      </div>
    </form>
  );
}
