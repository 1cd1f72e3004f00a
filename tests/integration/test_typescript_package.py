"""@raypipe/client as a user gets it: `npm pack`, installed into an empty project with npm,
then imported by Node through its exports and type-checked by tsc as a user's code would be."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "typescript"
TSC = PACKAGE / "node_modules" / ".bin" / "tsc"

USER_CODE = """\
import { createRaypipeClient, Run_State, RaypipeError, runName } from "@raypipe/client/node";
import { createRaypipeClient as forBrowsers } from "@raypipe/client/web";
import type { Run } from "@raypipe/client";

const client = createRaypipeClient("127.0.0.1:1");
const web = forBrowsers("http://127.0.0.1:1");
const name: string = runName("r-1");
const state: Run_State = Run_State.SUCCEEDED;
export async function outcome(run: Run): Promise<string> {
  try {
    return Run_State[(await client.waitRun(run, { timeoutMs: 1 })).state] ?? "";
  } catch (e) {
    return e instanceof RaypipeError ? e.codeName : String(e);
  }
}
console.log(name, Run_State[state], typeof web.waitRun);
"""


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}\n{done.stdout}\n{done.stderr}"
    return done


def test_the_packed_package_installs_imports_and_type_checks(tmp_path: Path) -> None:
    if not (PACKAGE / "dist" / "index.js").exists() or not TSC.exists():
        pytest.fail("the TypeScript client is not built: run `make clients`")
    npm = shutil.which("npm")
    assert npm, "npm is needed"
    packed = run([npm, "pack", "--silent", "--pack-destination", str(tmp_path)], PACKAGE)
    tarball = tmp_path / packed.stdout.strip().splitlines()[-1]
    listing = run(["tar", "tzf", str(tarball)], tmp_path).stdout.split()
    assert "package/dist/node.d.ts" in listing
    assert "package/dist/gen/raypipe/v1/run_service_pb.js" in listing
    assert not [f for f in listing if f.startswith(("package/src/", "package/build/"))]

    project = tmp_path / "user"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "user", "type": "module"}))
    run([npm, "install", "--silent", "--no-audit", "--no-fund", str(tarball)], project)
    (project / "main.ts").write_text(USER_CODE)
    (project / "tsconfig.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "target": "ES2022",
                    "module": "NodeNext",
                    "moduleResolution": "NodeNext",
                    "lib": ["ES2022", "DOM"],
                    "types": [],
                    "strict": True,
                    "skipLibCheck": False,
                    "outDir": "out",
                },
                "files": ["main.ts"],
            }
        )
    )
    run([str(TSC), "-p", "tsconfig.json"], project)
    done = run(["node", "out/main.js"], project)
    assert done.stdout.strip() == "runs/r-1 SUCCEEDED function"
