// The one client of the UI: @raypipe/client over the Connect protocol to the origin the page
// came from (raypipe serve's HTTP port), plus what every page shows of a call's failure.
import { createRaypipeClient, RaypipeError, type FieldViolation } from "@raypipe/client/web";
import { authInterceptor } from "./auth";

// Binary protobuf on the wire: a live 1,000-node run sends its whole record with each batch of
// events, and decoding binary is several times cheaper for the page than JSON.
export const client = createRaypipeClient("", { interceptors: [authInterceptor], useBinaryFormat: true });

/** What a page shows of a failed call: the code name, the message, the reason and fields. */
export interface ShownError {
  readonly code: string;
  readonly message: string;
  readonly reason: string;
  readonly violations: readonly FieldViolation[];
}

export function shownError(error: unknown): ShownError {
  if (error instanceof RaypipeError) {
    return {
      code: error.codeName,
      message: error.rawMessage,
      reason: error.reason,
      violations: error.fieldViolations,
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: "UNKNOWN", message, reason: "", violations: [] };
}

/** Field violations by path, for forms that show each one on its field. */
export function violationsByField(error: ShownError | null): Map<string, string> {
  const byField = new Map<string, string>();
  for (const v of error?.violations ?? []) {
    byField.set(v.field, byField.has(v.field) ? `${byField.get(v.field)}; ${v.description}` : v.description);
  }
  return byField;
}

/** A violation for `path` or anything under it (`spec.nodes[1]` matches `spec.nodes[1].params.x`). */
export function violationsUnder(error: ShownError | null, path: string): FieldViolation[] {
  return (error?.violations ?? []).filter(
    (v) => v.field === path || v.field.startsWith(`${path}.`) || v.field.startsWith(`${path}[`),
  );
}
