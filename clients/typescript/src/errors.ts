// Typed errors: every failed call of a RaypipeClient throws a RaypipeError, with raypipe's
// error details read out: the code and its canonical name, the ErrorInfo (reason, domain,
// metadata) and one field violation per problem for bad input. The Python SDK, the Go client and grpcurl show the
// same code names, reasons and field paths for the same bad input.
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import type { Run } from "./gen/raypipe/v1/run_pb.js";
import { Run_State } from "./gen/raypipe/v1/run_pb.js";

/** A canonical status code's name, as gRPC spells it: "NOT_FOUND", "INVALID_ARGUMENT". */
export type CodeName =
  | "OK"
  | "CANCELLED"
  | "UNKNOWN"
  | "INVALID_ARGUMENT"
  | "DEADLINE_EXCEEDED"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "PERMISSION_DENIED"
  | "RESOURCE_EXHAUSTED"
  | "FAILED_PRECONDITION"
  | "ABORTED"
  | "OUT_OF_RANGE"
  | "UNIMPLEMENTED"
  | "INTERNAL"
  | "UNAVAILABLE"
  | "DATA_LOSS"
  | "UNAUTHENTICATED";

const CODE_NAMES: readonly CodeName[] = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

/** The canonical name of a Connect code (whose numbers are gRPC's): Code.NotFound → "NOT_FOUND". */
export function codeName(code: Code | number): CodeName | `CODE_${number}` {
  return CODE_NAMES[code] ?? `CODE_${code}`;
}

/** One problem with a request field: `field` is its path ("pipeline_version.spec.nodes[1].type"). */
export interface FieldViolation {
  readonly field: string;
  readonly description: string;
}

/**
 * A failed call, with raypipe's error details unpacked. `cause` is Connect's ConnectError,
 * whose findDetails() decodes any other detail. (It is not itself a ConnectError:
 * ConnectError's instanceof accepts only its own name, so a subclass would fail both checks.)
 */
export class RaypipeError extends Error {
  /** The status code (Connect's Code, whose numbers are gRPC's). */
  readonly code: Code;
  /** The code's canonical name: "NOT_FOUND". */
  readonly codeName: CodeName | `CODE_${number}`;
  /** The server's message, without the code in front. */
  readonly rawMessage: string;
  /** The ErrorInfo reason (UPPER_SNAKE_CASE, such as "RUN_NOT_FOUND"); "" when there is none. */
  readonly reason: string;
  /** The ErrorInfo domain: "raypipe.dev" for raypipe's own errors. */
  readonly domain: string;
  /** The ErrorInfo metadata, such as the name of the resource that was not found. */
  readonly errorMetadata: Readonly<Record<string, string>>;
  /** One violation per problem, for INVALID_ARGUMENT; empty otherwise. */
  readonly fieldViolations: readonly FieldViolation[];
  /** The response headers and trailers that came with the error. */
  readonly metadata: Headers;
  override readonly cause: ConnectError;

  private constructor(error: ConnectError) {
    const [info] = error.findDetails(ErrorInfoSchema);
    const fieldViolations = error
      .findDetails(BadRequestSchema)
      .flatMap((badRequest) => badRequest.fieldViolations)
      .map(({ field, description }) => ({ field, description }));
    const reason = info?.reason ?? "";
    const violations = fieldViolations.map((v) => `; ${v.field}: ${v.description}`).join("");
    super(`${codeName(error.code)}${reason ? ` (${reason})` : ""}: ${error.rawMessage}${violations}`);
    this.name = "RaypipeError";
    this.code = error.code;
    this.codeName = codeName(error.code);
    this.rawMessage = error.rawMessage;
    this.reason = reason;
    this.domain = info?.domain ?? "";
    this.errorMetadata = { ...(info?.metadata ?? {}) };
    this.fieldViolations = fieldViolations;
    this.metadata = error.metadata;
    this.cause = error;
  }

  /** Any caught value as a RaypipeError (an AbortError becomes CANCELLED, as in Connect). */
  static from(reason: unknown, code?: Code): RaypipeError {
    if (reason instanceof RaypipeError) {
      return reason;
    }
    return new RaypipeError(ConnectError.from(reason, code));
  }
}

/** Whether an error is a RaypipeError or a ConnectError with this code. */
export function hasCode(error: unknown, code: Code): boolean {
  return (error instanceof RaypipeError || error instanceof ConnectError) && error.code === code;
}

/** What waitRun throws when the run ended FAILED or CANCELLED. */
export class RunFailedError extends Error {
  readonly run: Run;

  constructor(run: Run) {
    const state = Run_State[run.state] ?? String(run.state);
    super(`run ${run.name} ended ${state}: ${run.error?.message || "no error recorded"}`);
    this.name = "RunFailedError";
    this.run = run;
  }
}

/** What waitRun throws when its timeout passed first; the run goes on. */
export class WaitTimeoutError extends Error {
  /** The run as last seen, if the stream delivered it. */
  readonly run: Run | undefined;

  constructor(name: string, timeoutMs: number, run: Run | undefined) {
    super(`run ${name} did not end within ${timeoutMs} ms`);
    this.name = "WaitTimeoutError";
    this.run = run;
  }
}

export { Code };
