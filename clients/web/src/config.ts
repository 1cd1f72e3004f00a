// What the server tells the UI about its deployment (GET /ui-config.json on the HTTP port):
// the Ray dashboard's URL, for links from a node to its Ray task. Fetched once per page load.
import { useEffect, useState } from "react";

export interface UiConfig {
  /** The Ray dashboard of the cluster the server runs on; "" when it has none. */
  readonly rayDashboardUrl: string;
  /** Calls need a bearer token (the server has --auth-tokens or --auth-jwks-url). */
  readonly authRequired: boolean;
}

let pending: Promise<UiConfig> | null = null;

export function loadUiConfig(): Promise<UiConfig> {
  pending ??= fetch("/ui-config.json", { headers: { Accept: "application/json" } })
    .then((r): Promise<Partial<UiConfig>> => (r.ok ? r.json() : Promise.resolve({})))
    .then((c) => ({ rayDashboardUrl: c.rayDashboardUrl ?? "", authRequired: c.authRequired ?? false }))
    .catch(() => ({ rayDashboardUrl: "", authRequired: false }));
  return pending;
}

export function useUiConfig(): UiConfig {
  const [config, setConfig] = useState<UiConfig>({ rayDashboardUrl: "", authRequired: false });
  useEffect(() => {
    let live = true;
    void loadUiConfig().then((c) => live && setConfig(c));
    return () => {
      live = false;
    };
  }, []);
  return config;
}

/**
 * A Ray task's page in the Ray dashboard. The dashboard routes tasks under their job, and a
 * Ray task id (24 bytes) ends with the id of its job (4 bytes).
 */
export function rayTaskUrl(dashboard: string, taskId: string): string {
  if (!dashboard || taskId.length < 8) return "";
  return `${dashboard.replace(/\/$/, "")}/#/jobs/${taskId.slice(-8)}/tasks/${taskId}`;
}

/** A Ray node's page in the Ray dashboard. */
export function rayNodeUrl(dashboard: string, nodeId: string): string {
  if (!dashboard || !nodeId) return "";
  return `${dashboard.replace(/\/$/, "")}/#/cluster/nodes/${nodeId}`;
}
