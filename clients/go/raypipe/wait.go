package raypipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"time"

	raypipev1 "github.com/raypipe/raypipe/clients/go/gen/raypipe/v1"
	"google.golang.org/grpc/codes"
)

// RunFailedError is what WaitRun returns, with the run, when the run ended FAILED or
// CANCELLED (unless AcceptFailure was given).
type RunFailedError struct {
	Run *raypipev1.Run
}

func (e *RunFailedError) Error() string {
	message := e.Run.GetError().GetMessage()
	if message == "" {
		message = "no error recorded"
	}
	return fmt.Sprintf("raypipe: run %s ended %s: %s", e.Run.GetName(), e.Run.GetState(), message)
}

// IsTerminal reports whether a run in this state will not change again.
func IsTerminal(state raypipev1.Run_State) bool {
	switch state {
	case raypipev1.Run_STATE_SUCCEEDED, raypipev1.Run_STATE_FAILED, raypipev1.Run_STATE_CANCELLED:
		return true
	}
	return false
}

// WaitOption changes what WaitRun does.
type WaitOption func(*waitOptions)

type waitOptions struct {
	onEvent       func(*raypipev1.WatchRunResponse)
	acceptFailure bool
}

// OnEvent has WaitRun ask for every event and call fn with each response as it arrives; after
// a reconnect fn sees the server's fresh snapshot first. Without it WaitRun asks for run-state
// changes only, so a large run does not stream its node events to a caller that does not
// look at them.
func OnEvent(fn func(*raypipev1.WatchRunResponse)) WaitOption {
	return func(o *waitOptions) { o.onEvent = fn }
}

// AcceptFailure has WaitRun return a FAILED or CANCELLED run with a nil error.
func AcceptFailure() WaitOption {
	return func(o *waitOptions) { o.acceptFailure = true }
}

// WaitRun follows a run with WatchRun until it ends and returns it in its terminal state.
// A stream broken by UNAVAILABLE (a server restart, a network blip) is reopened with backoff
// (0.1 s doubling to 5 s, reset once the stream delivers again); the server starts every
// stream with the run's current state, so nothing is missed. A run that ends FAILED or
// CANCELLED gives a *RunFailedError with the run. The wait ends with ctx (the run goes on).
func (c *Client) WaitRun(ctx context.Context, run string, opts ...WaitOption) (*raypipev1.Run, error) {
	var o waitOptions
	for _, opt := range opts {
		opt(&o)
	}
	request := &raypipev1.WatchRunRequest{Name: RunName(run)}
	if o.onEvent == nil {
		request.EventTypes = []raypipev1.RunEvent_Type{raypipev1.RunEvent_TYPE_RUN_STATE_CHANGED}
	}
	backoff := newBackoff()
	var last *raypipev1.Run
	for {
		ended, err := c.follow(ctx, request, o.onEvent, backoff, &last)
		if err == nil && ended {
			if !o.acceptFailure && last.GetState() != raypipev1.Run_STATE_SUCCEEDED {
				return last, &RunFailedError{Run: last}
			}
			return last, nil
		}
		if err != nil && FromError(err).Code != codes.Unavailable {
			return last, FromError(err)
		}
		// UNAVAILABLE, or a stream that ended before the run did (a server shutting down
		// closes its streams): reconnect.
		if err := backoff.sleep(ctx); err != nil {
			return last, FromError(err)
		}
	}
}

// follow reads one WatchRun stream, keeping the latest run in *last; it reports whether the
// run ended, or the error that broke the stream (neither: the stream ended early).
func (c *Client) follow(
	ctx context.Context,
	request *raypipev1.WatchRunRequest,
	onEvent func(*raypipev1.WatchRunResponse),
	backoff *backoff,
	last **raypipev1.Run,
) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Runs.WatchRun(ctx, request)
	if err != nil {
		return false, err
	}
	for {
		response, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		backoff.reset()
		if onEvent != nil {
			onEvent(response)
		}
		if run := response.GetRun(); run != nil {
			*last = run
			if IsTerminal(run.GetState()) {
				return true, nil
			}
		}
	}
}

// backoff gives reconnect delays: 0.1 s doubling to 5 s, with up to 10% jitter.
type backoff struct{ next time.Duration }

func newBackoff() *backoff { return &backoff{next: 100 * time.Millisecond} }

func (b *backoff) reset() { b.next = 100 * time.Millisecond }

func (b *backoff) sleep(ctx context.Context) error {
	delay := b.next + time.Duration(rand.Int63n(int64(b.next)/10+1))
	if b.next *= 2; b.next > 5*time.Second {
		b.next = 5 * time.Second
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
