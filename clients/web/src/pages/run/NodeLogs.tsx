// A node attempt's log: every line from WatchNodeLogs (the whole log of an attempt that ended,
// then the stream ends; a running attempt's lines as they are written, with re-attach from the
// last offset), the stream or level of each line, a search that keeps the matching lines, and
// a download of the whole text.
import { LogLine_Stream, NodeExecution_State, type LogLine, type NodeExecution } from "@raypipe/client/web";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import { client, shownError, type ShownError } from "../../api";
import { ErrorBanner } from "../../components/common";

/** The view shows the last this many lines (all matching lines when searching); Download has all. */
const SHOWN = 2000;

export function NodeLogs({ runName, node }: { runName: string; node: NodeExecution }) {
  const [attempt, setAttempt] = useState(node.attempt);
  // A new attempt (a retry) becomes the one shown.
  useEffect(() => setAttempt(node.attempt), [node.attempt]);
  const current = attempt === node.attempt;
  const running = current && node.state === NodeExecution_State.RUNNING;
  const log = useAttemptLog(runName, node.nodeId, attempt);
  const [search, setSearch] = useState("");
  const [follow, setFollow] = useState(true);
  const box = useRef<HTMLPreElement>(null);

  const matching = useMemo(() => {
    if (!search) return log.lines.slice(-SHOWN);
    const needle = search.toLowerCase();
    return log.lines.filter((l) => l.text.toLowerCase().includes(needle)).slice(-SHOWN);
  }, [log.lines, search]);

  useEffect(() => {
    if (follow && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [matching, follow]);

  const download = () => {
    const text = log.lines.map(lineText).join("\n") + "\n";
    const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = `${runName.replace("runs/", "")}-${node.nodeId}-attempt-${attempt}.log`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };

  return (
    <section aria-label="Logs" data-testid="node-logs">
      <h3>Logs</h3>
      <div className="row">
        <label className="inline">
          Attempt
          <select value={attempt} onChange={(e) => setAttempt(Number(e.target.value))} data-testid="log-attempt">
            {Array.from({ length: node.attempt }, (_, i) => i + 1).map((n) => (
              <option key={n} value={n}>
                {n}
                {n === node.attempt ? " (last)" : ""}
              </option>
            ))}
          </select>
        </label>
        <label className="inline">
          Search
          <input
            type="search"
            value={search}
            onChange={(e) => setSearch(e.target.value)}
            placeholder="text in the log"
            data-testid="log-search"
          />
        </label>
        <label className="inline">
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} />
          Follow
        </label>
        <button type="button" onClick={download} disabled={!log.lines.length} data-testid="log-download">
          Download
        </button>
      </div>
      <p className="hint" aria-live="polite" data-testid="log-status">
        {log.lines.length.toLocaleString()} lines
        {search ? `, ${matching.length.toLocaleString()} matching` : ""}
        {running || !log.complete ? (log.error ? "" : " · following") : " · complete"}
        {log.lines.length > SHOWN && !search ? ` · showing the last ${SHOWN.toLocaleString()}` : ""}
      </p>
      <ErrorBanner error={log.error} title="Could not read the log" />
      <pre className="log" ref={box} data-testid="log-lines" tabIndex={0} aria-label={`Log of attempt ${attempt}`}>
        {matching.map((l) => (
          <div key={String(l.offset)} className={lineClass(l)}>
            <span className="l-time">{timeOf(l)}</span>
            {l.level ? `${l.level} ` : l.stream === LogLine_Stream.STDERR ? "stderr " : ""}
            {search ? highlight(l.text, search) : l.text}
          </div>
        ))}
      </pre>
    </section>
  );
}

interface AttemptLog {
  readonly lines: readonly LogLine[];
  readonly complete: boolean;
  readonly error: ShownError | null;
}

function useAttemptLog(runName: string, nodeId: string, attempt: number): AttemptLog {
  const [log, setLog] = useState<AttemptLog>({ lines: [], complete: false, error: null });
  useEffect(() => {
    const controller = new AbortController();
    const lines: LogLine[] = [];
    let frame = 0;
    let complete = false;
    let error: ShownError | null = null;
    const flush = () => {
      frame = 0;
      setLog({ lines: lines.slice(), complete, error });
    };
    const schedule = () => {
      if (frame === 0) frame = requestAnimationFrame(flush);
    };
    setLog({ lines: [], complete: false, error: null });
    void (async () => {
      try {
        for await (const line of client.followNodeLogs(runName, nodeId, { attempt, signal: controller.signal })) {
          lines.push(line);
          schedule();
        }
        complete = true;
      } catch (err) {
        if (controller.signal.aborted) return;
        error = shownError(err);
      }
      schedule();
    })();
    return () => {
      controller.abort();
      if (frame !== 0) cancelAnimationFrame(frame);
    };
  }, [runName, nodeId, attempt]);
  return log;
}

function timeOf(line: LogLine): string {
  return line.time ? timestampDate(line.time).toISOString().slice(11, 23) : "";
}

function lineText(line: LogLine): string {
  const source = line.level || LogLine_Stream[line.stream]?.replace("STREAM_", "") || "";
  return `${line.time ? timestampDate(line.time).toISOString() : ""} ${source} ${line.text}`;
}

function lineClass(line: LogLine): string {
  if (line.level) return `l-${line.level.toLowerCase()}`;
  if (line.stream === LogLine_Stream.STDERR) return "l-stderr";
  if (line.stream === LogLine_Stream.RAYPIPE) return "l-warning";
  return "";
}

function highlight(text: string, needle: string) {
  const lower = text.toLowerCase();
  const parts: ReactNode[] = [];
  let at = 0;
  for (let i = lower.indexOf(needle.toLowerCase()); i >= 0; i = lower.indexOf(needle.toLowerCase(), at)) {
    if (i > at) parts.push(text.slice(at, i));
    parts.push(<mark key={i}>{text.slice(i, i + needle.length)}</mark>);
    at = i + needle.length;
  }
  parts.push(text.slice(at));
  return parts;
}
