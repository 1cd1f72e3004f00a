// @raypipe/client: raypipe's contract (raypipe.v1) for TypeScript, with a thin layer over the
// generated code. Import `@raypipe/client/node` on Node (gRPC) or `@raypipe/client/web` in a
// browser (Connect); both re-export everything here.
export {
  type ApplyOptions,
  type ApplyResult,
  baseUrl,
  createRaypipeClient,
  isTerminal,
  type NodeLogOptions,
  type PagedRequest,
  type PipelineSpecInit,
  type RaypipeClient,
  type RaypipeClientOptions,
  type TransportOption,
  type WaitRunOptions,
  type WatchRunOptions,
} from "./client.js";
export {
  Code,
  RaypipeError,
  RunFailedError,
  WaitTimeoutError,
  codeName,
  hasCode,
  type CodeName,
  type FieldViolation,
} from "./errors.js";
export { parseVersionName, pipelineName, resourceId, runName, scheduleName, versionName } from "./names.js";
export { bearerToken } from "./credentials.js";
export { collect, paginate, type Page } from "./paging.js";
export * from "./gen/raypipe/v1/node_log_pb.js";
export * from "./gen/raypipe/v1/node_type_pb.js";
export * from "./gen/raypipe/v1/pipeline_pb.js";
export * from "./gen/raypipe/v1/pipeline_service_pb.js";
export * from "./gen/raypipe/v1/pipeline_spec_pb.js";
export * from "./gen/raypipe/v1/run_pb.js";
export * from "./gen/raypipe/v1/run_service_pb.js";
export * from "./gen/raypipe/v1/schedule_pb.js";
export * from "./gen/raypipe/v1/schedule_service_pb.js";
export { Health, HealthCheckResponse_ServingStatus } from "./gen/grpc/health/v1/health_pb.js";
