// The browser entry point: `createRaypipeClient(address)` speaks the Connect protocol over
// fetch to the server's HTTP port (the one the web UI is served from), or gRPC-web with
// `transport: "grpc-web"`. Nothing here imports Node's modules, so bundlers take it as it is.
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { createRaypipeClient as createClient, type RaypipeClient } from "./client.js";
import { bearerToken } from "./credentials.js";

export * from "./index.js";

export interface WebClientOptions {
  /** "connect" (the default), "grpc-web", or a Transport of your own. */
  readonly transport?: "connect" | "grpc-web" | Transport;
  /** Interceptors for the transport this makes (such as one that adds credentials). */
  readonly interceptors?: Interceptor[];
  /** Binary protobuf instead of JSON on the wire (Connect only); JSON is easier to inspect. */
  readonly useBinaryFormat?: boolean;
  /** A bearer token sent with every call (see also `bearerToken` for one that changes). */
  readonly token?: string;
}

/** A RaypipeClient for browsers: Connect over fetch to `address` (a URL, or "" for the page's origin). */
export function createRaypipeClient(address: string, options: WebClientOptions = {}): RaypipeClient {
  const kind = options.transport ?? "connect";
  const interceptors = [...(options.token ? [bearerToken(options.token)] : []), ...(options.interceptors ?? [])];
  const origin = address === "" && typeof location !== "undefined" ? location.origin : address;
  return createClient(origin, {
    transport:
      typeof kind !== "string"
        ? kind
        : kind === "connect"
          ? (baseUrl) => createConnectTransport({ baseUrl, interceptors, useBinaryFormat: options.useBinaryFormat ?? false })
          : (baseUrl) => createGrpcWebTransport({ baseUrl, interceptors }),
  });
}
