package raypipe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	raypipev1 "github.com/raypipe/raypipe/clients/go/gen/raypipe/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// fakeRuns is a RunService whose WatchRun plays one scripted stream per call and whose
// ListRuns serves a fixed list in pages.
type fakeRuns struct {
	raypipev1.UnimplementedRunServiceServer
	mu       sync.Mutex
	streams  [][]*raypipev1.Run // what each WatchRun call sends, in order
	breaks   []error            // the error that ends each stream (nil: a clean end)
	requests []*raypipev1.WatchRunRequest
	runs     []*raypipev1.Run
	pages    []string // the page tokens ListRuns was called with
	// the offsets WatchNodeLogs was called with
	logOffsets []int64
}

func (f *fakeRuns) WatchRun(request *raypipev1.WatchRunRequest, stream raypipev1.RunService_WatchRunServer) error {
	f.mu.Lock()
	call := len(f.requests)
	f.requests = append(f.requests, request)
	f.mu.Unlock()
	if call >= len(f.streams) {
		return status.Error(codes.Internal, "more streams than scripted")
	}
	for _, run := range f.streams[call] {
		if err := stream.Send(&raypipev1.WatchRunResponse{Run: run}); err != nil {
			return err
		}
	}
	return f.breaks[call]
}

func (f *fakeRuns) WatchNodeLogs(request *raypipev1.WatchNodeLogsRequest, stream raypipev1.RunService_WatchNodeLogsServer) error {
	f.mu.Lock()
	f.logOffsets = append(f.logOffsets, request.GetOffset())
	f.mu.Unlock()
	line := func(offset int64) *raypipev1.LogLine {
		return &raypipev1.LogLine{Offset: offset, Text: fmt.Sprintf("line %d", offset)}
	}
	if request.GetOffset() == 0 { // lines 0-1, then UNAVAILABLE
		if err := stream.Send(&raypipev1.WatchNodeLogsResponse{Lines: []*raypipev1.LogLine{line(0), line(1)}, NextOffset: 2}); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "server restarting")
	}
	if err := stream.Send(&raypipev1.WatchNodeLogsResponse{Lines: []*raypipev1.LogLine{line(2), line(3)}, NextOffset: 4}); err != nil {
		return err
	}
	return stream.Send(&raypipev1.WatchNodeLogsResponse{NextOffset: 4, Complete: true})
}

func (f *fakeRuns) ListRuns(_ context.Context, request *raypipev1.ListRunsRequest) (*raypipev1.ListRunsResponse, error) {
	f.mu.Lock()
	f.pages = append(f.pages, request.GetPageToken())
	f.mu.Unlock()
	start := 0
	if request.GetPageToken() != "" {
		start, _ = strconv.Atoi(request.GetPageToken())
	}
	end := start + int(request.GetPageSize())
	if end > len(f.runs) {
		end = len(f.runs)
	}
	response := &raypipev1.ListRunsResponse{Runs: f.runs[start:end]}
	if end < len(f.runs) {
		response.NextPageToken = strconv.Itoa(end)
	}
	return response, nil
}

func (f *fakeRuns) GetRun(_ context.Context, request *raypipev1.GetRunRequest) (*raypipev1.GetRunResponse, error) {
	st := status.New(codes.NotFound, fmt.Sprintf("run %s not found", request.GetName()))
	st, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: "RUN_NOT_FOUND", Domain: "raypipe.dev", Metadata: map[string]string{"name": request.GetName()}},
	)
	if err != nil {
		return nil, err
	}
	return nil, st.Err()
}

func (f *fakeRuns) CreateRun(_ context.Context, request *raypipev1.CreateRunRequest) (*raypipev1.CreateRunResponse, error) {
	st, err := status.New(codes.InvalidArgument, "the run is invalid").WithDetails(
		&errdetails.ErrorInfo{Reason: "INVALID_ARGUMENT", Domain: "raypipe.dev"},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "run.pipeline", Description: "must be set"},
			{Field: "run.parameters.lr", Description: "is not declared"},
		}},
	)
	if err != nil {
		return nil, err
	}
	return nil, st.Err()
}

func serve(t *testing.T, runs *fakeRuns) *Client {
	t.Helper()
	listener := bufconn.Listen(1 << 20)
	server := grpc.NewServer()
	raypipev1.RegisterRunServiceServer(server, runs)
	go func() { _ = server.Serve(listener) }()
	conn, err := grpc.Dial("bufnet", append(DialOptions(), grpc.WithContextDialer(
		func(context.Context, string) (net.Conn, error) { return listener.Dial() }))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		server.Stop()
	})
	return NewClient(conn)
}

func run(state raypipev1.Run_State) *raypipev1.Run {
	return &raypipev1.Run{Name: "runs/r-1", State: state}
}

func TestWaitRunReconnectsAfterUnavailable(t *testing.T) {
	runs := &fakeRuns{
		streams: [][]*raypipev1.Run{
			{run(raypipev1.Run_STATE_RUNNING)},
			{run(raypipev1.Run_STATE_RUNNING), run(raypipev1.Run_STATE_SUCCEEDED)},
		},
		breaks: []error{status.Error(codes.Unavailable, "server restarting"), nil},
	}
	client := serve(t, runs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var seen []raypipev1.Run_State
	got, err := client.WaitRun(ctx, "r-1", OnEvent(func(r *raypipev1.WatchRunResponse) {
		seen = append(seen, r.GetRun().GetState())
	}))
	if err != nil {
		t.Fatalf("WaitRun: %v", err)
	}
	if got.GetState() != raypipev1.Run_STATE_SUCCEEDED {
		t.Fatalf("state %s, want SUCCEEDED", got.GetState())
	}
	if len(runs.requests) != 2 {
		t.Fatalf("%d WatchRun calls, want 2 (one reconnect)", len(runs.requests))
	}
	if runs.requests[0].GetName() != "runs/r-1" || len(runs.requests[0].GetEventTypes()) != 0 {
		t.Fatalf("request %v: want the run's name and every event (OnEvent given)", runs.requests[0])
	}
	want := []raypipev1.Run_State{raypipev1.Run_STATE_RUNNING, raypipev1.Run_STATE_RUNNING, raypipev1.Run_STATE_SUCCEEDED}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", seen, want)
	}
}

func TestWaitRunAsksForStateChangesAndReportsFailure(t *testing.T) {
	runs := &fakeRuns{
		streams: [][]*raypipev1.Run{{run(raypipev1.Run_STATE_FAILED)}, {run(raypipev1.Run_STATE_FAILED)}},
		breaks:  []error{nil, nil},
	}
	client := serve(t, runs)
	got, err := client.WaitRun(context.Background(), "runs/r-1")
	var failed *RunFailedError
	if !errors.As(err, &failed) || failed.Run.GetState() != raypipev1.Run_STATE_FAILED || got == nil {
		t.Fatalf("err %v, run %v: want a RunFailedError with the FAILED run", err, got)
	}
	types := runs.requests[0].GetEventTypes()
	if len(types) != 1 || types[0] != raypipev1.RunEvent_TYPE_RUN_STATE_CHANGED {
		t.Fatalf("event types %v: want run-state changes only without OnEvent", types)
	}
	got, err = client.WaitRun(context.Background(), "runs/r-1", AcceptFailure())
	if err != nil || got.GetState() != raypipev1.Run_STATE_FAILED {
		t.Fatalf("AcceptFailure: %v, %v", got, err)
	}
}

func TestWaitRunStopsOnOtherErrorsAndWithItsContext(t *testing.T) {
	runs := &fakeRuns{
		streams: [][]*raypipev1.Run{{}, {run(raypipev1.Run_STATE_RUNNING)}},
		breaks:  []error{status.Error(codes.NotFound, "no such run"), status.Error(codes.Unavailable, "down")},
	}
	client := serve(t, runs)
	_, err := client.WaitRun(context.Background(), "r-1")
	if FromError(err).Code != codes.NotFound || len(runs.requests) != 1 {
		t.Fatalf("err %v after %d calls: want NOT_FOUND at once", err, len(runs.requests))
	}
	runs.streams = append(runs.streams, nil, nil, nil, nil, nil, nil, nil, nil)
	runs.breaks = append(runs.breaks, make([]error, 8)...)
	for i := range runs.breaks[1:] {
		runs.breaks[1+i] = status.Error(codes.Unavailable, "down")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	last, err := client.WaitRun(ctx, "r-1")
	if FromError(err).Code != codes.DeadlineExceeded {
		t.Fatalf("err %v: want DEADLINE_EXCEEDED once the context ends", err)
	}
	if last.GetState() != raypipev1.Run_STATE_RUNNING {
		t.Fatalf("last %v: want the last run seen", last)
	}
}

func TestFromErrorUnpacksErrorInfoAndBadRequest(t *testing.T) {
	client := serve(t, &fakeRuns{})
	_, err := client.Runs.GetRun(context.Background(), &raypipev1.GetRunRequest{Name: "runs/nope"})
	e := FromError(err)
	if e.Code != codes.NotFound || e.Reason != "RUN_NOT_FOUND" || e.Domain != "raypipe.dev" || e.Metadata["name"] != "runs/nope" {
		t.Fatalf("unpacked %+v", e)
	}
	if Reason(err) != "RUN_NOT_FOUND" || status.Code(e) != codes.NotFound {
		t.Fatalf("Reason %q, status.Code %s", Reason(err), status.Code(e))
	}
	if got := e.Error(); got != "NOT_FOUND (RUN_NOT_FOUND): run runs/nope not found" {
		t.Fatalf("Error() = %q", got)
	}
	_, err = client.Runs.CreateRun(context.Background(), &raypipev1.CreateRunRequest{})
	e = FromError(err)
	want := []FieldViolation{{"run.pipeline", "must be set"}, {"run.parameters.lr", "is not declared"}}
	if e.Code != codes.InvalidArgument || fmt.Sprint(e.FieldViolations) != fmt.Sprint(want) {
		t.Fatalf("unpacked %+v", e)
	}
	if FromError(nil) != nil {
		t.Fatal("FromError(nil) is not nil")
	}
	if e := FromError(context.Canceled); e.Code != codes.Canceled || CodeName(e.Code) != "CANCELLED" {
		t.Fatalf("context.Canceled unpacked as %v", e)
	}
}

func TestPagerWalksEveryPageOnce(t *testing.T) {
	runs := &fakeRuns{}
	for i := 0; i < 5; i++ {
		runs.runs = append(runs.runs, &raypipev1.Run{Name: fmt.Sprintf("runs/r-%d", i)})
	}
	client := serve(t, runs)
	all, err := client.ListRuns(context.Background(), &raypipev1.ListRunsRequest{PageSize: 2}).All()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range all {
		names = append(names, r.GetName())
	}
	if fmt.Sprint(names) != "[runs/r-0 runs/r-1 runs/r-2 runs/r-3 runs/r-4]" {
		t.Fatalf("names %v", names)
	}
	if fmt.Sprint(runs.pages) != "[ 2 4]" {
		t.Fatalf("page tokens %q: want the first page, then 2 and 4", runs.pages)
	}
	empty := NewPager(context.Background(), func(context.Context, string) ([]int, string, error) {
		return nil, "", status.Error(codes.PermissionDenied, "no")
	})
	if empty.Next() || FromError(empty.Err()).Code != codes.PermissionDenied {
		t.Fatalf("a failing first page: Next true or err %v", empty.Err())
	}
	looping := NewPager(context.Background(), func(context.Context, string) ([]int, string, error) {
		return []int{1}, "again", nil
	})
	items, err := looping.All()
	if err == nil || len(items) != 2 {
		t.Fatalf("a repeated token: %d items, err %v; want it stopped after the second page", len(items), err)
	}
}

func TestNames(t *testing.T) {
	cases := map[string]string{
		PipelineName("churn"):            "pipelines/churn",
		PipelineName("pipelines/churn"):  "pipelines/churn",
		VersionName("churn", 3):          "pipelines/churn/versions/3",
		RunName("r-1"):                   "runs/r-1",
		RunName("runs/r-1"):              "runs/r-1",
		ScheduleName("nightly"):          "schedules/nightly",
		ID("pipelines/churn/versions/3"): "3",
		ID("r-1"):                        "r-1",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	pipeline, n, err := ParseVersionName("pipelines/churn/versions/12")
	if err != nil || pipeline != "pipelines/churn" || n != 12 {
		t.Fatalf("ParseVersionName: %q %d %v", pipeline, n, err)
	}
	for _, bad := range []string{"pipelines/churn", "pipelines/churn/versions/0", "runs/r/versions/1", "pipelines//versions/1"} {
		if _, _, err := ParseVersionName(bad); err == nil {
			t.Errorf("ParseVersionName(%q) gave no error", bad)
		}
	}
}

func TestFollowNodeLogsReattachesFromTheLastOffset(t *testing.T) {
	runs := &fakeRuns{}
	client := serve(t, runs)
	var texts []string
	end, err := client.FollowNodeLogs(context.Background(), NodeLogName("r-1", "train", 1), 0,
		func(line *raypipev1.LogLine) error {
			texts = append(texts, line.GetText())
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(texts) != "[line 0 line 1 line 2 line 3]" || end != 4 {
		t.Fatalf("lines %v, end %d: want each line once and the offset after the last", texts, end)
	}
	if fmt.Sprint(runs.logOffsets) != "[0 2]" {
		t.Fatalf("offsets %v: want the re-attach at 2", runs.logOffsets)
	}
	if NodeLogName("runs/r-1", "n", 2) != "runs/r-1/nodes/n/attempts/2/logs" {
		t.Fatal(NodeLogName("runs/r-1", "n", 2))
	}
}
