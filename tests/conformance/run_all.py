"""Run the conformance scenario with every client against one server and print a table.

    python -m tests.conformance.run_all --address localhost:50051     (or: make conformance)

Each runner is a process of its own (the Python SDK's, the TypeScript client's on Node, the
Go client's), run one after the other with RAYPIPE_ADDRESS set; the table has a row per step
and a column per language, then every failure with its language and reason. Exit status 0
only when every runner passed every step. `make clients` builds the TypeScript and Go runners.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = Path(__file__).with_name("scenario.json")
GO_BIN = ROOT / ".venv" / "gobin"
TS_BUILD = ROOT / "clients" / "typescript" / "build"
LINE = re.compile(r"^(ok|FAIL) ([a-z0-9_]+)(?:: (.*))?$")
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$")


def commands(scenario: Path) -> dict[str, list[str]]:
    """The command of each runner, given the scenario file. ``typescript-web`` is the
    TypeScript runner through the browser entry point (Connect over fetch, the HTTP port)."""
    typescript = ["node", str(TS_BUILD / "conformance" / "runner.js"), str(scenario)]
    return {
        "python": [sys.executable, "-m", "tests.conformance.runner_python", str(scenario)],
        "typescript": typescript,
        "go": [str(GO_BIN / "conformance"), str(scenario)],
        "typescript-web": typescript,
    }


@dataclass
class Result:
    """What one runner reported."""

    language: str
    returncode: int
    steps: dict[str, str] = field(default_factory=dict)  # step id -> "ok" or the failure
    summary: tuple[int, int] | None = None
    output: str = ""

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and self.summary is not None and self.summary[1] == 0


def parse(language: str, returncode: int, output: str) -> Result:
    result = Result(language, returncode, output=output)
    for line in output.splitlines():
        if match := LINE.match(line.strip()):
            status, step, why = match.groups()
            result.steps[step] = "ok" if status == "ok" else f"FAIL: {why or ''}"
        elif match := SUMMARY.match(line.strip()):
            result.summary = (int(match.group(1)), int(match.group(2)))
    return result


def run(
    address: str,
    *,
    http_address: str = "",
    scenario: Path = SCENARIO,
    languages: list[str] | None = None,
    timeout: float = 600,
    token: str = "",
    tls_ca: str = "",
) -> list[Result]:
    """Each runner against the server at ``address`` (gRPC), one after the other; with
    ``http_address`` (``http://host:port``) the browser entry point's runner too. ``token``
    and ``tls_ca`` reach every runner as RAYPIPE_TOKEN and RAYPIPE_TLS_CA (and, for Node's
    fetch, NODE_EXTRA_CA_CERTS), the way each client reads its credentials."""
    every = commands(scenario)
    results = []
    chosen = languages or [name for name in every if http_address or name != "typescript-web"]
    for language in chosen:
        argv = every[language]
        env = {**os.environ, "RAYPIPE_ADDRESS": address}
        if token:
            env["RAYPIPE_TOKEN"] = token
        if tls_ca:
            env.update(RAYPIPE_TLS_CA=tls_ca, NODE_EXTRA_CA_CERTS=tls_ca)
        if language == "typescript-web":
            env.update(RAYPIPE_ADDRESS=http_address, RAYPIPE_TRANSPORT="web")
        built = {"typescript": argv[1], "typescript-web": argv[1], "go": argv[0]}.get(language)
        if built is not None and not Path(built).exists():
            results.append(Result(language, 127, output=f"{built} is missing: run `make clients`"))
            continue
        try:
            done = subprocess.run(
                argv,
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            output = done.stdout + (f"\n{done.stderr}" if done.stderr.strip() else "")
            results.append(parse(language, done.returncode, output))
        except subprocess.TimeoutExpired as e:
            output = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            results.append(parse(language, 124, output + f"\n(timed out after {timeout:.0f} s)"))
    return results


def step_ids(scenario: Path = SCENARIO) -> list[str]:
    return [step["id"] for step in json.loads(scenario.read_text())["steps"]]


def table(results: list[Result], steps: list[str]) -> str:
    """A row per step, a column per language; then each failure, naming its language."""
    width = max(len(s) for s in steps)
    columns = [r.language for r in results]
    lines = [f"{'step':<{width}}  " + "  ".join(f"{c:<10}" for c in columns)]
    for step in steps:
        cells = []
        for r in results:
            outcome = r.steps.get(step)
            cells.append("ok" if outcome == "ok" else "FAIL" if outcome else "-")
        lines.append(f"{step:<{width}}  " + "  ".join(f"{c:<10}" for c in cells))
    totals = []
    for r in results:
        passed, failed = r.summary if r.summary else (0, len(steps))
        totals.append(
            f"{r.language}: {passed} passed, {failed} failed" + ("" if r.passed else " (FAILED)")
        )
    lines.append("; ".join(totals))
    for r in results:
        for step, outcome in r.steps.items():
            if outcome != "ok":
                lines.append(f"{r.language} {step}: {outcome}")
        missing = [s for s in steps if s not in r.steps]
        if missing or (not r.passed and all(o == "ok" for o in r.steps.values())):
            lines.append(
                f"{r.language}: exit {r.returncode}, no outcome for {missing or 'the run'}"
            )
            lines.append("  " + r.output.strip().replace("\n", "\n  ")[-3000:])
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default=os.environ.get("RAYPIPE_ADDRESS") or "localhost:50051")
    parser.add_argument(
        "--http-address",
        default=os.environ.get("RAYPIPE_HTTP_ADDRESS", ""),
        help="http://host:port of the HTTP port: adds the runner through Connect (typescript-web)",
    )
    parser.add_argument("--scenario", type=Path, default=SCENARIO)
    parser.add_argument("--languages", default="", help="comma-separated; default: all")
    parser.add_argument(
        "--token",
        default=os.environ.get("RAYPIPE_TOKEN", ""),
        help="a bearer token for every runner",
    )
    parser.add_argument(
        "--tls-ca",
        default=os.environ.get("RAYPIPE_TLS_CA", ""),
        help="the CA of a TLS server (PEM)",
    )
    args = parser.parse_args()
    languages = [name for name in args.languages.split(",") if name] or None
    results = run(
        args.address,
        http_address=args.http_address,
        scenario=args.scenario,
        languages=languages,
        token=args.token,
        tls_ca=args.tls_ca,
    )
    print(table(results, step_ids(args.scenario)))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
