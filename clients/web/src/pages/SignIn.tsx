// The sign-in page of a server with authentication: a bearer token (from `raypipe tokens
// create`, or a JWT of the organisation's identity provider), checked with a call before it is
// kept for the tab's session; then back to the page that asked for it.
import { useState, type FormEvent } from "react";
import { useNavigate, useSearchParams } from "react-router";
import { client, shownError, type ShownError } from "../api";
import { storeToken, storedToken } from "../auth";

export function SignInPage() {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const [token, setToken] = useState("");
  const [error, setError] = useState<ShownError | null>(null);
  const [busy, setBusy] = useState(false);
  const next = safeNext(params.get("next"));
  const why = params.get("why");

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const value = token.trim();
    if (!value) {
      setError({ code: "INVALID_ARGUMENT", message: "enter a token", reason: "", violations: [] });
      return;
    }
    setBusy(true);
    const previous = storedToken();
    storeToken(value);
    try {
      await client.pipelines.listPipelines({ pageSize: 1 });
      navigate(next, { replace: true });
    } catch (err) {
      const shown = shownError(err);
      if (shown.code === "UNAUTHENTICATED") storeToken(previous);
      setError(shown);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section style={{ maxWidth: 520 }}>
      <h1>Sign in</h1>
      <p>
        This server needs a bearer token: one from <code>raypipe tokens create</code>, or a JWT of your organisation's
        identity provider. It is kept for this tab only, until you sign out or close it.
      </p>
      {why && (
        <p className="notice" role="status" data-testid="sign-in-reason">
          {why}
        </p>
      )}
      <form onSubmit={submit} className="panel" data-testid="sign-in-form">
        <div className="field">
          <label>
            Token
            <input
              type="password"
              autoComplete="off"
              value={token}
              onChange={(e) => setToken(e.target.value)}
              aria-invalid={error ? true : undefined}
              aria-describedby={error ? "sign-in-error" : undefined}
              autoFocus
            />
          </label>
          {error && (
            <div id="sign-in-error" className="field-error" role="alert" data-testid="sign-in-error">
              {error.reason || error.code}: {error.message}
            </div>
          )}
        </div>
        <button type="submit" className="primary" disabled={busy}>
          Sign in
        </button>
      </form>
    </section>
  );
}

/** Only a path of this UI to go back to, never another origin. */
function safeNext(next: string | null): string {
  return next && next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/sign-in") ? next : "/pipelines";
}
