// The Node entry point: `createRaypipeClient()` speaks gRPC (HTTP/2) to the server's gRPC
// port, RAYPIPE_ADDRESS or localhost:50051 by default. `transport: "connect"` speaks the
// Connect protocol instead, to the HTTP port that serves it.
import { readFileSync } from "node:fs";
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { createRaypipeClient as createClient, type RaypipeClient } from "./client.js";
import { bearerToken } from "./credentials.js";

export * from "./index.js";

/** Where `raypipe serve` listens unless told otherwise. */
export const DEFAULT_ADDRESS = "localhost:50051";

export interface NodeClientOptions {
  /** "grpc" (the default), "connect", or a Transport of your own. */
  readonly transport?: "grpc" | "connect" | Transport;
  /** Interceptors for the transport this makes (such as one that adds credentials). */
  readonly interceptors?: Interceptor[];
  /**
   * A bearer token for a server with authentication, sent as `authorization: Bearer TOKEN`;
   * default $RAYPIPE_TOKEN; "" sends none.
   */
  readonly token?: string;
  /**
   * TLS: the CA bundle (PEM) of the server's certificate; default $RAYPIPE_TLS_CA. With it (or
   * an https:// address) the client speaks TLS; "system" trusts Node's own roots.
   */
  readonly tlsCa?: string;
  /** Mutual TLS: this client's certificate and key (PEM files); default $RAYPIPE_TLS_CERT and $RAYPIPE_TLS_KEY. */
  readonly tlsCert?: string;
  readonly tlsKey?: string;
}

/** $RAYPIPE_ADDRESS, or DEFAULT_ADDRESS when it is unset or empty. */
export function addressFromEnv(): string {
  return process.env.RAYPIPE_ADDRESS || DEFAULT_ADDRESS;
}

/** A RaypipeClient for Node: gRPC to `address` (default: addressFromEnv()). */
export function createRaypipeClient(address: string = addressFromEnv(), options: NodeClientOptions = {}): RaypipeClient {
  const kind = options.transport ?? "grpc";
  const token = options.token ?? process.env.RAYPIPE_TOKEN ?? "";
  const interceptors = [...(token ? [bearerToken(token)] : []), ...(options.interceptors ?? [])];
  const ca = options.tlsCa ?? process.env.RAYPIPE_TLS_CA ?? "";
  const cert = options.tlsCert ?? process.env.RAYPIPE_TLS_CERT ?? "";
  const key = options.tlsKey ?? process.env.RAYPIPE_TLS_KEY ?? "";
  const tls = ca !== "" || cert !== "" || address.startsWith("https://");
  const target = tls && !/^https?:\/\//.test(address) ? `https://${address}` : address;
  // Node's TLS options for the connection: the CA (unless the system's roots) and a client
  // certificate.
  const nodeOptions = tls
    ? {
        ...(ca && ca !== "system" ? { ca: readFileSync(ca) } : {}),
        ...(cert ? { cert: readFileSync(cert), key: readFileSync(key) } : {}),
      }
    : undefined;
  return createClient(target, {
    transport:
      typeof kind !== "string"
        ? kind
        : kind === "grpc"
          ? (baseUrl) => createGrpcTransport({ baseUrl, interceptors, nodeOptions })
          : (baseUrl) =>
              createConnectTransport({
                baseUrl,
                httpVersion: tls ? "2" : "1.1",
                interceptors,
                nodeOptions,
              }),
  });
}
