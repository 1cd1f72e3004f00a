// A resource's labels as chips: `key=value`.
export function LabelChips({ labels }: { labels: Record<string, string> }) {
  const entries = Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (entries.length === 0) return <span className="muted">—</span>;
  return (
    <ul className="chips" aria-label="Labels">
      {entries.map(([k, v]) => (
        <li className="chip" key={k}>
          {k}={v}
        </li>
      ))}
    </ul>
  );
}

/** n of `pipelines/{id}/versions/{n}`; 0 for an empty or other name. */
export function versionNumberOf(name: string): number {
  const match = /\/versions\/([1-9][0-9]*)$/.exec(name);
  return match ? Number(match[1]) : 0;
}
