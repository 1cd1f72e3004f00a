// Applies a four-node diamond of noop nodes to the raypipe server at $RAYPIPE_ADDRESS (default
// localhost:50051), runs it, prints its events as they stream and its final state, and exits 0
// when the run SUCCEEDED.
//
//   npm run build && RAYPIPE_ADDRESS=localhost:50051 node build/examples/quickstart.js
import {
  NodeExecution_State,
  RaypipeError,
  RunEvent_Type,
  RunFailedError,
  Run_State,
  createRaypipeClient,
  type PipelineSpecInit,
} from "@raypipe/client/node";

// extract feeds left and right, which join waits for.
const noop = (id: string, sleepSeconds: number, dependsOn: string[] = []) => ({
  id,
  type: "noop",
  params: { sleep_seconds: sleepSeconds },
  dependsOn,
});
const diamond: PipelineSpecInit = {
  nodes: [noop("extract", 0.2), noop("left", 0.1, ["extract"]), noop("right", 0.1, ["extract"]), noop("join", 0.1, ["left", "right"])],
};

const client = createRaypipeClient(); // gRPC to $RAYPIPE_ADDRESS

try {
  const applied = await client.apply("quickstart-ts", diamond);
  console.log(`applied ${applied.pipeline.name}: ${applied.version.name} (${applied.versionCreated ? "new" : "unchanged"})`);

  const { run } = await client.runs.createRun({ run: { pipeline: applied.pipeline.name } });
  console.log(`started ${run!.name}`);

  const done = await client.waitRun(run!, {
    onEvent: ({ event, run: current }) => {
      if (event?.type === RunEvent_Type.SNAPSHOT) {
        console.log(`  snapshot: run STATE_${Run_State[current!.state]}`);
      } else if (event?.type === RunEvent_Type.NODE_STATE_CHANGED) {
        console.log(`  ${event.nodeId.padEnd(8)} STATE_${NodeExecution_State[event.nodeState]}`);
      } else if (event?.type === RunEvent_Type.RUN_STATE_CHANGED) {
        console.log(`  run      STATE_${Run_State[event.runState]}`);
      }
    },
  });
  console.log(`${done.name} STATE_${Run_State[done.state]}`);
  process.exit(0);
} catch (error) {
  if (error instanceof RunFailedError) {
    console.log(`${error.run.name} STATE_${Run_State[error.run.state]}`);
  } else if (error instanceof RaypipeError) {
    // The code, the ErrorInfo reason and one field violation per problem.
    console.error(`quickstart: ${error.message}`);
  } else {
    console.error("quickstart:", error);
  }
  process.exit(1);
}
