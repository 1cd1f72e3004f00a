// Signing in to a server with authentication (docs/security.md): the bearer token the user
// gives on the sign-in page is kept for the browser tab's session (sessionStorage, gone when
// the tab closes) and sent as `Authorization: Bearer TOKEN` with every call. A call answered
// UNAUTHENTICATED sends the user back to the sign-in page, with the page they were on to
// return to.
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

const KEY = "raypipe.token";
export const UNAUTHENTICATED_EVENT = "raypipe:unauthenticated";

export function storedToken(): string {
  try {
    return sessionStorage.getItem(KEY) ?? "";
  } catch {
    return "";
  }
}

export function storeToken(token: string): void {
  if (token) sessionStorage.setItem(KEY, token);
  else sessionStorage.removeItem(KEY);
}

export const authInterceptor: Interceptor = (next) => async (request) => {
  const token = storedToken();
  if (token) request.header.set("Authorization", `Bearer ${token}`);
  try {
    return await next(request);
  } catch (error) {
    if (error instanceof ConnectError && error.code === Code.Unauthenticated) {
      window.dispatchEvent(new CustomEvent(UNAUTHENTICATED_EVENT, { detail: error.rawMessage }));
    }
    throw error;
  }
};
