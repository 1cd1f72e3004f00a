// Credentials for a server with authentication (docs/security.md): a bearer token on every
// call, as `authorization: Bearer TOKEN` (gRPC metadata, or the HTTP header over Connect).
import type { Interceptor } from "@connectrpc/connect";

/** An interceptor that sends `token` with every call (never logged, never in a URL). */
export function bearerToken(token: string): Interceptor {
  const value = `Bearer ${token}`;
  return (next) => (request) => {
    request.header.set("authorization", value);
    return next(request);
  };
}
