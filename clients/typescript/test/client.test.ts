// Unit tests of the layer over the generated code, against a real in-process gRPC server
// (Connect's Node adapter on HTTP/2) whose RunService plays scripted answers.
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { BadRequestSchema, ErrorInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import {
  RaypipeError,
  RunEvent_Type,
  RunFailedError,
  RunSchema,
  RunService,
  Run_State,
  WaitTimeoutError,
  collect,
  createRaypipeClient,
  paginate,
  parseVersionName,
  pipelineName,
  resourceId,
  runName,
  scheduleName,
  versionName,
  type Run,
  type WatchRunRequest,
} from "../src/node.js";
import { baseUrl } from "../src/client.js";

function run(state: Run_State): Run {
  return create(RunSchema, { name: "runs/r-1", state });
}

interface Script {
  logOffsets: bigint[];
  streams: Run[][];
  breaks: (ConnectError | undefined)[];
  requests: WatchRunRequest[];
  runs: Run[];
  pageTokens: string[];
}

const script: Script = { logOffsets: [], streams: [], breaks: [], requests: [], runs: [], pageTokens: [] };

function routes(router: ConnectRouter) {
  router.service(RunService, {
    async *watchRun(request) {
      const call = script.requests.length;
      script.requests.push(request);
      for (const r of script.streams[call] ?? []) {
        yield { run: r };
      }
      const broken = script.breaks[call];
      if (broken) {
        throw broken;
      }
    },
    async *watchNodeLogs(request) {
      // Lines 0-1, then UNAVAILABLE; re-attached at 2: lines 2-3 and the end.
      script.logOffsets.push(request.offset);
      const line = (offset: number) => ({ offset: BigInt(offset), text: `line ${offset}` });
      if (request.offset === 0n) {
        yield { lines: [line(0), line(1)], nextOffset: 2n };
        throw new ConnectError("server restarting", Code.Unavailable);
      }
      yield { lines: [line(2), line(3)], nextOffset: 4n };
      yield { lines: [], nextOffset: 4n, complete: true };
    },
    listRuns(request) {
      script.pageTokens.push(request.pageToken);
      const start = request.pageToken ? Number(request.pageToken) : 0;
      const end = Math.min(start + request.pageSize, script.runs.length);
      return { runs: script.runs.slice(start, end), nextPageToken: end < script.runs.length ? String(end) : "" };
    },
    getRun(request) {
      throw new ConnectError(`run ${request.name} not found`, Code.NotFound, undefined, [
        { desc: ErrorInfoSchema, value: { reason: "RUN_NOT_FOUND", domain: "raypipe.dev", metadata: { name: request.name } } },
      ]);
    },
    createRun() {
      throw new ConnectError("the run is invalid", Code.InvalidArgument, undefined, [
        { desc: ErrorInfoSchema, value: { reason: "INVALID_ARGUMENT", domain: "raypipe.dev" } },
        {
          desc: BadRequestSchema,
          value: {
            fieldViolations: [
              { field: "run.pipeline", description: "must be set" },
              { field: "run.parameters.lr", description: "is not declared" },
            ],
          },
        },
      ]);
    },
  });
}

describe("RaypipeClient against a gRPC server", () => {
  let server: http2.Http2Server;
  let address = "";

  const sessions = new Set<http2.ServerHttp2Session>();

  before(async () => {
    server = http2.createServer(connectNodeAdapter({ routes }));
    server.on("session", (session) => {
      sessions.add(session);
      session.on("close", () => sessions.delete(session));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    // Clients keep their HTTP/2 sessions open for reuse; close them so the server can stop.
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const session of sessions) {
      session.destroy();
    }
    await closed;
  });
  beforeEach(() => {
    Object.assign(script, { logOffsets: [], streams: [], breaks: [], requests: [], runs: [], pageTokens: [] });
  });

  it("waitRun reconnects after UNAVAILABLE and sees the fresh snapshot", async () => {
    script.streams = [[run(Run_State.RUNNING)], [run(Run_State.RUNNING), run(Run_State.SUCCEEDED)]];
    script.breaks = [new ConnectError("server restarting", Code.Unavailable), undefined];
    const seen: Run_State[] = [];
    const client = createRaypipeClient(address);
    const done = await client.waitRun("r-1", { onEvent: (r) => seen.push(r.run!.state) });
    assert.equal(done.state, Run_State.SUCCEEDED);
    assert.equal(script.requests.length, 2, "one reconnect");
    assert.equal(script.requests[0]!.name, "runs/r-1");
    assert.deepEqual(script.requests[0]!.eventTypes, [], "every event when onEvent is given");
    assert.deepEqual(seen, [Run_State.RUNNING, Run_State.RUNNING, Run_State.SUCCEEDED]);
  });

  it("waitRun asks for run-state changes only, and throws RunFailedError for a failed run", async () => {
    script.streams = [[run(Run_State.FAILED)], [run(Run_State.CANCELLED)]];
    const client = createRaypipeClient(address);
    await assert.rejects(client.waitRun("runs/r-1"), (e: unknown) => {
      assert.ok(e instanceof RunFailedError);
      assert.equal(e.run.state, Run_State.FAILED);
      return true;
    });
    assert.deepEqual(script.requests[0]!.eventTypes, [RunEvent_Type.RUN_STATE_CHANGED]);
    const cancelled = await client.waitRun("runs/r-1", { raiseOnFailure: false });
    assert.equal(cancelled.state, Run_State.CANCELLED);
  });

  it("waitRun stops at once on other errors, and at its timeout with the last run", async () => {
    script.streams = [[]];
    script.breaks = [new ConnectError("no such run", Code.NotFound)];
    const client = createRaypipeClient(address);
    await assert.rejects(client.waitRun("r-1"), (e: unknown) => e instanceof RaypipeError && e.code === Code.NotFound);
    assert.equal(script.requests.length, 1);

    script.requests = [];
    script.streams = Array.from({ length: 20 }, () => [run(Run_State.RUNNING)]);
    script.breaks = Array.from({ length: 20 }, () => new ConnectError("down", Code.Unavailable));
    await assert.rejects(client.waitRun("r-1", { timeoutMs: 400 }), (e: unknown) => {
      assert.ok(e instanceof WaitTimeoutError, String(e));
      assert.equal(e.run?.state, Run_State.RUNNING);
      return true;
    });
    assert.ok(script.requests.length >= 2, "it reconnected before the timeout");
  });

  it("watchRun ends with the terminal run and an abort ends it early", async () => {
    script.streams = [[run(Run_State.RUNNING), run(Run_State.SUCCEEDED)]];
    const client = createRaypipeClient(address);
    const states = (await collect(client.watchRun("r-1"))).map((r) => r.run!.state);
    assert.deepEqual(states, [Run_State.RUNNING, Run_State.SUCCEEDED]);

    script.requests = [];
    script.streams = Array.from({ length: 50 }, () => []);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    await assert.rejects(collect(client.watchRun("r-1", { signal: controller.signal })), (e: unknown) => {
      return e instanceof RaypipeError && e.code === Code.Canceled;
    });
  });

  it("followNodeLogs re-attaches from the last offset: no line missed, none twice", async () => {
    const client = createRaypipeClient(address);
    const lines = await collect(client.followNodeLogs("r-1", "train", { attempt: 1 }));
    assert.deepEqual(
      lines.map((l) => l.text),
      ["line 0", "line 1", "line 2", "line 3"],
    );
    assert.deepEqual(script.logOffsets, [0n, 2n]);
    assert.equal(await client.nodeLogName("runs/r-1", "train", 2), "runs/r-1/nodes/train/attempts/2/logs");
  });

  it("unpacks ErrorInfo and BadRequest into a RaypipeError", async () => {
    const client = createRaypipeClient(address);
    await assert.rejects(client.runs.getRun({ name: "runs/nope" }), (e: unknown) => {
      assert.ok(e instanceof RaypipeError);
      assert.equal(e.codeName, "NOT_FOUND");
      assert.equal(e.reason, "RUN_NOT_FOUND");
      assert.equal(e.domain, "raypipe.dev");
      assert.deepEqual(e.errorMetadata, { name: "runs/nope" });
      assert.equal(e.message, "NOT_FOUND (RUN_NOT_FOUND): run runs/nope not found");
      assert.ok(e.cause instanceof ConnectError);
      return true;
    });
    await assert.rejects(client.runs.createRun({}), (e: unknown) => {
      assert.ok(e instanceof RaypipeError);
      assert.equal(e.codeName, "INVALID_ARGUMENT");
      assert.deepEqual(e.fieldViolations, [
        { field: "run.pipeline", description: "must be set" },
        { field: "run.parameters.lr", description: "is not declared" },
      ]);
      return true;
    });
    await assert.rejects(client.pipelines.listNodeTypes({}), (e: unknown) => {
      return e instanceof RaypipeError && e.codeName === "UNIMPLEMENTED" && e.reason === "";
    });
  });

  it("listRuns walks every page once, fetching each only when needed", async () => {
    script.runs = Array.from({ length: 5 }, (_, i) => create(RunSchema, { name: `runs/r-${i}` }));
    const client = createRaypipeClient(address);
    const names = (await collect(client.listRuns({ pageSize: 2 }))).map((r) => r.name);
    assert.deepEqual(names, ["runs/r-0", "runs/r-1", "runs/r-2", "runs/r-3", "runs/r-4"]);
    assert.deepEqual(script.pageTokens, ["", "2", "4"]);

    script.pageTokens = [];
    for await (const first of client.listRuns({ pageSize: 2 })) {
      assert.equal(first.name, "runs/r-0");
      break;
    }
    assert.deepEqual(script.pageTokens, [""], "leaving the loop fetches no further page");

    const looping = paginate(async () => ({ items: [1], nextPageToken: "again" }));
    await assert.rejects(collect(looping), /repeated page token "again"/);
  });

  it("ready fails at once on errors other than UNAVAILABLE, and times out against no server", async () => {
    const client = createRaypipeClient(address);
    await assert.rejects(client.ready({ timeoutMs: 2000 }), (e: unknown) => {
      return e instanceof RaypipeError && e.codeName === "UNIMPLEMENTED";
    });
    const nobody = createRaypipeClient("127.0.0.1:1");
    await assert.rejects(nobody.ready({ timeoutMs: 300 }), (e: unknown) => e instanceof RaypipeError);
  });
});

describe("names", () => {
  it("builds and parses resource names", () => {
    assert.equal(pipelineName("churn"), "pipelines/churn");
    assert.equal(pipelineName("pipelines/churn"), "pipelines/churn");
    assert.equal(versionName("churn", 3), "pipelines/churn/versions/3");
    assert.equal(versionName("churn", 3n), "pipelines/churn/versions/3");
    assert.equal(runName("r-1"), "runs/r-1");
    assert.equal(runName(run(Run_State.RUNNING)), "runs/r-1");
    assert.equal(scheduleName("nightly"), "schedules/nightly");
    assert.equal(resourceId("pipelines/churn/versions/3"), "3");
    assert.deepEqual(parseVersionName("pipelines/churn/versions/12"), { pipeline: "pipelines/churn", versionNumber: 12 });
    for (const bad of ["pipelines/churn", "pipelines/churn/versions/0", "runs/r/versions/1", "pipelines//versions/1"]) {
      assert.throws(() => parseVersionName(bad), TypeError, bad);
    }
  });

  it("turns an address into a base URL", () => {
    assert.equal(baseUrl("localhost:50051"), "http://localhost:50051");
    assert.equal(baseUrl("https://raypipe.example.com/"), "https://raypipe.example.com");
  });
});
