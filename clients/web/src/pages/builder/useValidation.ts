// Live validation: ValidatePipelineSpec for the canvas's spec, 400 ms after the last change.
// Each answer is applied only if it is for the newest request (an older one still in flight
// is aborted and ignored), and carries the node keys as they were when the spec was sent, so
// `spec.nodes[i]` maps to the node that was at index i then.
import type { PipelineSpec } from "@raypipe/client/web";
import { Code, hasCode } from "@raypipe/client/web";
import { useEffect, useRef, useState } from "react";
import { client, shownError, type ShownError } from "../../api";
import { mapViolations, type MappedViolations } from "./model";

export type Validation =
  | { readonly state: "empty" }
  | { readonly state: "checking" }
  | { readonly state: "valid"; readonly specKey: string; readonly order: readonly string[] }
  | { readonly state: "invalid"; readonly specKey: string; readonly error: ShownError; readonly mapped: MappedViolations }
  | { readonly state: "error"; readonly specKey: string; readonly error: ShownError };

export const DEBOUNCE_MS = 400;

export function useValidation(spec: PipelineSpec, specKey: string, nodeKeys: readonly string[]): Validation & { pending: boolean } {
  const [result, setResult] = useState<Validation>({ state: "empty" });
  const latest = useRef(0);
  const keysRef = useRef(nodeKeys);
  keysRef.current = nodeKeys;
  const specRef = useRef(spec);
  specRef.current = spec;

  useEffect(() => {
    const request = ++latest.current;
    const sent = specRef.current;
    const keys = [...keysRef.current];
    if (sent.nodes.length === 0) {
      setResult({ state: "empty" });
      return;
    }
    const controller = new AbortController();
    const timer = setTimeout(() => {
      client.pipelines.validatePipelineSpec({ spec: sent }, { signal: controller.signal }).then(
        (response) => {
          if (request !== latest.current) return;
          setResult({ state: "valid", specKey, order: response.topologicalOrder });
        },
        (err: unknown) => {
          if (request !== latest.current || controller.signal.aborted) return;
          const error = shownError(err);
          if (hasCode(err, Code.InvalidArgument)) {
            setResult({ state: "invalid", specKey, error, mapped: mapViolations(error.violations, keys) });
          } else {
            setResult({ state: "error", specKey, error });
          }
        },
      );
    }, DEBOUNCE_MS);
    return () => {
      clearTimeout(timer);
      controller.abort();
    };
  }, [specKey]);

  const pending = result.state === "empty" ? spec.nodes.length > 0 : result.state === "checking" || result.specKey !== specKey;
  return { ...result, pending };
}
