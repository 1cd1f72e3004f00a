package raypipe

import (
	"context"
	"errors"
	"fmt"
	"io"

	raypipev1 "github.com/raypipe/raypipe/clients/go/gen/raypipe/v1"
	"google.golang.org/grpc/codes"
)

// NodeLogName is the name of a node attempt's log, runs/{run}/nodes/{node}/attempts/{n}/logs.
func NodeLogName(run, node string, attempt int) string {
	return fmt.Sprintf("%s/nodes/%s/attempts/%d/logs", RunName(run), node, attempt)
}

// LastAttempt is the node's last attempt in the run record (at least 1).
func (c *Client) LastAttempt(ctx context.Context, run, node string) (int, error) {
	response, err := c.Runs.GetRun(ctx, &raypipev1.GetRunRequest{Name: RunName(run)})
	if err != nil {
		return 0, FromError(err)
	}
	for _, execution := range response.GetRun().GetNodes() {
		if execution.GetNodeId() == node && execution.GetAttempt() > 1 {
			return int(execution.GetAttempt()), nil
		}
	}
	return 1, nil
}

// FollowNodeLogs calls fn with every line of a node attempt's log from offset, as the
// attempt writes it, until the attempt ends (WatchNodeLogs); it returns the offset after the
// last line. A stream broken by UNAVAILABLE is reopened from that offset with backoff, so no
// line is missed or repeated. The follow ends with ctx, or with fn's error.
func (c *Client) FollowNodeLogs(
	ctx context.Context, name string, offset int64, fn func(*raypipev1.LogLine) error,
) (int64, error) {
	backoff := newBackoff()
	for {
		complete, err := c.followOnce(ctx, name, &offset, fn, backoff)
		if err == nil && complete {
			return offset, nil
		}
		var unavailable *Error
		if err != nil && !(errors.As(err, &unavailable) && unavailable.Code == codes.Unavailable) {
			return offset, err
		}
		if err := backoff.sleep(ctx); err != nil {
			return offset, FromError(err)
		}
	}
}

func (c *Client) followOnce(
	ctx context.Context, name string, offset *int64, fn func(*raypipev1.LogLine) error, backoff *backoff,
) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Runs.WatchNodeLogs(ctx, &raypipev1.WatchNodeLogsRequest{Name: name, Offset: *offset})
	if err != nil {
		return false, FromError(err)
	}
	for {
		message, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, FromError(err)
		}
		backoff.reset()
		for _, line := range message.GetLines() {
			if err := fn(line); err != nil {
				return false, err
			}
		}
		*offset = message.GetNextOffset()
		if message.GetComplete() {
			return true, nil
		}
	}
}
