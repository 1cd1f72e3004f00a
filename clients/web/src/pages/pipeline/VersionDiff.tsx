// Compare two versions of a pipeline: two selects (A, B) and a side-by-side line diff of
// their YAML. Versions are numbered 1..latest without gaps, so the selects need no listing;
// only the two versions compared are fetched (GetPipelineVersion, cached by the page).
import type { PipelineVersion } from "@raypipe/client/web";
import { useId, useMemo, useState } from "react";
import { ErrorBanner, Loading, useLoad } from "../../components/common";
import { diffLines, sideBySide } from "./diff";
import { specYaml } from "./specYaml";

export type GetVersion = (number: number, signal: AbortSignal) => Promise<PipelineVersion>;

const CONTEXT = 3;

export function VersionDiff(props: {
  pipelineName: string;
  latest: number;
  defaultNumber: number;
  selected: number;
  getVersion: GetVersion;
}) {
  const { latest, selected, defaultNumber, getVersion, pipelineName } = props;
  const id = useId();
  const key = `${pipelineName}@${selected}`;
  const initial = { key, a: Math.max(1, selected - 1), b: selected };
  const [pick, setPick] = useState(initial);
  const current = pick.key === key ? pick : initial;
  const [showAll, setShowAll] = useState(false);

  const pair = useLoad(
    async (signal) => {
      const [a, b] = await Promise.all([getVersion(current.a, signal), getVersion(current.b, signal)]);
      return { a, b };
    },
    [pipelineName, current.a, current.b],
  );
  const loaded = pair.data && pair.data.a.versionNumber === BigInt(current.a) && pair.data.b.versionNumber === BigInt(current.b);
  const diff = useMemo(() => {
    if (!loaded || !pair.data) return null;
    const lines = (text: string) => text.replace(/\n$/, "").split("\n");
    return diffLines(lines(specYaml(pair.data.a.spec)), lines(specYaml(pair.data.b.spec)));
  }, [loaded, pair.data]);
  const rows = useMemo(() => (diff ? sideBySide(diff.ops, showAll ? -1 : CONTEXT) : []), [diff, showAll]);

  // Versions newest first; a long history would make a long list, still without any fetch.
  const numbers = useMemo(() => Array.from({ length: latest }, (_, i) => latest - i), [latest]);
  const option = (n: number) => (
    <option key={n} value={n}>
      Version {n}
      {n === defaultNumber ? " (default)" : ""}
      {n === selected ? " (shown)" : ""}
    </option>
  );
  const title = (which: string, n: number) => `${which}: version ${n}${n === defaultNumber ? " (default)" : ""}`;

  return (
    <section aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>Compare versions</h2>
      <div className="row">
        <label className="inline" htmlFor={`${id}-a`}>
          Version A
          <select
            id={`${id}-a`}
            value={current.a}
            onChange={(e) => setPick({ ...current, a: Number(e.target.value) })}
            data-testid="diff-version-a"
          >
            {numbers.map(option)}
          </select>
        </label>
        <label className="inline" htmlFor={`${id}-b`}>
          Version B
          <select
            id={`${id}-b`}
            value={current.b}
            onChange={(e) => setPick({ ...current, b: Number(e.target.value) })}
            data-testid="diff-version-b"
          >
            {numbers.map(option)}
          </select>
        </label>
        <label className="inline">
          <input type="checkbox" checked={showAll} onChange={(e) => setShowAll(e.target.checked)} />
          Show unchanged lines
        </label>
        {diff && (
          <span className="hint" aria-live="polite" data-testid="diff-summary">
            {diff.added === 0 && diff.removed === 0
              ? "The two versions' specs are identical."
              : `${diff.removed} line${diff.removed === 1 ? "" : "s"} removed, ${diff.added} added`}
          </span>
        )}
      </div>
      <ErrorBanner error={pair.error} title="Could not load the versions to compare" />
      {!loaded && !pair.error && <Loading what="the versions to compare" />}
      {diff && !diff.exact && (
        <p className="notice">These specs are too large to compare line by line; the changed part is shown as removed, then added.</p>
      )}
      {diff && (
        <div
          className="diff pipeline-diff"
          data-testid="version-diff"
          role="region"
          aria-label={`Differences between version ${current.a} and version ${current.b}`}
        >
          <div className="d-header">{title("A", current.a)}</div>
          <div className="d-header">{title("B", current.b)}</div>
          {rows.map((row) =>
            row.kind === "skip" ? (
              <div className="d-skip" key={row.key}>
                ⋯ {row.count} unchanged line{row.count === 1 ? "" : "s"}
              </div>
            ) : (
              <DiffLine key={`${row.leftNo}-${row.rightNo}`} row={row} />
            ),
          )}
        </div>
      )}
    </section>
  );
}

function DiffLine({ row }: { row: { left: string | null; right: string | null; leftNo: number; rightNo: number; changed: boolean } }) {
  const side = (text: string | null, no: number, cls: string, mark: string) =>
    text === null ? (
      <div className="d-empty" />
    ) : (
      <div className={row.changed ? cls : ""} title={text}>
        <span className="d-no" aria-hidden="true">
          {no}
        </span>
        <span className="d-mark">{row.changed ? mark : " "}</span>
        {text}
      </div>
    );
  return (
    <>
      {side(row.left, row.leftNo, "d-removed", "-")}
      {side(row.right, row.rightNo, "d-added", "+")}
    </>
  );
}
