// The label filter box of the pipelines list: `team=ml, env!=prod gpu` becomes ListPipelines'
// filter `labels.team = "ml" AND labels.env != "prod" AND labels.gpu:*`. Terms are separated
// by commas, spaces or AND; a value may be quoted ("ml ops"). A key or value the server does
// not accept is left for it to say so (INVALID_ARGUMENT on `filter`).

/** Splits on commas and spaces outside double quotes; spaces around = and != are allowed. */
function terms(input: string): string[] {
  const out: string[] = [];
  let current = "";
  let quoted = false;
  for (let i = 0; i < input.length; i += 1) {
    const c = input[i]!;
    if (quoted) {
      current += c;
      if (c === "\\" && i + 1 < input.length) {
        current += input[i + 1];
        i += 1;
      } else if (c === '"') quoted = false;
      continue;
    }
    if (c === '"') {
      quoted = true;
      current += c;
    } else if (c === "," || /\s/.test(c)) {
      // "team = ml": a space next to an operator does not end the term.
      const rest = input.slice(i).trimStart();
      const before = current.trimEnd();
      if (before.endsWith("=") || rest.startsWith("=") || rest.startsWith("!=")) {
        if (c === ",") {
          out.push(current);
          current = "";
        }
        continue;
      }
      out.push(current);
      current = "";
    } else current += c;
  }
  out.push(current);
  return out.map((t) => t.trim()).filter((t) => t !== "" && t.toUpperCase() !== "AND");
}

function unquote(value: string): string {
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
    return value.slice(1, -1).replace(/\\(["\\])/g, "$1");
  }
  return value;
}

function quote(value: string): string {
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

function labelKey(key: string): string {
  const k = key.trim();
  return k.startsWith("labels.") ? k : `labels.${k}`;
}

/** The ListPipelines filter for the box's text; "" for no term. */
export function labelFilter(input: string): string {
  return terms(input)
    .map((term) => {
      const match = /^([^=!:"]+?)\s*(!=|=)\s*(.*)$/.exec(term);
      if (match) return `${labelKey(match[1]!)} ${match[2]} ${quote(unquote(match[3]!.trim()))}`;
      const key = term.endsWith(":*") ? term.slice(0, -2) : term;
      return `${labelKey(key)}:*`;
    })
    .join(" AND ");
}
