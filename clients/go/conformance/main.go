// Command conformance runs raypipe's client conformance scenario
// (tests/conformance/scenario.json) through the Go client against a running server:
//
//	RAYPIPE_ADDRESS=localhost:50051 go run ./conformance [scenario.json]
//
// One line per step ("ok <id>" or "FAIL <id>: <why>"), then "<N> passed, <M> failed"; it exits
// 0 only when every step passed. The Python and TypeScript runners do the same steps.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	raypipev1 "github.com/raypipe/raypipe/clients/go/gen/raypipe/v1"
	"github.com/raypipe/raypipe/clients/go/raypipe"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"
)

type step map[string]any

func (s step) str(key string) string { v, _ := s[key].(string); return v }
func (s step) num(key string) int    { v, _ := s[key].(float64); return int(v) }
func (s step) expect() step          { v, _ := s["expect"].(map[string]any); return v }

type scenario struct {
	Specs map[string]json.RawMessage `json:"specs"`
	Steps []json.RawMessage          `json:"steps"`
}

type stepFailed struct{ why string }

func (e stepFailed) Error() string { return e.why }

func check(condition bool, format string, args ...any) {
	if !condition {
		panic(stepFailed{fmt.Sprintf(format, args...)})
	}
}

func must[T any](value T, err error) T {
	if err != nil {
		panic(stepFailed{raypipe.FromError(err).Error()})
	}
	return value
}

// expectError checks that err is the expected code, ErrorInfo and field violations.
func expectError(err error, expect step) {
	check(err != nil, "succeeded; expected %s", expect.str("code"))
	e := raypipe.FromError(err)
	check(raypipe.CodeName(e.Code) == expect.str("code"), "code %s, expected %s", raypipe.CodeName(e.Code), expect.str("code"))
	check(e.Reason == expect.str("reason"), "reason %q, expected %q", e.Reason, expect.str("reason"))
	if domain, ok := expect["domain"].(string); ok {
		check(e.Domain == domain, "domain %q", e.Domain)
	}
	if metadata, ok := expect["metadata"].(map[string]any); ok {
		for key, value := range metadata {
			check(e.Metadata[key] == value, "metadata %v: %s is not %v", e.Metadata, key, value)
		}
	}
	if violations, ok := expect["field_violations"].([]any); ok {
		var want, got []string
		for _, v := range violations {
			want = append(want, v.(string))
		}
		for _, v := range e.FieldViolations {
			got = append(got, v.Field)
		}
		sort.Strings(want)
		sort.Strings(got)
		check(reflect.DeepEqual(want, got), "field violations at %v", got)
	}
}

type runner struct {
	ctx    context.Context
	client *raypipe.Client
	specs  map[string]*raypipev1.PipelineSpec
	runs   map[string]*raypipev1.Run
}

func runState(s raypipev1.Run_State) string { return raypipev1.Run_State_name[int32(s)] }

func (r *runner) health(s step) {
	response := must(r.client.Health.Check(r.ctx, &healthpb.HealthCheckRequest{}))
	check(response.GetStatus().String() == s.expect().str("status"), "status %s", response.GetStatus())
}

func (r *runner) listNodeTypes(s step) {
	types := map[string]bool{}
	for _, t := range must(r.client.Pipelines.ListNodeTypes(r.ctx, &raypipev1.ListNodeTypesRequest{})).GetNodeTypes() {
		types[t.GetType()] = true
	}
	for _, want := range s.expect()["includes"].([]any) {
		check(types[want.(string)], "missing type %s", want)
	}
}

func (r *runner) createPipeline(s step) {
	p := must(r.client.Pipelines.CreatePipeline(r.ctx, &raypipev1.CreatePipelineRequest{
		PipelineId: s.str("pipeline_id"), Pipeline: &raypipev1.Pipeline{},
	})).GetPipeline()
	check(p.GetName() == s.expect().str("name"), "name %s", p.GetName())
}

func (r *runner) createVersion(s step) {
	expect := s.expect()
	response, err := r.client.Pipelines.CreatePipelineVersion(r.ctx, &raypipev1.CreatePipelineVersionRequest{
		Parent: s.str("pipeline"), PipelineVersion: &raypipev1.PipelineVersion{Spec: r.specs[s.str("spec")]},
	})
	if _, refused := expect["code"]; refused {
		expectError(err, expect)
		versions := must(r.client.ListPipelineVersions(r.ctx, &raypipev1.ListPipelineVersionsRequest{Parent: s.str("pipeline")}).All())
		check(len(versions) == expect.num("versions_after"), "%d versions after", len(versions))
		return
	}
	version := must(response, err).GetPipelineVersion()
	check(version.GetName() == expect.str("name"), "name %s", version.GetName())
	check(int(version.GetVersionNumber()) == expect.num("version_number"), "number %d", version.GetVersionNumber())
	p := must(r.client.Pipelines.GetPipeline(r.ctx, &raypipev1.GetPipelineRequest{Name: s.str("pipeline")})).GetPipeline()
	check(p.GetDefaultVersion() == expect.str("default_version"), "default %s", p.GetDefaultVersion())
}

func (r *runner) createRunTwice(s step) {
	request := &raypipev1.CreateRunRequest{Run: &raypipev1.Run{Pipeline: s.str("pipeline")}, RequestId: s.str("request_id")}
	first := must(r.client.Runs.CreateRun(r.ctx, request)).GetRun()
	again := must(r.client.Runs.CreateRun(r.ctx, request)).GetRun()
	check(first.GetName() == again.GetName(), "two runs: %s and %s", first.GetName(), again.GetName())
	check(first.GetPipelineVersion() == s.expect().str("pipeline_version"), "version %s", first.GetPipelineVersion())
	r.runs[s.str("id")] = first
}

func (r *runner) watchRun(s step) {
	expect := s.expect()
	ctx, cancel := context.WithTimeout(r.ctx, 2*time.Minute)
	defer cancel()
	stream := must(r.client.Runs.WatchRun(ctx, &raypipev1.WatchRunRequest{Name: r.runs[s.str("run")].GetName()}))
	var responses []*raypipev1.WatchRunResponse
	for {
		response, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		must(response, err)
		responses = append(responses, response)
	}
	check(len(responses) > 0, "no message")
	first := responses[0].GetEvent().GetType().String()
	check(first == expect.str("first_event"), "first event %s", first)
	order := nodeStates(responses)
	for _, node := range expect["nodes"].([]any) {
		var states []string
		for _, seen := range order {
			if seen[0] == node {
				states = append(states, seen[1])
			}
		}
		succeeded := indexOf(states, "STATE_SUCCEEDED")
		check(succeeded >= 0, "%s never SUCCEEDED: %v", node, states)
		check(indexOf(states[:succeeded], "STATE_RUNNING") >= 0, "%s was not seen RUNNING before SUCCEEDED: %v", node, states)
	}
	final := runState(responses[len(responses)-1].GetRun().GetState())
	check(final == expect.str("final_state"), "the stream ended with the run %s", final)
}

func (r *runner) nodeLogs(s step) {
	expect := s.expect()
	run := r.runs[s.str("run")].GetName()
	page := must(r.client.Runs.GetNodeLogs(r.ctx, &raypipev1.GetNodeLogsRequest{Name: raypipe.NodeLogName(run, s.str("node"), 1)}))
	check(len(page.GetLines()) == expect.num("lines"), "%d lines", len(page.GetLines()))
	check(page.GetComplete() == expect["complete"].(bool), "complete %v", page.GetComplete())
	_, err := r.client.Runs.GetNodeLogs(r.ctx, &raypipev1.GetNodeLogsRequest{
		Name: raypipe.NodeLogName(run, s.str("node"), expect.num("missing_attempt")),
	})
	expectError(err, expect)
}

func (r *runner) listRunsPages(s step) {
	expect := s.expect()
	var created []*raypipev1.Run
	for i := 0; i < s.num("create_runs"); i++ {
		created = append(created, must(r.client.Runs.CreateRun(r.ctx, &raypipev1.CreateRunRequest{
			Run: &raypipev1.Run{Pipeline: s.str("pipeline")},
		})).GetRun())
	}
	var sizes []int
	var runs []*raypipev1.Run
	token := ""
	for {
		page := must(r.client.Runs.ListRuns(r.ctx, &raypipev1.ListRunsRequest{
			Pipeline: s.str("pipeline"), PageSize: int32(s.num("page_size")), PageToken: token,
		}))
		sizes = append(sizes, len(page.GetRuns()))
		runs = append(runs, page.GetRuns()...)
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	var want []int
	for _, n := range expect["page_sizes"].([]any) {
		want = append(want, int(n.(float64)))
	}
	check(reflect.DeepEqual(sizes, want), "page sizes %v", sizes)
	mine := map[string]bool{r.runs["idempotent_run"].GetName(): true}
	for _, run := range created {
		mine[run.GetName()] = true
	}
	seen := map[string]bool{}
	for i, run := range runs {
		check(mine[run.GetName()] && !seen[run.GetName()], "listed %s twice or not created here", run.GetName())
		seen[run.GetName()] = true
		if i > 0 {
			check(!run.GetCreateTime().AsTime().After(runs[i-1].GetCreateTime().AsTime()), "not newest first")
		}
	}
	check(len(runs) == expect.num("total") && len(seen) == len(mine), "%d runs listed", len(runs))
	iterated := must(r.client.ListRuns(r.ctx, &raypipev1.ListRunsRequest{Pipeline: s.str("pipeline"), PageSize: int32(s.num("page_size"))}).All())
	check(len(iterated) == len(runs), "the pager gave %d runs", len(iterated))
	for _, run := range created {
		ctx, cancel := context.WithTimeout(r.ctx, 2*time.Minute)
		done, err := r.client.WaitRun(ctx, run.GetName(), raypipe.AcceptFailure())
		cancel()
		must(done, err)
		check(runState(done.GetState()) == expect.str("final_state"), "%s ended %s", run.GetName(), done.GetState())
	}
}

func (r *runner) getRun(s step) {
	_, err := r.client.Runs.GetRun(r.ctx, &raypipev1.GetRunRequest{Name: s.str("name")})
	expectError(err, s.expect())
}

func (r *runner) cancelRun(s step) {
	expect := s.expect()
	version := must(r.client.Pipelines.CreatePipelineVersion(r.ctx, &raypipev1.CreatePipelineVersionRequest{
		Parent:             s.str("pipeline"),
		PipelineVersion:    &raypipev1.PipelineVersion{Spec: r.specs[s.str("spec")]},
		KeepDefaultVersion: true,
	})).GetPipelineVersion()
	check(version.GetName() == expect.str("version"), "version %s", version.GetName())
	p := must(r.client.Pipelines.GetPipeline(r.ctx, &raypipev1.GetPipelineRequest{Name: s.str("pipeline")})).GetPipeline()
	check(p.GetDefaultVersion() == expect.str("default_version"), "the default moved to %s", p.GetDefaultVersion())
	run := must(r.client.Runs.CreateRun(r.ctx, &raypipev1.CreateRunRequest{Run: &raypipev1.Run{PipelineVersion: version.GetName()}})).GetRun()
	r.untilNodeRunning(run.GetName())
	must(r.client.Runs.CancelRun(r.ctx, &raypipev1.CancelRunRequest{Name: run.GetName()}))
	ctx, cancel := context.WithTimeout(r.ctx, 2*time.Minute)
	defer cancel()
	done := must(r.client.WaitRun(ctx, run.GetName(), raypipe.AcceptFailure()))
	check(runState(done.GetState()) == expect.str("final_state"), "ended %s", done.GetState())
}

// untilNodeRunning follows a run until one of its nodes is RUNNING.
func (r *runner) untilNodeRunning(run string) {
	ctx, cancel := context.WithTimeout(r.ctx, 2*time.Minute)
	defer cancel() // closes the stream
	stream := must(r.client.Runs.WatchRun(ctx, &raypipev1.WatchRunRequest{Name: run}))
	for {
		response := must(stream.Recv())
		if response.GetEvent().GetNodeState() == raypipev1.NodeExecution_STATE_RUNNING {
			return
		}
		for _, node := range response.GetRun().GetNodes() {
			if node.GetState() == raypipev1.NodeExecution_STATE_RUNNING {
				return
			}
		}
		check(!raypipe.IsTerminal(response.GetRun().GetState()),
			"the run ended %s before a node was seen RUNNING", response.GetRun().GetState())
	}
}

func (r *runner) scheduleTrigger(s step) {
	expect := s.expect()
	schedule := must(r.client.Schedules.CreateSchedule(r.ctx, &raypipev1.CreateScheduleRequest{
		ScheduleId: s.str("schedule_id"),
		Schedule: &raypipev1.Schedule{
			Pipeline: s.str("pipeline"),
			Trigger:  &raypipev1.Schedule_Cron{Cron: &raypipev1.CronTrigger{Expression: s.str("cron")}},
			Paused:   true,
		},
	})).GetSchedule()
	check(schedule.GetPaused() == expect["paused"].(bool), "paused %v", schedule.GetPaused())
	run := must(r.client.Schedules.TriggerSchedule(r.ctx, &raypipev1.TriggerScheduleRequest{Name: schedule.GetName()})).GetRun()
	check(run.GetSchedule() == expect.str("schedule"), "the run names %q", run.GetSchedule())
	runs := must(r.client.ListRuns(r.ctx, &raypipev1.ListRunsRequest{Schedule: schedule.GetName()}).All())
	check(len(runs) == expect.num("runs"), "%d runs of the schedule", len(runs))
	ctx, cancel := context.WithTimeout(r.ctx, 2*time.Minute)
	defer cancel()
	done := must(r.client.WaitRun(ctx, run.GetName(), raypipe.AcceptFailure()))
	check(runState(done.GetState()) == expect.str("final_state"), "ended %s", done.GetState())
}

func (r *runner) deletePipeline(s step) {
	_, err := r.client.Pipelines.DeletePipeline(r.ctx, &raypipev1.DeletePipelineRequest{Name: s.str("name")})
	expectError(err, s.expect())
	must(r.client.Pipelines.GetPipeline(r.ctx, &raypipev1.GetPipelineRequest{Name: s.str("name")})) // still there
}

func (r *runner) cleanUp(s step) {
	must(r.client.Schedules.DeleteSchedule(r.ctx, &raypipev1.DeleteScheduleRequest{Name: s.str("schedule")}))
	must(r.client.Pipelines.DeletePipeline(r.ctx, &raypipev1.DeletePipelineRequest{Name: s.str("pipeline")}))
	_, err := r.client.Pipelines.GetPipeline(r.ctx, &raypipev1.GetPipelineRequest{Name: s.str("pipeline")})
	expectError(err, s.expect())
}

func nodeStates(responses []*raypipev1.WatchRunResponse) [][2]string {
	var order [][2]string
	for _, response := range responses {
		event := response.GetEvent()
		switch event.GetType() {
		case raypipev1.RunEvent_TYPE_SNAPSHOT:
			for _, node := range response.GetRun().GetNodes() {
				order = append(order, [2]string{node.GetNodeId(), node.GetState().String()})
			}
		case raypipev1.RunEvent_TYPE_NODE_STATE_CHANGED:
			order = append(order, [2]string{event.GetNodeId(), event.GetNodeState().String()})
		}
	}
	return order
}

func indexOf(values []string, value string) int {
	for i, v := range values {
		if v == value {
			return i
		}
	}
	return -1
}

// run runs one step, turning a failed check or call into its error.
func run(action func(step), s step) (err error) {
	defer func() {
		if recovered := recover(); recovered != nil {
			failed, ok := recovered.(stepFailed)
			if !ok {
				panic(recovered)
			}
			err = failed
		}
	}()
	action(s)
	return nil
}

// scenarioPath is the argument, or tests/conformance/scenario.json in this directory or the
// nearest one above it.
func scenarioPath() (string, error) {
	if len(os.Args) > 1 {
		return os.Args[1], nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		path := filepath.Join(dir, "tests", "conformance", "scenario.json")
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("tests/conformance/scenario.json not found here or above; pass its path")
		}
		dir = parent
	}
}

func main() {
	path, err := scenarioPath()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	buf := make([]byte, 3)
	if _, err := rand.Read(buf); err != nil {
		panic(err)
	}
	prefix := "conf-go-" + hex.EncodeToString(buf)
	var sc scenario
	if err := json.Unmarshal([]byte(strings.ReplaceAll(string(data), "{prefix}", prefix)), &sc); err != nil {
		fmt.Fprintln(os.Stderr, "bad scenario:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	client, err := raypipe.Dial(ctx, raypipe.AddressFromEnv())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer client.Close()
	r := &runner{ctx: ctx, client: client, specs: map[string]*raypipev1.PipelineSpec{}, runs: map[string]*raypipev1.Run{}}
	for name, raw := range sc.Specs {
		spec := &raypipev1.PipelineSpec{}
		if err := protojson.Unmarshal(raw, spec); err != nil {
			fmt.Fprintf(os.Stderr, "bad spec %s: %v\n", name, err)
			os.Exit(2)
		}
		r.specs[name] = spec
	}
	actions := map[string]func(step){
		"health":           r.health,
		"list_node_types":  r.listNodeTypes,
		"create_pipeline":  r.createPipeline,
		"create_version":   r.createVersion,
		"create_run_twice": r.createRunTwice,
		"watch_run":        r.watchRun,
		"node_logs":        r.nodeLogs,
		"list_runs_pages":  r.listRunsPages,
		"get_run":          r.getRun,
		"cancel_run":       r.cancelRun,
		"schedule_trigger": r.scheduleTrigger,
		"delete_pipeline":  r.deletePipeline,
		"clean_up":         r.cleanUp,
	}
	passed, failed := 0, 0
	for _, raw := range sc.Steps {
		var s step
		if err := json.Unmarshal(raw, &s); err != nil {
			fmt.Fprintln(os.Stderr, "bad step:", err)
			os.Exit(2)
		}
		action, ok := actions[s.str("action")]
		if !ok {
			action = func(step) { check(false, "no action %s", s.str("action")) }
		}
		if err := run(action, s); err != nil {
			failed++
			fmt.Printf("FAIL %s: %s\n", s.str("id"), strings.SplitN(err.Error(), "\n", 2)[0])
		} else {
			passed++
			fmt.Printf("ok %s\n", s.str("id"))
		}
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}
