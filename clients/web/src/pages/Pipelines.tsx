// /pipelines: every pipeline, a page at a time (ListPipelines), filtered by labels, with a
// box that opens a pipeline by id (GetPipeline) and a link to the builder for a new one.
import { useState, type FormEvent } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import { client, shownError, violationsUnder, type ShownError } from "../api";
import { ErrorBanner, Loading, Pager, useLoad, usePageTokens } from "../components/common";
import { formatTime, idOf } from "../format";
import { labelFilter } from "./pipeline/labelFilter";
import { LabelChips, versionNumberOf } from "./pipeline/Labels";

const PAGE_SIZE = 25;

export function PipelinesPage() {
  const [params, setParams] = useSearchParams();
  const applied = params.get("labels") ?? "";
  const filter = labelFilter(applied);
  const [draft, setDraft] = useState(applied);
  const [draftFor, setDraftFor] = useState(applied);
  if (draftFor !== applied) {
    // The URL changed (back/forward): the box follows it.
    setDraftFor(applied);
    setDraft(applied);
  }
  const pages = usePageTokens(filter);
  const list = useLoad(
    (signal) => client.pipelines.listPipelines({ pageSize: PAGE_SIZE, pageToken: pages.token, filter }, { signal }),
    [filter, pages.token],
  );

  const filterError: ShownError | null =
    list.error && list.error.code === "INVALID_ARGUMENT" && violationsUnder(list.error, "filter").length > 0
      ? list.error
      : null;
  const filterProblems = violationsUnder(filterError, "filter").map((v) => v.description);
  const otherError = filterError ? null : list.error;

  function applyFilter(event: FormEvent) {
    event.preventDefault();
    const next = new URLSearchParams(params);
    if (draft.trim()) next.set("labels", draft.trim());
    else next.delete("labels");
    setParams(next);
  }
  function clearFilter() {
    setDraft("");
    const next = new URLSearchParams(params);
    next.delete("labels");
    setParams(next);
  }

  const rows = list.data?.pipelines ?? [];
  return (
    <section>
      <div className="row">
        <h1>Pipelines</h1>
        <span className="spacer" />
        <Link to="/builder" className="button primary-link" data-testid="new-pipeline">
          New pipeline
        </Link>
      </div>

      <div className="row pipelines-tools">
        <form onSubmit={applyFilter} className="pipelines-filter" aria-label="Filter pipelines by label" role="search">
          <div className="field">
            <label htmlFor="pipelines-label-filter">Label filter</label>
            <div className="row">
              <input
                id="pipelines-label-filter"
                value={draft}
                onChange={(e) => setDraft(e.target.value)}
                placeholder="team=ml, env!=prod, gpu"
                size={36}
                aria-invalid={filterProblems.length > 0}
                aria-describedby="pipelines-label-filter-help"
                data-testid="label-filter"
              />
              <button type="submit">Apply</button>
              {applied && (
                <button type="button" onClick={clearFilter}>
                  Clear
                </button>
              )}
            </div>
            <div id="pipelines-label-filter-help">
              {filterProblems.length > 0 && (
                <div className="field-error" data-testid="label-filter-error">
                  {filterProblems.join("; ")}
                </div>
              )}
              <div className="hint">
                <code>key=value</code>, <code>key!=value</code> or <code>key</code> (the label is set); terms are
                joined by AND.
                {filter && (
                  <>
                    {" "}
                    Filter: <code data-testid="label-filter-sent">{filter}</code>
                  </>
                )}
              </div>
            </div>
          </div>
        </form>
        <span className="spacer" />
        <GoToPipeline />
      </div>

      <ErrorBanner error={otherError} title="Could not list the pipelines" />
      {list.loading && !list.data && <Loading what="pipelines" />}
      {list.data && (
        <>
          <table
            data-testid="pipelines-table"
            aria-busy={list.loading}
            aria-label={`Pipelines${filter ? ` matching ${filter}` : ""}`}
          >
            <thead>
              <tr>
                <th scope="col">ID</th>
                <th scope="col">Display name</th>
                <th scope="col">Labels</th>
                <th scope="col">Default version</th>
                <th scope="col">Latest version</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((p) => {
                const id = idOf(p.name);
                const def = versionNumberOf(p.defaultVersion);
                const latest = Number(p.latestVersionNumber);
                return (
                  <tr key={p.name} data-testid={`pipeline-row-${id}`}>
                    <td>
                      <Link to={`/pipelines/${id}`}>
                        <code>{id}</code>
                      </Link>
                    </td>
                    <td>{p.displayName || <span className="muted">—</span>}</td>
                    <td>
                      <LabelChips labels={p.labels} />
                    </td>
                    <td>
                      {def ? (
                        <Link to={`/pipelines/${id}/versions/${def}`} aria-label={`${id} version ${def} (default)`}>
                          v{def}
                        </Link>
                      ) : (
                        <span className="muted">none</span>
                      )}
                    </td>
                    <td>
                      {latest ? (
                        <Link to={`/pipelines/${id}/versions/${latest}`} aria-label={`${id} version ${latest} (latest)`}>
                          v{latest}
                        </Link>
                      ) : (
                        <span className="muted">none</span>
                      )}
                    </td>
                    <td>{formatTime(p.updateTime)}</td>
                  </tr>
                );
              })}
              {rows.length === 0 && (
                <tr>
                  <td colSpan={6} className="muted">
                    {filter ? "No pipeline matches this filter." : "No pipelines yet. "}
                    {!filter && <Link to="/builder">Build the first one</Link>}
                  </td>
                </tr>
              )}
            </tbody>
          </table>
          <Pager
            label="Pipelines"
            page={pages.page}
            hasPrevious={pages.hasPrevious}
            nextToken={list.data.nextPageToken}
            onPrevious={pages.previous}
            onNext={pages.next}
            busy={list.loading}
          />
        </>
      )}
    </section>
  );
}

/** "Go to pipeline id": GetPipeline, then its page; NOT_FOUND (or a bad id) on the field. */
function GoToPipeline() {
  const navigate = useNavigate();
  const [id, setId] = useState("");
  const [problem, setProblem] = useState("");
  const [error, setError] = useState<ShownError | null>(null);
  const [pending, setPending] = useState(false);

  async function go(event: FormEvent) {
    event.preventDefault();
    const wanted = id.trim().replace(/^pipelines\//, "");
    setError(null);
    if (!wanted) {
      setProblem("Enter a pipeline id.");
      return;
    }
    setPending(true);
    setProblem("");
    try {
      const response = await client.pipelines.getPipeline({ name: `pipelines/${wanted}` });
      navigate(`/pipelines/${idOf(response.pipeline?.name ?? wanted)}`);
    } catch (e) {
      const shown = shownError(e);
      if (shown.code === "NOT_FOUND") setProblem(`No pipeline has the id "${wanted}".`);
      else if (shown.code === "INVALID_ARGUMENT")
        setProblem(shown.violations.map((v) => v.description).join("; ") || shown.message);
      else setError(shown);
      setPending(false);
    }
  }

  return (
    <form onSubmit={go} aria-label="Go to a pipeline by id" className="pipelines-goto">
      <div className="field">
        <label htmlFor="pipelines-goto-id">Go to pipeline id</label>
        <div className="row">
          <input
            id="pipelines-goto-id"
            value={id}
            onChange={(e) => {
              setId(e.target.value);
              setProblem("");
            }}
            placeholder="my-pipeline"
            aria-invalid={problem !== ""}
            aria-describedby={problem ? "pipelines-goto-error" : undefined}
            data-testid="goto-pipeline-id"
          />
          <button type="submit" disabled={pending} data-testid="goto-pipeline-submit">
            Go
          </button>
        </div>
        {problem && (
          <div className="field-error" id="pipelines-goto-error" role="alert" data-testid="goto-pipeline-error">
            {problem}
          </div>
        )}
        <ErrorBanner error={error} title="Could not open the pipeline" />
      </div>
    </form>
  );
}
