// Form pieces of the builder: a labelled field with its hint and its errors (aria-invalid and a
// .field-error), and text inputs that keep what the user typed while the value they stand for
// lives in the spec (so "0." or "1e" can be typed on the way to a number).
import { useEffect, useId, useState, type ReactNode } from "react";

export interface ControlProps {
  id: string;
  "aria-invalid": boolean;
  "aria-describedby": string | undefined;
  "aria-required": boolean | undefined;
}

/** A labelled control; `errors` (server violations and local problems) go under it. */
export function Field(props: {
  label: ReactNode;
  hint?: ReactNode;
  errors?: readonly string[] | undefined;
  required?: boolean;
  className?: string;
  children: (control: ControlProps) => ReactNode;
}) {
  const id = useId();
  const errors = props.errors ?? [];
  const hintId = props.hint ? `${id}-hint` : undefined;
  const errorId = errors.length ? `${id}-error` : undefined;
  const describedBy = [errorId, hintId].filter(Boolean).join(" ") || undefined;
  return (
    <div className={`field${props.className ? ` ${props.className}` : ""}`}>
      <label htmlFor={id}>
        <span>
          {props.label}
          {props.required && (
            <span className="required-mark" aria-hidden="true">
              {" "}
              *
            </span>
          )}
        </span>
      </label>
      {props.children({
        id,
        "aria-invalid": errors.length > 0,
        "aria-describedby": describedBy,
        "aria-required": props.required || undefined,
      })}
      {props.hint && (
        <div className="hint" id={hintId}>
          {props.hint}
        </div>
      )}
      {errors.length > 0 && (
        <div className="field-error" id={errorId}>
          {errors.join("; ")}
        </div>
      )}
    </div>
  );
}

/**
 * Text that stands for a value: the text is kept as typed, and replaced only when the value
 * changes to something the text does not stand for (another node's value, an import).
 */
export function useSyncedText<T>(value: T, toText: (v: T) => string, same: (text: string, v: T) => boolean) {
  const [text, setText] = useState(() => toText(value));
  const shape = JSON.stringify(value, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
  useEffect(() => {
    setText((t) => (same(t, value) ? t : toText(value)));
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape]);
  return [text, setText] as const;
}

/** A number as text: empty is "not set" (undefined); text that is not a number is a local problem. */
export function NumberText(props: {
  label: string;
  value: number | undefined;
  onChange: (value: number | undefined) => void;
  hint?: ReactNode;
  errors?: readonly string[] | undefined;
  integer?: boolean;
  placeholder?: string;
}) {
  const parse = (t: string): number | undefined | null => {
    const s = t.trim();
    if (s === "") return undefined;
    const n = Number(s);
    if (!Number.isFinite(n)) return null;
    if (props.integer && !Number.isInteger(n)) return null;
    return n;
  };
  const [text, setText] = useSyncedText(
    props.value,
    (v) => (v === undefined ? "" : String(v)),
    (t, v) => parse(t) === v,
  );
  const local = parse(text) === null ? [props.integer ? "not a whole number" : "not a number"] : [];
  return (
    <Field label={props.label} hint={props.hint} errors={[...local, ...(props.errors ?? [])]}>
      {(control) => (
        <input
          {...control}
          type="text"
          inputMode="decimal"
          value={text}
          placeholder={props.placeholder}
          onChange={(e) => {
            setText(e.target.value);
            const n = parse(e.target.value);
            if (n !== null) props.onChange(n);
          }}
        />
      )}
    </Field>
  );
}
