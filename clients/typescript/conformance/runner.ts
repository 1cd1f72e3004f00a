// The conformance scenario (tests/conformance/scenario.json) through @raypipe/client on Node.
//
//   RAYPIPE_ADDRESS=localhost:50051 node build/conformance/runner.js [scenario.json]
//   RAYPIPE_TRANSPORT=web RAYPIPE_ADDRESS=http://localhost:8280 node build/conformance/runner.js
//
// The second form runs the scenario through the browser entry point (@raypipe/client/web:
// the Connect protocol over fetch) against the server's HTTP port.
//
// One line per step ("ok <id>" or "FAIL <id>: <why>"), then "<N> passed, <M> failed"; exits 0
// only when every step passed. The Python and Go runners do the same steps through theirs.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  HealthCheckResponse_ServingStatus,
  NodeExecution_State,
  PipelineSpecSchema,
  RaypipeError,
  RunEvent_Type,
  Run_State,
  collect,
  createRaypipeClient,
  type PipelineSpec,
  type RaypipeClient,
  type Run,
  type WatchRunResponse,
} from "@raypipe/client/node";
import { createRaypipeClient as createWebClient } from "@raypipe/client/web";

type Step = Record<string, any> & { id: string; action: string; expect: Record<string, any> };
interface Scenario {
  specs: Record<string, JsonValue>;
  steps: Step[];
}

class StepFailed extends Error {}

function check(condition: boolean, why: string): asserts condition {
  if (!condition) {
    throw new StepFailed(why);
  }
}

function substitute<T>(value: T, prefix: string): T {
  return JSON.parse(JSON.stringify(value).replaceAll("{prefix}", prefix)) as T;
}

const runState = (state: Run_State) => `STATE_${Run_State[state]}`;
const nodeState = (state: NodeExecution_State) => `STATE_${NodeExecution_State[state]}`;
const eventType = (type: RunEvent_Type) => `TYPE_${RunEvent_Type[type]}`;

/** The call fails with the expected code, ErrorInfo and field violations. */
async function expectError(call: () => Promise<unknown>, expect: Record<string, any>): Promise<RaypipeError> {
  let error: RaypipeError;
  try {
    await call();
    throw new StepFailed(`succeeded; expected ${expect.code}`);
  } catch (e) {
    if (e instanceof StepFailed) {
      throw e;
    }
    check(e instanceof RaypipeError, `not a RaypipeError: ${String(e)}`);
    error = e;
  }
  check(error.codeName === expect.code, `code ${error.codeName}, expected ${expect.code}`);
  check(error.reason === expect.reason, `reason ${error.reason}, expected ${expect.reason}`);
  if (expect.domain !== undefined) {
    check(error.domain === expect.domain, `domain ${error.domain}`);
  }
  for (const [key, value] of Object.entries(expect.metadata ?? {})) {
    check(error.errorMetadata[key] === value, `metadata ${JSON.stringify(error.errorMetadata)}: ${key} is not ${value}`);
  }
  if (expect.field_violations !== undefined) {
    const paths = error.fieldViolations.map((v) => v.field).sort();
    check(
      JSON.stringify(paths) === JSON.stringify([...expect.field_violations].sort()),
      `field violations at ${JSON.stringify(paths)}`,
    );
  }
  return error;
}

/** (node, state) in the order the stream showed them: the snapshot's, then each event's. */
function nodeStates(responses: WatchRunResponse[]): [string, string][] {
  const order: [string, string][] = [];
  for (const response of responses) {
    const event = response.event;
    if (event?.type === RunEvent_Type.SNAPSHOT) {
      for (const node of response.run?.nodes ?? []) {
        order.push([node.nodeId, nodeState(node.state)]);
      }
    } else if (event?.type === RunEvent_Type.NODE_STATE_CHANGED) {
      order.push([event.nodeId, nodeState(event.nodeState)]);
    }
  }
  return order;
}

const nanos = (run: Run) => (run.createTime ? timestampDate(run.createTime).getTime() * 1e6 + (run.createTime.nanos % 1e6) : 0);

class Runner {
  private readonly specs: Record<string, PipelineSpec>;
  private readonly runs = new Map<string, Run>();

  constructor(
    private readonly client: RaypipeClient,
    scenario: Scenario,
  ) {
    this.specs = Object.fromEntries(
      Object.entries(scenario.specs).map(([name, spec]) => [name, fromJson(PipelineSpecSchema, spec)]),
    );
  }

  async health(step: Step) {
    const response = await this.client.health.check({});
    const status = HealthCheckResponse_ServingStatus[response.status];
    check(status === step.expect.status, `status ${status}`);
  }

  async list_node_types(step: Step) {
    const types = new Set((await this.client.pipelines.listNodeTypes({})).nodeTypes.map((t) => t.type));
    const missing = (step.expect.includes as string[]).filter((t) => !types.has(t));
    check(missing.length === 0, `missing types ${missing.join(", ")}`);
  }

  async create_pipeline(step: Step) {
    const { pipeline } = await this.client.pipelines.createPipeline({ pipelineId: step.pipeline_id, pipeline: {} });
    check(pipeline?.name === step.expect.name, `name ${pipeline?.name}`);
  }

  async create_version(step: Step) {
    const expect = step.expect;
    const spec = this.specs[step.spec];
    const create = () =>
      this.client.pipelines.createPipelineVersion({ parent: step.pipeline, pipelineVersion: { spec } });
    if (expect.code !== undefined) {
      await expectError(create, expect);
      const versions = await collect(this.client.listPipelineVersions({ parent: step.pipeline }));
      check(versions.length === expect.versions_after, `${versions.length} versions after`);
      return;
    }
    const version = (await create()).pipelineVersion;
    check(version !== undefined, "no version in the response");
    check(version.name === expect.name, `name ${version?.name}`);
    check(Number(version.versionNumber) === expect.version_number, `number ${version.versionNumber}`);
    const { pipeline } = await this.client.pipelines.getPipeline({ name: step.pipeline });
    check(pipeline?.defaultVersion === expect.default_version, `default ${pipeline?.defaultVersion}`);
  }

  async create_run_twice(step: Step) {
    const request = { run: { pipeline: step.pipeline }, requestId: step.request_id };
    const first = (await this.client.runs.createRun(request)).run;
    const again = (await this.client.runs.createRun(request)).run;
    check(first !== undefined && first.name === again?.name, `two runs: ${first?.name} and ${again?.name}`);
    check(first.pipelineVersion === step.expect.pipeline_version, first.pipelineVersion);
    this.runs.set(step.id, first);
  }

  async watch_run(step: Step) {
    const expect = step.expect;
    const run = this.runs.get(step.run);
    check(run !== undefined, `no run from step ${step.run}`);
    const responses = await collect(this.client.runs.watchRun({ name: run.name }, { timeoutMs: 120_000 }));
    check(responses.length > 0, "no message");
    const first = eventType(responses[0]!.event!.type);
    check(first === expect.first_event, `first event ${first}`);
    const order = nodeStates(responses);
    for (const node of expect.nodes as string[]) {
      const states = order.filter(([n]) => n === node).map(([, s]) => s);
      const succeeded = states.indexOf("STATE_SUCCEEDED");
      check(succeeded >= 0, `${node} never SUCCEEDED: ${states}`);
      check(states.slice(0, succeeded).includes("STATE_RUNNING"), `${node} was not seen RUNNING before SUCCEEDED: ${states}`);
    }
    const final = runState(responses.at(-1)!.run!.state);
    check(final === expect.final_state, `the stream ended with the run ${final}`);
  }

  async node_logs(step: Step) {
    const expect = step.expect;
    const run = this.runs.get(step.run);
    check(run !== undefined, `no run from step ${step.run}`);
    const name = (attempt: number) => `${run.name}/nodes/${step.node}/attempts/${attempt}/logs`;
    const page = await this.client.runs.getNodeLogs({ name: name(1) });
    check(page.lines.length === expect.lines, `${page.lines.length} lines`);
    check(page.complete === expect.complete, `complete ${page.complete}`);
    await expectError(() => this.client.runs.getNodeLogs({ name: name(expect.missing_attempt) }), expect);
  }

  async list_runs_pages(step: Step) {
    const expect = step.expect;
    const created: Run[] = [];
    for (let i = 0; i < step.create_runs; i++) {
      created.push((await this.client.runs.createRun({ run: { pipeline: step.pipeline } })).run!);
    }
    const pages: Run[][] = [];
    let pageToken = "";
    do {
      const page = await this.client.runs.listRuns({ pipeline: step.pipeline, pageSize: step.page_size, pageToken });
      pages.push(page.runs);
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    const sizes = pages.map((p) => p.length);
    check(JSON.stringify(sizes) === JSON.stringify(expect.page_sizes), `page sizes ${JSON.stringify(sizes)}`);
    const runs = pages.flat();
    const names = runs.map((r) => r.name);
    check(new Set(names).size === names.length && names.length === expect.total, `runs ${names}`);
    const mine = new Set([...created.map((r) => r.name), this.runs.get("idempotent_run")!.name]);
    check(names.every((n) => mine.has(n)) && mine.size === names.length, `listed ${names}, created ${[...mine]}`);
    const times = runs.map(nanos);
    check(times.every((t, i) => i === 0 || times[i - 1]! >= t), "not newest first");
    const iterated = (await collect(this.client.listRuns({ pipeline: step.pipeline, pageSize: step.page_size }))).map((r) => r.name);
    check(JSON.stringify(iterated) === JSON.stringify(names), `listRuns iterated ${iterated}`);
    for (const run of created) {
      const done = await this.client.waitRun(run, { timeoutMs: 120_000, raiseOnFailure: false });
      check(runState(done.state) === expect.final_state, `${run.name} ended ${runState(done.state)}`);
    }
  }

  async get_run(step: Step) {
    await expectError(() => this.client.runs.getRun({ name: step.name }), step.expect);
  }

  async cancel_run(step: Step) {
    const expect = step.expect;
    const { pipelineVersion: version } = await this.client.pipelines.createPipelineVersion({
      parent: step.pipeline,
      pipelineVersion: { spec: this.specs[step.spec] },
      keepDefaultVersion: true,
    });
    check(version !== undefined, "no version in the response");
    check(version.name === expect.version, `version ${version.name}`);
    const { pipeline } = await this.client.pipelines.getPipeline({ name: step.pipeline });
    check(pipeline?.defaultVersion === expect.default_version, `the default moved to ${pipeline?.defaultVersion}`);
    const run = (await this.client.runs.createRun({ run: { pipelineVersion: version.name } })).run!;
    for await (const response of this.client.watchRun(run)) {
      const running =
        response.run?.nodes.some((n) => n.state === NodeExecution_State.RUNNING) ||
        response.event?.nodeState === NodeExecution_State.RUNNING;
      if (running) {
        break;
      }
    }
    await this.client.runs.cancelRun({ name: run.name });
    const done = await this.client.waitRun(run, { timeoutMs: 120_000, raiseOnFailure: false });
    check(runState(done.state) === expect.final_state, `ended ${runState(done.state)}`);
  }

  async schedule_trigger(step: Step) {
    const expect = step.expect;
    const { schedule } = await this.client.schedules.createSchedule({
      scheduleId: step.schedule_id,
      schedule: { pipeline: step.pipeline, trigger: { case: "cron", value: { expression: step.cron } }, paused: true },
    });
    check(schedule !== undefined, "no schedule in the response");
    check(schedule.paused === expect.paused, `paused ${schedule.paused}`);
    const { run } = await this.client.schedules.triggerSchedule({ name: schedule.name });
    check(run !== undefined, "no run in the response");
    check(run.schedule === expect.schedule, `the run names ${run.schedule}`);
    const runs = await collect(this.client.listRuns({ schedule: schedule.name }));
    check(runs.length === expect.runs, `${runs.length} runs of the schedule`);
    const done = await this.client.waitRun(run, { timeoutMs: 120_000, raiseOnFailure: false });
    check(runState(done.state) === expect.final_state, `ended ${runState(done.state)}`);
  }

  async delete_pipeline(step: Step) {
    await expectError(() => this.client.pipelines.deletePipeline({ name: step.name }), step.expect);
    await this.client.pipelines.getPipeline({ name: step.name }); // still there
  }

  async clean_up(step: Step) {
    await this.client.schedules.deleteSchedule({ name: step.schedule });
    await this.client.pipelines.deletePipeline({ name: step.pipeline });
    await expectError(() => this.client.pipelines.getPipeline({ name: step.pipeline }), step.expect);
  }
}

async function main(): Promise<number> {
  const path = process.argv[2] ?? new URL("../../../../tests/conformance/scenario.json", import.meta.url);
  const scenario = JSON.parse(readFileSync(path, "utf8")) as Scenario;
  const prefix = `conf-${process.env.RAYPIPE_TRANSPORT === "web" ? "web" : "ts"}-${randomBytes(3).toString("hex")}`;
  const client =
    process.env.RAYPIPE_TRANSPORT === "web"
      ? createWebClient(process.env.RAYPIPE_ADDRESS ?? "http://localhost:8280", {
          token: process.env.RAYPIPE_TOKEN ?? "",
        })
      : createRaypipeClient();
  const runner = new Runner(client, scenario) as unknown as Record<string, (step: Step) => Promise<void>>;
  let passed = 0;
  let failed = 0;
  for (const raw of scenario.steps) {
    const step = substitute(raw, prefix);
    try {
      const action = runner[step.action];
      check(typeof action === "function", `no action ${step.action}`);
      await action.call(runner, step);
      passed++;
      console.log(`ok ${step.id}`);
    } catch (e) {
      failed++;
      const why = e instanceof Error ? e.message : String(e);
      console.log(`FAIL ${step.id}: ${why.split("\n")[0]}`);
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

process.exit(await main());
