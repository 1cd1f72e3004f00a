// Pipeline-level settings of the spec: run-time parameters (name and default; the default is
// typed from what is written: a number, true/false, null or JSON, else text), the failure
// policy and MLflow tracking. Violations under spec.parameters, spec.failure_policy and
// spec.tracking are shown here.
import { create } from "@bufbuild/protobuf";
import { FailurePolicy, TrackingPolicySchema, type FieldViolation } from "@raypipe/client/web";
import { Field } from "./fields";
import { newKey, typedDefault, type SpecSettings } from "./model";

function typeOf(text: string): string {
  const v = typedDefault(text);
  if (v === null) return "null";
  if (Array.isArray(v)) return "list";
  return typeof v === "object" ? "object" : typeof v;
}

function under(violations: readonly FieldViolation[], prefix: string): string[] {
  return violations
    .filter((v) => v.field === prefix || v.field.startsWith(`${prefix}.`) || v.field.startsWith(`${prefix}[`))
    .map((v) => (v.field === prefix ? v.description : `${v.field.slice(prefix.length + 1)}: ${v.description}`));
}

export function PipelineSettings(props: {
  settings: SpecSettings;
  violations: readonly FieldViolation[];
  onChange: (s: SpecSettings) => void;
}) {
  const { settings, onChange } = props;
  const rows = settings.parameters;
  const paramErrors = [...under(props.violations, "spec.parameters"), ...under(props.violations, "pipeline_version.spec.parameters")];
  const policyErrors = [...under(props.violations, "spec.failure_policy"), ...under(props.violations, "pipeline_version.spec.failure_policy")];
  const trackingErrors = [...under(props.violations, "spec.tracking"), ...under(props.violations, "pipeline_version.spec.tracking")];
  const tracking = settings.tracking ?? create(TrackingPolicySchema, {});
  const setTracking = (patch: Partial<Pick<typeof tracking, "disabled" | "experiment">>) => {
    const next = create(TrackingPolicySchema, { ...tracking, ...patch });
    onChange({ ...settings, tracking: !next.disabled && next.experiment === "" ? undefined : next });
  };
  const setRow = (i: number, patch: Partial<{ name: string; text: string }>) =>
    onChange({ ...settings, parameters: rows.map((r, j) => (j === i ? { ...r, ...patch } : r)) });
  return (
    <section className="panel builder-settings" aria-labelledby="pipeline-settings-title" data-testid="pipeline-settings">
      <h2 id="pipeline-settings-title">Pipeline settings</h2>
      <fieldset className="builder-fieldset">
        <legend>Parameters</legend>
        <p className="hint">
          Run-time parameters and their defaults; a node parameter that is exactly <code>{"{{ parameters.NAME }}"}</code> takes the
          run's value.
        </p>
        {paramErrors.length > 0 && <div className="field-error">{paramErrors.join("; ")}</div>}
        {rows.map((row, i) => {
          const label = row.name || `parameter ${i + 1}`;
          return (
            <div className="builder-param-row" key={row.key}>
              <input
                type="text"
                aria-label={`Parameter name ${i + 1}`}
                placeholder="name"
                value={row.name}
                spellCheck={false}
                aria-invalid={paramErrors.some((e) => e.includes(`'${row.name}'`))}
                onChange={(e) => setRow(i, { name: e.target.value })}
              />
              <input
                type="text"
                aria-label={`Default of ${label}`}
                placeholder="default"
                value={row.text}
                onChange={(e) => setRow(i, { text: e.target.value })}
              />
              <span className="hint builder-param-type">{row.text.trim() === "" ? "" : typeOf(row.text)}</span>
              <button
                type="button"
                aria-label={`Remove parameter ${label}`}
                onClick={() => onChange({ ...settings, parameters: rows.filter((_, j) => j !== i) })}
              >
                ✕
              </button>
            </div>
          );
        })}
        <button type="button" onClick={() => onChange({ ...settings, parameters: [...rows, { key: newKey(), name: "", text: "" }] })}>
          Add parameter
        </button>
      </fieldset>
      <Field label="Failure policy" errors={policyErrors} hint="What a run does when a node fails after its retries.">
        {(c) => (
          <select
            {...c}
            value={String(settings.failurePolicy)}
            onChange={(e) => onChange({ ...settings, failurePolicy: Number(e.target.value) as FailurePolicy })}
          >
            <option value={String(FailurePolicy.UNSPECIFIED)}>(not set: FAIL_FAST)</option>
            <option value={String(FailurePolicy.FAIL_FAST)}>FAIL_FAST: cancel the rest at the first failure</option>
            <option value={String(FailurePolicy.CONTINUE_INDEPENDENT)}>CONTINUE_INDEPENDENT: finish independent branches</option>
          </select>
        )}
      </Field>
      <fieldset className="builder-fieldset">
        <legend>Tracking (MLflow)</legend>
        {trackingErrors.length > 0 && <div className="field-error">{trackingErrors.join("; ")}</div>}
        <label className="inline">
          <input type="checkbox" checked={tracking.disabled} onChange={(e) => setTracking({ disabled: e.target.checked })} />
          Record nothing of this pipeline's runs
        </label>
        <Field label="MLflow experiment" hint="Default: the pipeline's id.">
          {(c) => <input {...c} type="text" value={tracking.experiment} onChange={(e) => setTracking({ experiment: e.target.value })} />}
        </Field>
      </fieldset>
    </section>
  );
}
