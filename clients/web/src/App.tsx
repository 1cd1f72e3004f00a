// The UI's frame: the navigation and one route per resource name, so every page has a link
// of its own (/pipelines/{id}, /pipelines/{id}/versions/{n}, /runs/{id}, /schedules/{id},
// /builder) that raypipe serve answers with this app.
import { lazy, Suspense, useEffect, useState } from "react";
import { NavLink, Navigate, Route, Routes, useLocation, useNavigate } from "react-router";
import { storeToken, storedToken, UNAUTHENTICATED_EVENT } from "./auth";
import { Loading } from "./components/common";
import { SignInPage } from "./pages/SignIn";

// One chunk per page, loaded when first opened: the run monitor does not wait for the
// builder's code, nor the builder for the YAML diff's.
const BuilderPage = lazy(() => import("./pages/Builder").then((m) => ({ default: m.BuilderPage })));
const PipelinePage = lazy(() => import("./pages/Pipeline").then((m) => ({ default: m.PipelinePage })));
const PipelinesPage = lazy(() => import("./pages/Pipelines").then((m) => ({ default: m.PipelinesPage })));
const RunPage = lazy(() => import("./pages/Run").then((m) => ({ default: m.RunPage })));
const RunsPage = lazy(() => import("./pages/Runs").then((m) => ({ default: m.RunsPage })));
const SchedulePage = lazy(() => import("./pages/Schedule").then((m) => ({ default: m.SchedulePage })));
const SchedulesPage = lazy(() => import("./pages/Schedules").then((m) => ({ default: m.SchedulesPage })));

/** A call answered UNAUTHENTICATED leads to the sign-in page, which comes back here after. */
function useSignInOnUnauthenticated(): void {
  const navigate = useNavigate();
  const location = useLocation();
  useEffect(() => {
    const onUnauthenticated = (event: Event) => {
      if (location.pathname === "/sign-in") return;
      const next = `${location.pathname}${location.search}`;
      const why = (event as CustomEvent<string>).detail ?? "";
      navigate(`/sign-in?next=${encodeURIComponent(next)}&why=${encodeURIComponent(why)}`);
    };
    window.addEventListener(UNAUTHENTICATED_EVENT, onUnauthenticated);
    return () => window.removeEventListener(UNAUTHENTICATED_EVENT, onUnauthenticated);
  }, [navigate, location]);
}

function SignOut() {
  const navigate = useNavigate();
  const location = useLocation();
  const [signedIn, setSignedIn] = useState(storedToken() !== "");
  useEffect(() => setSignedIn(storedToken() !== ""), [location]);
  if (!signedIn) return null;
  return (
    <button
      type="button"
      className="sign-out"
      onClick={() => {
        storeToken("");
        setSignedIn(false);
        navigate("/sign-in");
      }}
    >
      Sign out
    </button>
  );
}

export function App() {
  useSignInOnUnauthenticated();
  return (
    <div className="app">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <NavLink to="/pipelines" className="brand">
          raypipe
        </NavLink>
        <nav aria-label="Main">
          <NavLink to="/pipelines">Pipelines</NavLink>
          <NavLink to="/runs">Runs</NavLink>
          <NavLink to="/schedules">Schedules</NavLink>
          <NavLink to="/builder">Builder</NavLink>
        </nav>
        <span className="spacer" />
        <SignOut />
      </header>
      <main id="main" tabIndex={-1}>
        <Suspense fallback={<Loading what="the page" />}>
        <Routes>
          <Route path="/" element={<Navigate to="/pipelines" replace />} />
          <Route path="/pipelines" element={<PipelinesPage />} />
          <Route path="/pipelines/:pipelineId" element={<PipelinePage />} />
          <Route path="/pipelines/:pipelineId/versions/:versionNumber" element={<PipelinePage />} />
          <Route path="/runs" element={<RunsPage />} />
          <Route path="/runs/:runId" element={<RunPage />} />
          <Route path="/schedules" element={<SchedulesPage />} />
          <Route path="/schedules/:scheduleId" element={<SchedulePage />} />
          <Route path="/builder" element={<BuilderPage />} />
          <Route path="/sign-in" element={<SignInPage />} />
          <Route path="*" element={<NotFound />} />
        </Routes>
        </Suspense>
      </main>
    </div>
  );
}

function NotFound() {
  return (
    <section>
      <h1>Not found</h1>
      <p>
        This address is not a page of raypipe's UI. Start from <NavLink to="/pipelines">Pipelines</NavLink>.
      </p>
    </section>
  );
}
