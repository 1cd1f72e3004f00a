// /pipelines/{id} and /pipelines/{id}/versions/{n}: a pipeline, its versions (newest first,
// a page at a time) and one version — the URL's, else the default — with its DAG, YAML,
// a diff against another version, a rollback to it and a form that runs it.
import type { PipelineVersion } from "@raypipe/client/web";
import { useCallback, useEffect, useMemo, useState } from "react";
import { Link, useParams } from "react-router";
import { client, shownError, type ShownError } from "../api";
import { ConfirmDialog, ErrorBanner, Loading, Pager, useLoad, usePageTokens } from "../components/common";
import { formatTime } from "../format";
import { Dag, type DagNode } from "../graph/Dag";
import { LabelChips, versionNumberOf } from "./pipeline/Labels";
import { RunForm } from "./pipeline/RunForm";
import { specYaml } from "./pipeline/specYaml";
import { VersionDiff } from "./pipeline/VersionDiff";

const VERSIONS_PAGE_SIZE = 20;

export function PipelinePage() {
  const { pipelineId = "", versionNumber } = useParams();
  const name = `pipelines/${pipelineId}`;
  const urlNumber =
    versionNumber === undefined ? null : /^[1-9][0-9]{0,17}$/.test(versionNumber) ? Number(versionNumber) : NaN;

  const pipelineLoad = useLoad(
    async (signal) => (await client.pipelines.getPipeline({ name }, { signal })).pipeline ?? null,
    [name],
  );
  const pipeline = pipelineLoad.data?.name === name ? pipelineLoad.data : null;
  const defaultNumber = pipeline ? versionNumberOf(pipeline.defaultVersion) : 0;
  const selected = urlNumber ?? (pipeline ? defaultNumber : 0);

  // Versions never change once created: each one is fetched once while the page shows this pipeline.
  const cache = useMemo(() => new Map<number, PipelineVersion>(), [name]);
  const getVersion = useCallback(
    async (n: number, signal: AbortSignal) => {
      const hit = cache.get(n);
      if (hit) return hit;
      const response = await client.pipelines.getPipelineVersion({ name: `${name}/versions/${n}` }, { signal });
      const version = response.pipelineVersion;
      if (!version) throw new Error(`the server returned no version for ${name}/versions/${n}`);
      cache.set(n, version);
      return version;
    },
    [cache, name],
  );
  const versionLoad = useLoad(
    (signal) => (Number.isFinite(selected) && selected > 0 ? getVersion(selected, signal) : Promise.resolve(null)),
    [getVersion, selected],
  );
  const versionName = `${name}/versions/${selected}`;
  const version = versionLoad.data?.name === versionName ? versionLoad.data : null;

  const [confirming, setConfirming] = useState(false);
  const [rolling, setRolling] = useState(false);
  const [rollbackError, setRollbackError] = useState<ShownError | null>(null);
  const [notice, setNotice] = useState<{ key: string; text: string } | null>(null);
  useEffect(() => {
    setRollbackError(null);
    setConfirming(false);
  }, [versionName]);

  async function rollback() {
    setConfirming(false);
    setRolling(true);
    setRollbackError(null);
    try {
      await client.pipelines.rollbackPipeline({ name, version: versionName });
      setNotice({ key: versionName, text: `Version ${selected} is now the default version.` });
      pipelineLoad.reload();
    } catch (e) {
      setRollbackError(shownError(e));
    } finally {
      setRolling(false);
    }
  }

  if (pipelineLoad.error?.code === "NOT_FOUND") {
    return (
      <section data-testid="pipeline-not-found">
        <h1>Pipeline not found</h1>
        <p className="notice" role="alert">
          There is no pipeline with the id <code>{pipelineId}</code>. It may have been deleted.
        </p>
        <p>
          <Link to="/pipelines">All pipelines</Link> · <Link to="/builder">Build a new pipeline</Link>
        </p>
      </section>
    );
  }
  if (!pipeline) {
    return (
      <section>
        <h1>
          Pipeline <code>{pipelineId}</code>
        </h1>
        <ErrorBanner error={pipelineLoad.error} title="Could not load the pipeline" />
        {!pipelineLoad.error && <Loading what="the pipeline" />}
      </section>
    );
  }

  const latest = Math.max(Number(pipeline.latestVersionNumber), Number.isFinite(selected) ? selected : 0);
  const shownNotice = notice?.key === versionName ? notice.text : "";
  return (
    <section className="pipeline-page">
      <header className="pipeline-header">
        <div className="row">
          <h1>{pipeline.displayName || pipelineId}</h1>
          <code data-testid="pipeline-id">{pipelineId}</code>
          <span className="spacer" />
          <Link to={`/runs?pipeline=${encodeURIComponent(pipelineId)}`}>Runs of this pipeline</Link>
          <Link to={`/builder?pipeline=${encodeURIComponent(pipelineId)}`}>Open in builder</Link>
        </div>
        {pipeline.description && <p className="pipeline-description">{pipeline.description}</p>}
        <dl className="kv">
          <dt>Labels</dt>
          <dd>
            <LabelChips labels={pipeline.labels} />
          </dd>
          <dt>Default version</dt>
          <dd data-testid="pipeline-default-version">
            {defaultNumber ? <Link to={`/pipelines/${pipelineId}/versions/${defaultNumber}`}>v{defaultNumber}</Link> : "none"}
          </dd>
          <dt>Updated</dt>
          <dd>{formatTime(pipeline.updateTime)}</dd>
        </dl>
      </header>
      <ErrorBanner error={pipelineLoad.error} title="Could not reload the pipeline" />

      {latest === 0 && urlNumber === null ? (
        <p className="notice">
          This pipeline has no version yet.{" "}
          <Link to={`/builder?pipeline=${encodeURIComponent(pipelineId)}`}>Create one in the builder</Link>.
        </p>
      ) : (
        <>
          <div className="split">
            <div>
              <VersionDetails
                pipelineId={pipelineId}
                selected={selected}
                defaultNumber={defaultNumber}
                version={version}
                loading={versionLoad.loading}
                error={versionLoad.error}
                latest={Number(pipeline.latestVersionNumber)}
                onRollback={() => setConfirming(true)}
                rolling={rolling}
                rollbackError={rollbackError}
                notice={shownNotice}
              />
            </div>
            <aside>
              <VersionsList
                name={name}
                pipelineId={pipelineId}
                selected={selected}
                defaultNumber={defaultNumber}
              />
              {version && (
                <section className="panel pipeline-run" aria-labelledby="pipeline-run-title">
                  <h2 id="pipeline-run-title">Run version {selected}</h2>
                  <RunForm key={version.name} version={version} pipelineId={pipelineId} />
                </section>
              )}
            </aside>
          </div>
          {version && (
            <VersionDiff
              key={name}
              pipelineName={name}
              latest={latest}
              defaultNumber={defaultNumber}
              selected={selected}
              getVersion={getVersion}
            />
          )}
        </>
      )}
      <ConfirmDialog
        open={confirming}
        title={`Roll back to version ${selected}?`}
        confirmLabel={`Roll back to version ${selected}`}
        onConfirm={rollback}
        onCancel={() => setConfirming(false)}
      >
        <p>
          Version {selected} becomes the default version of <code>{pipelineId}</code>
          {defaultNumber ? ` instead of version ${defaultNumber}` : ""}: runs and schedules that name only the pipeline
          will use it. No version is deleted.
        </p>
      </ConfirmDialog>
    </section>
  );
}

function VersionDetails(props: {
  pipelineId: string;
  selected: number;
  defaultNumber: number;
  version: PipelineVersion | null;
  loading: boolean;
  error: ShownError | null;
  latest: number;
  onRollback: () => void;
  rolling: boolean;
  rollbackError: ShownError | null;
  notice: string;
}) {
  const { pipelineId, selected, defaultNumber, version } = props;
  const yaml = useMemo(() => (version ? specYaml(version.spec) : ""), [version]);
  const [yamlUrl, setYamlUrl] = useState<string | null>(null);
  useEffect(() => {
    if (!yaml) {
      setYamlUrl(null);
      return;
    }
    const url = URL.createObjectURL(new Blob([yaml], { type: "application/yaml" }));
    setYamlUrl(url);
    return () => URL.revokeObjectURL(url);
  }, [yaml]);
  const nodes = useMemo<DagNode[]>(
    () => (version?.spec?.nodes ?? []).map((n) => ({ id: n.id, type: n.type, dependsOn: n.dependsOn })),
    [version],
  );
  const [picked, setPicked] = useState<{ version: string; node: string } | null>(null);
  const pickedNode =
    version && picked?.version === version.name ? version.spec?.nodes.find((n) => n.id === picked.node) : undefined;

  if (!Number.isFinite(selected)) {
    return (
      <p className="notice" role="alert" data-testid="version-not-found">
        This address does not name a version: version numbers are 1, 2, 3, …{" "}
        <Link to={`/pipelines/${pipelineId}`}>Show the default version</Link>.
      </p>
    );
  }
  if (props.error?.code === "NOT_FOUND") {
    return (
      <div className="notice" role="alert" data-testid="version-not-found">
        <strong>Version {selected} not found.</strong> Pipeline <code>{pipelineId}</code> has{" "}
        {props.latest ? `versions 1 to ${props.latest}` : "no version yet"}.{" "}
        {props.defaultNumber > 0 && <Link to={`/pipelines/${pipelineId}`}>Show the default version</Link>}
      </div>
    );
  }
  if (!version) {
    return (
      <>
        <h2>Version {selected}</h2>
        <ErrorBanner error={props.error} title="Could not load the version" />
        {!props.error && <Loading what={`version ${selected}`} />}
      </>
    );
  }

  const isDefault = selected === defaultNumber;
  const q = `pipeline=${encodeURIComponent(pipelineId)}&version=${selected}`;
  return (
    <section aria-labelledby="pipeline-version-title" data-testid="version-details">
      <div className="row">
        <h2 id="pipeline-version-title">Version {selected}</h2>
        {isDefault && <span className="badge default">default</span>}
        <span className="spacer" />
        {!isDefault && (
          <button
            type="button"
            className="danger"
            onClick={props.onRollback}
            disabled={props.rolling}
            data-testid="rollback-button"
          >
            {props.rolling ? "Rolling back…" : `Roll back to version ${selected}`}
          </button>
        )}
      </div>
      {props.notice && (
        <p className="notice" role="status" data-testid="rollback-notice">
          {props.notice}
        </p>
      )}
      <ErrorBanner error={props.rollbackError} title="Could not roll back" />
      <dl className="kv">
        <dt>Description</dt>
        <dd>{version.description || <span className="muted">—</span>}</dd>
        <dt>Spec digest</dt>
        <dd>
          <code data-testid="version-digest">{version.specDigest}</code>
        </dd>
        <dt>Created</dt>
        <dd>
          {formatTime(version.createTime)}
          {version.creator && <span data-testid="version-creator"> by {version.creator}</span>}
        </dd>
        <dt>Nodes</dt>
        <dd>{nodes.length}</dd>
      </dl>
      <div className="row version-actions">
        {yamlUrl && (
          <a href={yamlUrl} download={`${pipelineId}-v${selected}.yaml`} className="button" data-testid="download-yaml">
            Download YAML
          </a>
        )}
        <Link to={`/builder?${q}`} className="button" data-testid="edit-in-builder">
          Edit in builder
        </Link>
        <Link to={`/runs?${q}`}>Runs of this version</Link>
      </div>
      <h3>DAG</h3>
      <Dag
        nodes={nodes}
        selected={pickedNode?.id ?? null}
        onSelect={(id) => setPicked({ version: version.name, node: id })}
        label={`DAG of ${pipelineId} version ${selected}`}
        height={380}
      />
      {pickedNode && (
        <div className="panel node-detail" data-testid="node-detail">
          <div className="row">
            <strong>{pickedNode.id}</strong>
            <span className="muted">{pickedNode.type}</span>
            <span className="spacer" />
            <button type="button" onClick={() => setPicked(null)} aria-label="Close node details">
              Close
            </button>
          </div>
          <dl className="kv">
            <dt>Depends on</dt>
            <dd>{pickedNode.dependsOn.length ? pickedNode.dependsOn.join(", ") : "—"}</dd>
            <dt>Parameters</dt>
            <dd>
              <pre className="node-params">{JSON.stringify(pickedNode.params ?? {}, null, 2)}</pre>
            </dd>
          </dl>
        </div>
      )}
      <h3>YAML</h3>
      <pre className="version-yaml" data-testid="version-yaml" tabIndex={0} aria-label={`YAML of version ${selected}`}>
        {yaml}
      </pre>
    </section>
  );
}

function VersionsList(props: { name: string; pipelineId: string; selected: number; defaultNumber: number }) {
  const { name, pipelineId, selected, defaultNumber } = props;
  const pages = usePageTokens(name);
  const list = useLoad(
    (signal) =>
      client.pipelines.listPipelineVersions(
        { parent: name, pageSize: VERSIONS_PAGE_SIZE, pageToken: pages.token, omitSpec: true },
        { signal },
      ),
    [name, pages.token],
  );
  const versions = list.data?.pipelineVersions ?? [];
  return (
    <section className="panel pipeline-versions" aria-labelledby="pipeline-versions-title">
      <h2 id="pipeline-versions-title">Versions</h2>
      <ErrorBanner error={list.error} title="Could not list the versions" />
      {list.loading && !list.data && <Loading what="versions" />}
      {list.data && (
        <>
          <table aria-label="Versions, newest first" aria-busy={list.loading} data-testid="versions-table">
            <thead>
              <tr>
                <th scope="col">Version</th>
                <th scope="col">Description</th>
                <th scope="col">Created</th>
                <th scope="col">By</th>
              </tr>
            </thead>
            <tbody>
              {versions.map((v) => {
                const n = Number(v.versionNumber);
                const current = n === selected;
                return (
                  <tr key={v.name} data-testid={`version-row-${n}`} className={current ? "selected" : undefined}>
                    <td className="nowrap">
                      <Link to={`/pipelines/${pipelineId}/versions/${n}`} aria-current={current ? "page" : undefined}>
                        v{n}
                      </Link>{" "}
                      {n === defaultNumber && <span className="badge default">default</span>}
                    </td>
                    <td className="version-description" title={v.description}>
                      {v.description || <span className="muted">—</span>}
                    </td>
                    <td className="nowrap">{formatTime(v.createTime)}</td>
                    <td>{v.creator}</td>
                  </tr>
                );
              })}
              {versions.length === 0 && (
                <tr>
                  <td colSpan={4} className="muted">
                    No versions.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
          <Pager
            label="Versions"
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

