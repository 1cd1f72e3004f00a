// A line diff for comparing two versions' YAML: the longest common subsequence of lines after
// the common prefix and suffix are set aside, laid out side by side with removals paired
// with the additions that replace them. Meant for specs of a few hundred (up to a couple of
// thousand) lines; past that the changed middle is shown as removed then added.

export type LineOp = { readonly op: "=" | "-" | "+"; readonly text: string };

/** The most DP cells computed (2 bytes each): about 2,000 x 2,000 changed lines. */
const MAX_CELLS = 4_000_000;

export interface LineDiff {
  readonly ops: readonly LineOp[];
  /** False when the changed part was too large for the line-by-line comparison. */
  readonly exact: boolean;
  readonly added: number;
  readonly removed: number;
}

export function diffLines(a: readonly string[], b: readonly string[]): LineDiff {
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start += 1;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA -= 1;
    endB -= 1;
  }
  const ops: LineOp[] = [];
  for (let i = 0; i < start; i += 1) ops.push({ op: "=", text: a[i]! });
  const n = endA - start;
  const m = endB - start;
  let exact = true;
  if (n > 0 && m > 0 && (n + 1) * (m + 1) <= MAX_CELLS && Math.min(n, m) < 65535) {
    // Lines as small integers, so the table compares numbers.
    const ids = new Map<string, number>();
    const intern = (s: string) => {
      let id = ids.get(s);
      if (id === undefined) {
        id = ids.size;
        ids.set(s, id);
      }
      return id;
    };
    const xa = Int32Array.from({ length: n }, (_, i) => intern(a[start + i]!));
    const xb = Int32Array.from({ length: m }, (_, j) => intern(b[start + j]!));
    const w = m + 1;
    // lcs[i * w + j]: the LCS length of xa[i..] and xb[j..].
    const lcs = new Uint16Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i -= 1) {
      for (let j = m - 1; j >= 0; j -= 1) {
        lcs[i * w + j] =
          xa[i] === xb[j] ? lcs[(i + 1) * w + j + 1]! + 1 : Math.max(lcs[(i + 1) * w + j]!, lcs[i * w + j + 1]!);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
      if (xa[i] === xb[j]) {
        ops.push({ op: "=", text: a[start + i]! });
        i += 1;
        j += 1;
      } else if (lcs[(i + 1) * w + j]! >= lcs[i * w + j + 1]!) {
        ops.push({ op: "-", text: a[start + i]! });
        i += 1;
      } else {
        ops.push({ op: "+", text: b[start + j]! });
        j += 1;
      }
    }
    for (; i < n; i += 1) ops.push({ op: "-", text: a[start + i]! });
    for (; j < m; j += 1) ops.push({ op: "+", text: b[start + j]! });
  } else {
    exact = n === 0 || m === 0;
    for (let i = start; i < endA; i += 1) ops.push({ op: "-", text: a[i]! });
    for (let j = start; j < endB; j += 1) ops.push({ op: "+", text: b[j]! });
  }
  for (let i = endA; i < a.length; i += 1) ops.push({ op: "=", text: a[i]! });
  let added = 0;
  let removed = 0;
  for (const o of ops) {
    if (o.op === "+") added += 1;
    else if (o.op === "-") removed += 1;
  }
  return { ops, exact, added, removed };
}

/** One row of the side-by-side view: a line on either side (null: nothing there), or a gap. */
export type DiffRow =
  | {
      readonly kind: "line";
      readonly left: string | null;
      readonly right: string | null;
      readonly leftNo: number;
      readonly rightNo: number;
      readonly changed: boolean;
    }
  | { readonly kind: "skip"; readonly count: number; readonly key: string };

/**
 * Side-by-side rows: each run of removals is paired with the run of additions after it;
 * unchanged runs longer than 2 * context + 1 lines keep `context` lines at each end
 * (context < 0 keeps every line).
 */
export function sideBySide(ops: readonly LineOp[], context: number): DiffRow[] {
  const rows: DiffRow[] = [];
  let leftNo = 0;
  let rightNo = 0;
  let k = 0;
  while (k < ops.length) {
    if (ops[k]!.op === "=") {
      const first = k === 0;
      const same: string[] = [];
      while (k < ops.length && ops[k]!.op === "=") {
        same.push(ops[k]!.text);
        k += 1;
      }
      const last = k >= ops.length;
      const head = first ? 0 : context;
      const tail = last ? 0 : context;
      const hidden = same.length - head - tail;
      if (context < 0 || (first && last) || hidden <= 1) {
        for (const t of same) rows.push(line(t, t, (leftNo += 1), (rightNo += 1), false));
        continue;
      }
      for (let s = 0; s < head; s += 1) rows.push(line(same[s]!, same[s]!, (leftNo += 1), (rightNo += 1), false));
      rows.push({ kind: "skip", count: hidden, key: `skip-${leftNo}-${rightNo}` });
      leftNo += hidden;
      rightNo += hidden;
      for (let s = same.length - tail; s < same.length; s += 1)
        rows.push(line(same[s]!, same[s]!, (leftNo += 1), (rightNo += 1), false));
      continue;
    }
    const removed: string[] = [];
    const added: string[] = [];
    while (k < ops.length && ops[k]!.op !== "=") {
      const o = ops[k]!;
      (o.op === "-" ? removed : added).push(o.text);
      k += 1;
    }
    for (let r = 0; r < Math.max(removed.length, added.length); r += 1) {
      const left = removed[r] ?? null;
      const right = added[r] ?? null;
      rows.push(line(left, right, left === null ? 0 : (leftNo += 1), right === null ? 0 : (rightNo += 1), true));
    }
  }
  return rows;
}

function line(left: string | null, right: string | null, leftNo: number, rightNo: number, changed: boolean): DiffRow {
  return { kind: "line", left, right, leftNo, rightNo, changed };
}
