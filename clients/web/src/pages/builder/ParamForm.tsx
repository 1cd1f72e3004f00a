// The parameter form of one node, generated from its type's parameter_schema (JSON Schema in
// Struct form): a select for an enum or a boolean (with "not set"), a text input for strings,
// numbers and mixed types (what is typed is sent as a number, true/false/null or JSON when it
// parses as one, else as text, so a `{{ parameters.NAME }}` reference or a bad value reaches the
// server's validation), a JSON textarea for arrays and objects. An empty input means "not set".
// Parameters the schema does not list (an imported spec's, or input_from) are edited as JSON.
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { useState } from "react";
import { Field, useSyncedText } from "./fields";
import { parseValueText, sameJson, valueText, type NodeProblems, type ParamField } from "./model";

function label(v: JsonValue): string {
  return typeof v === "string" ? v : JSON.stringify(v);
}

function hintOf(field: ParamField): string {
  const parts: string[] = [];
  if (field.description) parts.push(field.description);
  parts.push(field.accepts);
  if (field.hasDefault) parts.push(`default ${label(field.defaultValue ?? null)}`);
  return parts.join(" · ");
}

function ParamInput(props: { field: ParamField; value: JsonValue | undefined; errors: string[] | undefined; onChange: (v: JsonValue | undefined) => void }) {
  const { field, value, onChange } = props;
  const placeholder = field.hasDefault ? label(field.defaultValue ?? null) : "";
  const [text, setText] = useSyncedText(
    value,
    field.widget === "string" ? (v) => (v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v)) : valueText,
    field.widget === "string"
      ? (t, v) => (t === "" ? v === undefined : sameJson(t, v ?? null))
      : (t, v) => sameJson(parseValueText(t), v),
  );
  const common = { "aria-label": field.name };
  return (
    <Field label={field.name} required={field.required} hint={hintOf(field)} errors={props.errors}>
      {(control) => {
        if (field.widget === "enum" || field.widget === "boolean") {
          const options: JsonValue[] = field.widget === "enum" ? [...field.enumValues] : [true, false];
          if (field.nullable && !options.includes(null)) options.push(null);
          if (value !== undefined && !options.some((o) => sameJson(o, value))) options.push(value);
          const index = value === undefined ? -1 : options.findIndex((o) => sameJson(o, value));
          return (
            <select
              {...control}
              {...common}
              value={String(index)}
              onChange={(e) => {
                const i = Number(e.target.value);
                onChange(i < 0 ? undefined : options[i]);
              }}
            >
              <option value="-1">{field.hasDefault ? `(not set: ${placeholder})` : "(not set)"}</option>
              {options.map((o, i) => (
                <option key={i} value={String(i)}>
                  {label(o)}
                </option>
              ))}
            </select>
          );
        }
        if (field.widget === "json") {
          return (
            <textarea
              {...control}
              {...common}
              rows={3}
              value={text}
              placeholder={placeholder || "JSON"}
              onChange={(e) => {
                setText(e.target.value);
                onChange(parseValueText(e.target.value));
              }}
            />
          );
        }
        return (
          <input
            {...control}
            {...common}
            type="text"
            inputMode={field.widget === "number" ? "decimal" : undefined}
            value={text}
            placeholder={placeholder}
            onChange={(e) => {
              setText(e.target.value);
              if (field.widget === "string") onChange(e.target.value === "" ? undefined : e.target.value);
              else onChange(parseValueText(e.target.value));
            }}
          />
        );
      }}
    </Field>
  );
}

/** The params the schema does not name, as a JSON object. */
function OtherParams(props: {
  label: string;
  value: JsonObject;
  errors: string[];
  onChange: (v: JsonObject) => void;
}) {
  const [text, setText] = useState(() => (Object.keys(props.value).length ? JSON.stringify(props.value, null, 2) : ""));
  const [local, setLocal] = useState<string | null>(null);
  const shown = JSON.stringify(props.value);
  const [lastShown, setLastShown] = useState(shown);
  if (shown !== lastShown) {
    // Changed from outside (another node, an import): show the new value unless the text stands for it.
    setLastShown(shown);
    let same = false;
    try {
      same = JSON.stringify(text.trim() === "" ? {} : JSON.parse(text)) === shown;
    } catch {
      same = false;
    }
    if (!same) {
      setText(Object.keys(props.value).length ? JSON.stringify(props.value, null, 2) : "");
      setLocal(null);
    }
  }
  return (
    <Field
      label={props.label}
      hint="A JSON object of parameters the type's schema does not list, such as input_from."
      errors={[...(local ? [local] : []), ...props.errors]}
    >
      {(control) => (
        <textarea
          {...control}
          rows={3}
          value={text}
          placeholder="{}"
          onChange={(e) => {
            setText(e.target.value);
            const t = e.target.value.trim();
            if (t === "") {
              setLocal(null);
              props.onChange({});
              return;
            }
            try {
              const parsed = JSON.parse(t) as JsonValue;
              if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
                setLocal("must be a JSON object");
                return;
              }
              setLocal(null);
              props.onChange(parsed);
            } catch (err) {
              setLocal(`not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
            }
          }}
        />
      )}
    </Field>
  );
}

export function ParamForm(props: {
  fields: readonly ParamField[];
  params: JsonObject;
  problems: NodeProblems;
  onChange: (params: JsonObject) => void;
}) {
  const { fields, params, problems } = props;
  const names = new Set(fields.map((f) => f.name));
  const other: JsonObject = {};
  for (const [k, v] of Object.entries(params)) if (!names.has(k) && v !== undefined) other[k] = v;
  const otherErrors: string[] = [];
  for (const [key, list] of problems) {
    if (key === "params") otherErrors.push(...list);
    else if (key.startsWith("params.") && !names.has(key.slice(7))) otherErrors.push(...list.map((d) => `${key.slice(7)}: ${d}`));
  }
  const set = (name: string, value: JsonValue | undefined) => {
    const next: JsonObject = { ...params };
    if (value === undefined) delete next[name];
    else next[name] = value;
    props.onChange(next);
  };
  return (
    <>
      {fields.length === 0 && <p className="hint">This type's schema lists no parameters.</p>}
      {fields.map((f) => (
        <ParamInput
          key={f.name}
          field={f}
          value={params[f.name]}
          errors={problems.get(`params.${f.name}`)}
          onChange={(v) => set(f.name, v)}
        />
      ))}
      <OtherParams
        label={fields.length ? "Other parameters (JSON)" : "params (JSON)"}
        value={other}
        errors={otherErrors}
        onChange={(o) => {
          const next: JsonObject = {};
          for (const [k, v] of Object.entries(params)) if (names.has(k)) next[k] = v;
          props.onChange({ ...next, ...o });
        }}
      />
    </>
  );
}
