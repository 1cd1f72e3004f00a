// The RaypipeClient: a generated client per service, with every error thrown as a
// RaypipeError, plus what every caller would otherwise rewrite: paging through the List
// methods as async iterables, following a run with reconnect, waiting for its outcome, and
// waiting for a serving server. The generated clients stay the API: each request and response
// is a raypipe.v1 message, so everything the contract offers is there.
import type { DescMessage, DescService, MessageInitShape } from "@bufbuild/protobuf";
import { Code, createClient, type CallOptions, type Client, type Transport } from "@connectrpc/connect";
import { HealthCheckResponse_ServingStatus, Health } from "./gen/grpc/health/v1/health_pb.js";
import {
  PipelineService,
  type ListPipelinesRequestSchema,
  type ListPipelineVersionsRequestSchema,
} from "./gen/raypipe/v1/pipeline_service_pb.js";
import type { Pipeline, PipelineVersion } from "./gen/raypipe/v1/pipeline_pb.js";
import type { PipelineSpecSchema } from "./gen/raypipe/v1/pipeline_spec_pb.js";
import type { LogLine } from "./gen/raypipe/v1/node_log_pb.js";
import { RunEvent_Type, Run_State, type Run } from "./gen/raypipe/v1/run_pb.js";
import {
  RunService,
  type ListRunsRequestSchema,
  type WatchRunResponse,
} from "./gen/raypipe/v1/run_service_pb.js";
import type { Schedule } from "./gen/raypipe/v1/schedule_pb.js";
import { ScheduleService, type ListSchedulesRequestSchema } from "./gen/raypipe/v1/schedule_service_pb.js";
import { RaypipeError, RunFailedError, WaitTimeoutError, hasCode } from "./errors.js";
import { pipelineName, resourceId, runName } from "./names.js";
import { paginate } from "./paging.js";

/** How to reach the server: a Connect Transport, or a function that makes one for a base URL. */
export type TransportOption = Transport | ((baseUrl: string) => Transport);

export interface RaypipeClientOptions {
  /** The transport: gRPC on Node (`@raypipe/client/node`), Connect or gRPC-web in browsers (`@raypipe/client/web`). */
  readonly transport: TransportOption;
}

/** A list request without its page token: the iterable fetches the pages itself. */
export type PagedRequest<Schema extends DescMessage> = Omit<MessageInitShape<Schema>, "pageToken" | "$typeName">;

export interface WatchRunOptions {
  /** Ends the stream (and any reconnect wait) when aborted. */
  readonly signal?: AbortSignal;
  /** Only these event types after the snapshot; empty for every event. */
  readonly eventTypes?: readonly RunEvent_Type[];
}

export interface WaitRunOptions {
  /** Ends the wait when aborted (the run goes on). */
  readonly signal?: AbortSignal;
  /** Milliseconds to wait at most, then a WaitTimeoutError (the run goes on). */
  readonly timeoutMs?: number;
  /** Called with every response as it arrives; after a reconnect, with the fresh snapshot. */
  readonly onEvent?: (response: WatchRunResponse) => void;
  /** Throw a RunFailedError when the run ends FAILED or CANCELLED (the default); false returns it. */
  readonly raiseOnFailure?: boolean;
}

/** A PipelineSpec as a plain object, as apply and createPipelineVersion take it. */
export type PipelineSpecInit = MessageInitShape<typeof PipelineSpecSchema>;

export interface ApplyOptions {
  /** The new version's change note. */
  readonly description?: string;
  /** The display name, if the pipeline is created. */
  readonly displayName?: string;
  /** The labels, if the pipeline is created. */
  readonly labels?: Record<string, string>;
}

/** What apply did. */
export interface ApplyResult {
  /** The pipeline after the call, with its defaultVersion. */
  readonly pipeline: Pipeline;
  /** The new version, or the default version whose spec was the same. */
  readonly version: PipelineVersion;
  /** Whether the pipeline did not exist before. */
  readonly pipelineCreated: boolean;
  /** Whether a new version was stored (false: the spec's digest equalled the default version's). */
  readonly versionCreated: boolean;
}

export interface NodeLogOptions {
  /** The attempt, from 1; default: the node's last one when the call is made. */
  readonly attempt?: number;
  /** The first line (a LogLine.offset, or a previous nextOffset); 0 from the start. */
  readonly offset?: number;
  /** Ends the stream (and any reconnect wait) when aborted. */
  readonly signal?: AbortSignal;
}

export interface RaypipeClient {
  readonly pipelines: Client<typeof PipelineService>;
  readonly runs: Client<typeof RunService>;
  readonly schedules: Client<typeof ScheduleService>;
  readonly health: Client<typeof Health>;
  /** The transport every call goes through. */
  readonly transport: Transport;

  /** Every run that matches, newest first, page by page as the loop asks. */
  listRuns(request?: PagedRequest<typeof ListRunsRequestSchema>, options?: CallOptions): AsyncIterable<Run>;
  /** Every pipeline, page by page. */
  listPipelines(request?: PagedRequest<typeof ListPipelinesRequestSchema>, options?: CallOptions): AsyncIterable<Pipeline>;
  /** Every version of a pipeline, page by page. */
  listPipelineVersions(
    request: PagedRequest<typeof ListPipelineVersionsRequestSchema>,
    options?: CallOptions,
  ): AsyncIterable<PipelineVersion>;
  /** Every schedule, page by page. */
  listSchedules(request?: PagedRequest<typeof ListSchedulesRequestSchema>, options?: CallOptions): AsyncIterable<Schedule>;

  /**
   * A run's events until it ends (WatchRun): a snapshot first, then every change. A stream
   * broken by UNAVAILABLE is reopened with backoff, and the server starts it again with a fresh
   * snapshot, so nothing is missed (a change may be seen again in that snapshot).
   */
  watchRun(run: string | Run, options?: WatchRunOptions): AsyncIterable<WatchRunResponse>;
  /**
   * Every line of a node attempt's log from `offset`, as the attempt writes it, until it ends
   * (WatchNodeLogs). A stream broken by UNAVAILABLE is reopened from the offset after the last
   * line received, so no line is missed or repeated.
   */
  followNodeLogs(run: string | Run, node: string, options?: NodeLogOptions): AsyncIterable<LogLine>;
  /** The name of a node attempt's log: `runs/{run}/nodes/{node}/attempts/{n}/logs` (default: the last attempt). */
  nodeLogName(run: string | Run, node: string, attempt?: number): Promise<string>;
  /** Follows a run until it ends and returns it in its terminal state (see WaitRunOptions). */
  waitRun(run: string | Run, options?: WaitRunOptions): Promise<Run>;
  /**
   * Makes `spec` the pipeline's default version, creating only what is missing: the pipeline if
   * it does not exist, and a version only if the spec's digest (as the server computes it)
   * differs from the default version's, so applying the same spec twice changes nothing. The
   * spec is validated first, so a bad one (INVALID_ARGUMENT, violations under `spec.`) leaves
   * no empty pipeline behind.
   */
  apply(
    pipelineId: string,
    spec: PipelineSpecInit,
    options?: ApplyOptions,
  ): Promise<ApplyResult>;
  /** Waits until the health service answers SERVING, retrying while the server cannot be reached. */
  ready(options?: { readonly signal?: AbortSignal; readonly timeoutMs?: number }): Promise<void>;
}

const TERMINAL = new Set<Run_State>([Run_State.SUCCEEDED, Run_State.FAILED, Run_State.CANCELLED]);

/** Whether a run in this state will not change again. */
export function isTerminal(state: Run_State): boolean {
  return TERMINAL.has(state);
}

/** "host:port" → "http://host:port"; a URL is kept as it is. */
export function baseUrl(address: string): string {
  return /^https?:\/\//.test(address) ? address.replace(/\/+$/, "") : `http://${address}`;
}

/**
 * A client for the raypipe server at `address` ("host:port" or a URL) through the given
 * transport. On Node, `createRaypipeClient` from `@raypipe/client/node` picks gRPC for you; in a
 * browser, the one from `@raypipe/client/web` picks Connect.
 */
export function createRaypipeClient(address: string, options: RaypipeClientOptions): RaypipeClient {
  const transport = typeof options.transport === "function" ? options.transport(baseUrl(address)) : options.transport;
  const pipelines = wrapErrors(PipelineService, createClient(PipelineService, transport));
  const runs = wrapErrors(RunService, createClient(RunService, transport));
  const schedules = wrapErrors(ScheduleService, createClient(ScheduleService, transport));
  const health = wrapErrors(Health, createClient(Health, transport));

  async function* watchRun(run: string | Run, options: WatchRunOptions = {}): AsyncGenerator<WatchRunResponse> {
    const request = { name: runName(run), eventTypes: [...(options.eventTypes ?? [])] };
    const backoff = new Backoff();
    for (;;) {
      try {
        for await (const response of runs.watchRun(request, { signal: options.signal })) {
          backoff.reset();
          yield response;
          if (response.run && isTerminal(response.run.state)) {
            return;
          }
        }
      } catch (error) {
        if (!(error instanceof RaypipeError) || error.code !== Code.Unavailable) {
          throw error;
        }
      }
      // UNAVAILABLE, or a stream that ended before the run did (a server shutting down
      // closes its streams): reconnect.
      await backoff.sleep(options.signal);
    }
  }

  async function waitRun(run: string | Run, options: WaitRunOptions = {}): Promise<Run> {
    const name = runName(run);
    const signal = deadline(options.signal, options.timeoutMs);
    const eventTypes = options.onEvent ? [] : [RunEvent_Type.RUN_STATE_CHANGED];
    let last: Run | undefined;
    try {
      for await (const response of watchRun(name, { signal, eventTypes })) {
        last = response.run ?? last;
        options.onEvent?.(response);
      }
    } catch (error) {
      if (options.timeoutMs !== undefined && signal.aborted && !options.signal?.aborted) {
        throw new WaitTimeoutError(name, options.timeoutMs, last);
      }
      throw error;
    }
    if (last === undefined || !isTerminal(last.state)) {
      // watchRun returns only after a terminal run; anything else is a broken invariant.
      throw new Error(`WatchRun of ${name} ended without the run's outcome`);
    }
    if ((options.raiseOnFailure ?? true) && last.state !== Run_State.SUCCEEDED) {
      throw new RunFailedError(last);
    }
    return last;
  }

  async function nodeLogName(run: string | Run, node: string, attempt?: number): Promise<string> {
    let n = attempt;
    if (n === undefined) {
      const { run: current } = await runs.getRun({ name: runName(run) });
      n = Math.max(1, current?.nodes.find((e) => e.nodeId === node)?.attempt ?? 1);
    }
    return `${runName(run)}/nodes/${node}/attempts/${n}/logs`;
  }

  async function* followNodeLogs(run: string | Run, node: string, options: NodeLogOptions = {}): AsyncGenerator<LogLine> {
    const name = await nodeLogName(run, node, options.attempt);
    let offset = BigInt(options.offset ?? 0);
    const backoff = new Backoff();
    for (;;) {
      try {
        for await (const message of runs.watchNodeLogs({ name, offset }, { signal: options.signal })) {
          backoff.reset();
          yield* message.lines;
          offset = message.nextOffset;
          if (message.complete) {
            return;
          }
        }
      } catch (error) {
        if (!(error instanceof RaypipeError) || error.code !== Code.Unavailable) {
          throw error;
        }
      }
      await backoff.sleep(options.signal);
    }
  }

  async function apply(
    pipelineId: string,
    spec: PipelineSpecInit,
    options: ApplyOptions = {},
  ): Promise<ApplyResult> {
    const { specDigest } = await pipelines.validatePipelineSpec({ spec });
    const name = pipelineName(pipelineId);
    let pipelineCreated = false;
    let current: Pipeline | undefined;
    try {
      current = (await pipelines.getPipeline({ name })).pipeline;
    } catch (error) {
      if (!hasCode(error, Code.NotFound)) {
        throw error;
      }
      try {
        const pipeline = { displayName: options.displayName ?? "", labels: options.labels ?? {} };
        current = (await pipelines.createPipeline({ pipelineId: resourceId(name), pipeline })).pipeline;
        pipelineCreated = true;
      } catch (raced) {
        if (!hasCode(raced, Code.AlreadyExists)) {
          throw raced;
        }
        current = (await pipelines.getPipeline({ name })).pipeline; // created concurrently
      }
    }
    if (current?.defaultVersion) {
      const { pipelineVersion: version } = await pipelines.getPipelineVersion({ name: current.defaultVersion });
      if (version && version.specDigest === specDigest) {
        return { pipeline: current, version, pipelineCreated, versionCreated: false };
      }
    }
    const { pipelineVersion: version } = await pipelines.createPipelineVersion({
      parent: name,
      pipelineVersion: { spec, description: options.description ?? "" },
    });
    const { pipeline } = await pipelines.getPipeline({ name });
    if (!pipeline || !version) {
      throw new Error(`the server answered without the pipeline or version of ${name}`);
    }
    return { pipeline, version, pipelineCreated, versionCreated: true };
  }

  async function ready(options: { readonly signal?: AbortSignal; readonly timeoutMs?: number } = {}): Promise<void> {
    const signal = deadline(options.signal, options.timeoutMs);
    const backoff = new Backoff();
    for (;;) {
      try {
        const response = await health.check({}, { signal });
        if (response.status === HealthCheckResponse_ServingStatus.SERVING) {
          return;
        }
      } catch (error) {
        if (signal.aborted || !(error instanceof RaypipeError) || error.code !== Code.Unavailable) {
          throw error;
        }
      }
      await backoff.sleep(signal);
    }
  }

  return {
    pipelines,
    runs,
    schedules,
    health,
    transport,
    listRuns: (request = {}, callOptions) =>
      paginate(async (pageToken) => {
        const response = await runs.listRuns({ ...request, pageToken }, callOptions);
        return { items: response.runs, nextPageToken: response.nextPageToken };
      }),
    listPipelines: (request = {}, callOptions) =>
      paginate(async (pageToken) => {
        const response = await pipelines.listPipelines({ ...request, pageToken }, callOptions);
        return { items: response.pipelines, nextPageToken: response.nextPageToken };
      }),
    listPipelineVersions: (request, callOptions) =>
      paginate(async (pageToken) => {
        const response = await pipelines.listPipelineVersions({ ...request, pageToken }, callOptions);
        return { items: response.pipelineVersions, nextPageToken: response.nextPageToken };
      }),
    listSchedules: (request = {}, callOptions) =>
      paginate(async (pageToken) => {
        const response = await schedules.listSchedules({ ...request, pageToken }, callOptions);
        return { items: response.schedules, nextPageToken: response.nextPageToken };
      }),
    watchRun,
    waitRun,
    followNodeLogs,
    nodeLogName,
    apply,
    ready,
  };
}

/** A signal that aborts with `signal` or once `timeoutMs` has passed, whichever comes first. */
function deadline(signal: AbortSignal | undefined, timeoutMs: number | undefined): AbortSignal {
  const signals = [signal, timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs)];
  return AbortSignal.any(signals.filter((s): s is AbortSignal => s !== undefined));
}

/** The same client, with every error a RaypipeError: unary calls and streams alike. */
function wrapErrors<S extends DescService>(service: S, client: Client<S>): Client<S> {
  const calls = client as unknown as Record<string, (request: unknown, options?: CallOptions) => unknown>;
  const wrapped: Record<string, unknown> = {};
  for (const method of service.methods) {
    const call = calls[method.localName];
    if (call === undefined) {
      continue;
    }
    if (method.methodKind === "unary") {
      wrapped[method.localName] = async (request: unknown, options?: CallOptions) => {
        try {
          return await call(request, options);
        } catch (error) {
          throw RaypipeError.from(error);
        }
      };
    } else if (method.methodKind === "server_streaming") {
      wrapped[method.localName] = (request: unknown, options?: CallOptions) =>
        rethrowing(call(request, options) as AsyncIterable<unknown>);
    } else {
      wrapped[method.localName] = call;
    }
  }
  return wrapped as Client<S>;
}

async function* rethrowing<T>(stream: AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* stream;
  } catch (error) {
    throw RaypipeError.from(error);
  }
}

/** Reconnect delays: 0.1 s doubling to 5 s, with up to 10% jitter; reset once a stream delivers. */
export class Backoff {
  private next = 100;

  reset(): void {
    this.next = 100;
  }

  /** The next delay in milliseconds (and doubles the one after). */
  delay(): number {
    const delay = this.next + Math.random() * this.next * 0.1;
    this.next = Math.min(this.next * 2, 5000);
    return delay;
  }

  sleep(signal?: AbortSignal): Promise<void> {
    const delay = this.delay();
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(RaypipeError.from(signal.reason));
        return;
      }
      const onAbort = () => {
        clearTimeout(timer);
        reject(RaypipeError.from(signal?.reason));
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, delay);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}
