package raypipe

import (
	"context"
	"fmt"

	raypipev1 "github.com/raypipe/raypipe/clients/go/gen/raypipe/v1"
	"google.golang.org/protobuf/proto"
)

// Pager walks every item of a List method, fetching the next page when the current one is
// used up:
//
//	runs := client.ListRuns(ctx, &raypipev1.ListRunsRequest{Pipeline: "pipelines/churn"})
//	for runs.Next() {
//		fmt.Println(runs.Item().GetName())
//	}
//	if err := runs.Err(); err != nil { ... }
type Pager[T any] struct {
	ctx     context.Context
	fetch   func(ctx context.Context, token string) ([]T, string, error)
	page    []T
	item    T
	token   string
	seen    map[string]bool
	started bool
	err     error
	stop    error // a repeated page token, reported once its page is used up
}

// NewPager makes a Pager from a function that fetches one page for a page token ("" for the
// first) and returns its items and the next token ("" after the last page).
func NewPager[T any](ctx context.Context, fetch func(ctx context.Context, token string) ([]T, string, error)) *Pager[T] {
	return &Pager[T]{ctx: ctx, fetch: fetch, seen: map[string]bool{}}
}

// Next moves to the next item, fetching pages as needed; false at the end or on an error.
func (p *Pager[T]) Next() bool {
	for len(p.page) == 0 {
		if p.err != nil {
			return false
		}
		if p.started && p.token == "" {
			p.err = p.stop
			return false
		}
		p.started = true
		p.page, p.token, p.err = p.fetch(p.ctx, p.token)
		if p.err != nil {
			p.err = FromError(p.err)
			p.page = nil
			return false
		}
		// A server that hands back a token it gave before would make the walk endless: this
		// page is the last one, and Err says why.
		if p.seen[p.token] {
			p.stop = fmt.Errorf("raypipe: the server repeated page token %q; stopping the iteration", p.token)
			p.token = ""
		}
		p.seen[p.token] = true
	}
	p.item, p.page = p.page[0], p.page[1:]
	return true
}

// Item is the current item, after Next returned true.
func (p *Pager[T]) Item() T { return p.item }

// Err is the error that ended the walk (an *Error for a failed call), or nil at the end.
func (p *Pager[T]) Err() error { return p.err }

// All collects every remaining item.
func (p *Pager[T]) All() ([]T, error) {
	var items []T
	for p.Next() {
		items = append(items, p.Item())
	}
	return items, p.Err()
}

// ListRuns pages through ListRuns with the request's filters and page size.
func (c *Client) ListRuns(ctx context.Context, request *raypipev1.ListRunsRequest) *Pager[*raypipev1.Run] {
	request = proto.Clone(request).(*raypipev1.ListRunsRequest)
	return NewPager(ctx, func(ctx context.Context, token string) ([]*raypipev1.Run, string, error) {
		request.PageToken = token
		response, err := c.Runs.ListRuns(ctx, request)
		return response.GetRuns(), response.GetNextPageToken(), err
	})
}

// ListPipelines pages through ListPipelines.
func (c *Client) ListPipelines(ctx context.Context, request *raypipev1.ListPipelinesRequest) *Pager[*raypipev1.Pipeline] {
	request = proto.Clone(request).(*raypipev1.ListPipelinesRequest)
	return NewPager(ctx, func(ctx context.Context, token string) ([]*raypipev1.Pipeline, string, error) {
		request.PageToken = token
		response, err := c.Pipelines.ListPipelines(ctx, request)
		return response.GetPipelines(), response.GetNextPageToken(), err
	})
}

// ListPipelineVersions pages through ListPipelineVersions.
func (c *Client) ListPipelineVersions(ctx context.Context, request *raypipev1.ListPipelineVersionsRequest) *Pager[*raypipev1.PipelineVersion] {
	request = proto.Clone(request).(*raypipev1.ListPipelineVersionsRequest)
	return NewPager(ctx, func(ctx context.Context, token string) ([]*raypipev1.PipelineVersion, string, error) {
		request.PageToken = token
		response, err := c.Pipelines.ListPipelineVersions(ctx, request)
		return response.GetPipelineVersions(), response.GetNextPageToken(), err
	})
}

// ListSchedules pages through ListSchedules.
func (c *Client) ListSchedules(ctx context.Context, request *raypipev1.ListSchedulesRequest) *Pager[*raypipev1.Schedule] {
	request = proto.Clone(request).(*raypipev1.ListSchedulesRequest)
	return NewPager(ctx, func(ctx context.Context, token string) ([]*raypipev1.Schedule, string, error) {
		request.PageToken = token
		response, err := c.Schedules.ListSchedules(ctx, request)
		return response.GetSchedules(), response.GetNextPageToken(), err
	})
}
