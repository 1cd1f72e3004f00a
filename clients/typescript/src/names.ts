// Resource names of the contract: pipelines/{id}, pipelines/{id}/versions/{n}, runs/{id},
// schedules/{id}. Each helper takes an id or a name already in that form.

function withCollection(collection: string, idOrName: string): string {
  return idOrName.startsWith(`${collection}/`) ? idOrName : `${collection}/${idOrName}`;
}

/** "pipelines/{id}" for a pipeline id or name. */
export function pipelineName(id: string): string {
  return withCollection("pipelines", id);
}

/** "pipelines/{id}/versions/{n}". */
export function versionName(pipeline: string, versionNumber: number | bigint): string {
  return `${pipelineName(pipeline)}/versions/${versionNumber}`;
}

/** "runs/{id}" for a run id or name, or a Run's name. */
export function runName(run: string | { readonly name: string }): string {
  return withCollection("runs", typeof run === "string" ? run : run.name);
}

/** "schedules/{id}" for a schedule id or name. */
export function scheduleName(id: string): string {
  return withCollection("schedules", id);
}

/** The last segment of a name: "r-1" for "runs/r-1", "3" for "pipelines/p/versions/3". */
export function resourceId(name: string): string {
  return name.slice(name.lastIndexOf("/") + 1);
}

/** Splits "pipelines/{id}/versions/{n}" into the pipeline's name and n; throws on anything else. */
export function parseVersionName(name: string): { pipeline: string; versionNumber: number } {
  const match = /^pipelines\/([^/]+)\/versions\/([1-9][0-9]*)$/.exec(name);
  if (!match) {
    throw new TypeError(`${JSON.stringify(name)} is not a version name (pipelines/{id}/versions/{n})`);
  }
  return { pipeline: `pipelines/${match[1]}`, versionNumber: Number(match[2]) };
}
