// Pieces every page uses: the error banner, state badges, a confirmation dialog, the
// server-side pager and a hook that loads data and says whether it is loading or failed.
import { useCallback, useEffect, useRef, useState, type ReactNode } from "react";
import { shownError, type ShownError } from "../api";

export function ErrorBanner({ error, title }: { error: ShownError | null; title?: string }) {
  if (!error) return null;
  return (
    <div className="error-banner" role="alert">
      <strong>{title ?? "Request failed"}</strong>: <code>{error.code}</code>
      {error.reason && error.reason !== error.code && (
        <>
          {" "}
          <code className="reason">{error.reason}</code>
        </>
      )}{" "}
      {error.message}
      {error.violations.length > 0 && (
        <ul>
          {error.violations.map((v) => (
            <li key={`${v.field}:${v.description}`}>
              <code>{v.field}</code>: {v.description}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** A state name ("SUCCEEDED") as a coloured badge; colours in styles.css by class. */
export function StateBadge({ state }: { state: string }) {
  return <span className={`badge state-${state.toLowerCase()}`}>{state}</span>;
}

/** A modal confirmation (the browser's <dialog>: focus trapped, Escape cancels). */
export function ConfirmDialog(props: {
  open: boolean;
  title: string;
  children: ReactNode;
  confirmLabel: string;
  onConfirm: () => void;
  onCancel: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (props.open && !dialog.open) dialog.showModal();
    if (!props.open && dialog.open) dialog.close();
  }, [props.open]);
  return (
    <dialog ref={ref} onCancel={props.onCancel} aria-labelledby="confirm-title">
      <h2 id="confirm-title">{props.title}</h2>
      <div>{props.children}</div>
      <div className="actions">
        <button type="button" onClick={props.onCancel}>
          Cancel
        </button>
        <button type="button" className="primary" onClick={props.onConfirm} autoFocus>
          {props.confirmLabel}
        </button>
      </div>
    </dialog>
  );
}

export interface Loaded<T> {
  readonly data: T | null;
  readonly error: ShownError | null;
  readonly loading: boolean;
  readonly reload: () => void;
}

/**
 * Runs `load` when `deps` change (and on reload()); a stale answer never overwrites a newer one.
 * `loading` is true from the very render in which `deps` change, so nothing reads the previous
 * answer as the new one.
 */
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: readonly unknown[]): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<ShownError | null>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const [loadedFor, setLoadedFor] = useState<readonly unknown[] | null>(null);
  const current = [...deps, tick];
  useEffect(() => {
    const controller = new AbortController();
    const requested = current;
    setLoading(true);
    load(controller.signal).then(
      (value) => {
        if (controller.signal.aborted) return;
        setData(value);
        setError(null);
        setLoading(false);
        setLoadedFor(requested);
      },
      (err: unknown) => {
        if (controller.signal.aborted) return;
        setError(shownError(err));
        setLoading(false);
        setLoadedFor(requested);
      },
    );
    return () => controller.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, current);
  const stale =
    loadedFor === null || loadedFor.length !== current.length || current.some((d, i) => !Object.is(d, loadedFor[i]));
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, loading: loading || stale, reload };
}

/**
 * Server-side paging: the page tokens seen so far, so Previous goes back without refetching
 * everything and Next asks the server for the page after. `key` resets to the first page.
 */
export function usePageTokens(key: string) {
  const [tokens, setTokens] = useState<string[]>([""]);
  const [index, setIndex] = useState(0);
  useEffect(() => {
    setTokens([""]);
    setIndex(0);
  }, [key]);
  return {
    token: tokens[index] ?? "",
    page: index + 1,
    hasPrevious: index > 0,
    previous: () => setIndex((i) => Math.max(0, i - 1)),
    next: (nextToken: string) => {
      setTokens((ts) => [...ts.slice(0, index + 1), nextToken]);
      setIndex((i) => i + 1);
    },
  };
}

export function Pager(props: {
  page: number;
  hasPrevious: boolean;
  nextToken: string;
  onPrevious: () => void;
  onNext: (token: string) => void;
  label: string;
  /** The page is loading: no button may act on the page shown. */
  busy?: boolean;
}) {
  return (
    <nav className="pager" aria-label={`${props.label} pages`}>
      <button type="button" onClick={props.onPrevious} disabled={!props.hasPrevious || props.busy}>
        ← Previous
      </button>
      <span aria-live="polite">Page {props.page}</span>
      <button type="button" onClick={() => props.onNext(props.nextToken)} disabled={!props.nextToken || props.busy}>
        Next →
      </button>
    </nav>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="muted" role="status">
      Loading {what}…
    </p>
  );
}
