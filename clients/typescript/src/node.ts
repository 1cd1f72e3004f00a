// The Node entry point: `createRaypipeClient()` speaks gRPC (HTTP/2) to the server's gRPC
// port, RAYPIPE_ADDRESS or localhost:50051 by default. `transport: "connect"` speaks the
// Connect protocol instead, to the HTTP port that serves it.
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { createRaypipeClient as createClient, type RaypipeClient } from "./client.js";

export * from "./index.js";

/** Where `raypipe serve` listens unless told otherwise. */
export const DEFAULT_ADDRESS = "localhost:50051";

export interface NodeClientOptions {
  /** "grpc" (the default), "connect", or a Transport of your own. */
  readonly transport?: "grpc" | "connect" | Transport;
  /** Interceptors for the transport this makes (such as one that adds credentials). */
  readonly interceptors?: Interceptor[];
}

/** $RAYPIPE_ADDRESS, or DEFAULT_ADDRESS when it is unset or empty. */
export function addressFromEnv(): string {
  return process.env.RAYPIPE_ADDRESS || DEFAULT_ADDRESS;
}

/** A RaypipeClient for Node: gRPC to `address` (default: addressFromEnv()). */
export function createRaypipeClient(address: string = addressFromEnv(), options: NodeClientOptions = {}): RaypipeClient {
  const kind = options.transport ?? "grpc";
  const interceptors = options.interceptors ?? [];
  return createClient(address, {
    transport:
      typeof kind !== "string"
        ? kind
        : kind === "grpc"
          ? (baseUrl) => createGrpcTransport({ baseUrl, interceptors })
          : (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors }),
  });
}
