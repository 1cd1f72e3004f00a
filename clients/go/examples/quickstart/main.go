// Command quickstart applies a four-node diamond of noop nodes to the raypipe server at
// $RAYPIPE_ADDRESS (default localhost:50051), runs it, prints its events as they stream and
// its final state, and exits 0 when the run SUCCEEDED:
//
//	RAYPIPE_ADDRESS=localhost:50051 go run ./examples/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	raypipev1 "github.com/raypipe/raypipe/clients/go/gen/raypipe/v1"
	"github.com/raypipe/raypipe/clients/go/raypipe"
	"google.golang.org/protobuf/types/known/structpb"
)

// diamond: extract feeds left and right, which join waits for.
func diamond() *raypipev1.PipelineSpec {
	node := func(id string, sleep float64, dependsOn ...string) *raypipev1.Node {
		params, _ := structpb.NewStruct(map[string]any{"sleep_seconds": sleep})
		return &raypipev1.Node{Id: id, Type: "noop", Params: params, DependsOn: dependsOn}
	}
	return &raypipev1.PipelineSpec{Nodes: []*raypipev1.Node{
		node("extract", 0.2),
		node("left", 0.1, "extract"),
		node("right", 0.1, "extract"),
		node("join", 0.1, "left", "right"),
	}}
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client, err := raypipe.Dial(ctx, raypipe.AddressFromEnv())
	if err != nil {
		fail(err)
	}
	defer client.Close()

	applied, err := client.Apply(ctx, "quickstart-go", diamond())
	if err != nil {
		fail(err) // an *raypipe.Error: code, reason and one field violation per problem
	}
	change := "unchanged"
	if applied.VersionCreated {
		change = "new"
	}
	fmt.Printf("applied %s: %s (%s)\n", applied.Pipeline.GetName(), applied.Version.GetName(), change)

	created, err := client.Runs.CreateRun(ctx, &raypipev1.CreateRunRequest{
		Run: &raypipev1.Run{Pipeline: applied.Pipeline.GetName()},
	})
	if err != nil {
		fail(err)
	}
	run := created.GetRun()
	fmt.Printf("started %s\n", run.GetName())

	done, err := client.WaitRun(ctx, run.GetName(), raypipe.OnEvent(func(r *raypipev1.WatchRunResponse) {
		event := r.GetEvent()
		switch event.GetType() {
		case raypipev1.RunEvent_TYPE_SNAPSHOT:
			fmt.Printf("  snapshot: run %s\n", r.GetRun().GetState())
		case raypipev1.RunEvent_TYPE_NODE_STATE_CHANGED:
			fmt.Printf("  %-8s %s\n", event.GetNodeId(), event.GetNodeState())
		case raypipev1.RunEvent_TYPE_RUN_STATE_CHANGED:
			fmt.Printf("  run      %s\n", event.GetRunState())
		}
	}))
	var failed *raypipe.RunFailedError
	if errors.As(err, &failed) {
		fmt.Printf("%s %s\n", done.GetName(), done.GetState())
		os.Exit(1)
	}
	if err != nil {
		fail(err)
	}
	fmt.Printf("%s %s\n", done.GetName(), done.GetState())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "quickstart:", err)
	os.Exit(1)
}
