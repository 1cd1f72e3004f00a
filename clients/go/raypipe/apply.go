package raypipe

import (
	"context"

	raypipev1 "github.com/raypipe/raypipe/clients/go/gen/raypipe/v1"
	"google.golang.org/grpc/codes"
)

// ApplyResult is what Apply did.
type ApplyResult struct {
	// Pipeline is the pipeline after the call, with its default version.
	Pipeline *raypipev1.Pipeline
	// Version is the new version, or the default version whose spec was the same.
	Version *raypipev1.PipelineVersion
	// PipelineCreated is true when the pipeline did not exist before.
	PipelineCreated bool
	// VersionCreated is false when the spec's digest equalled the default version's.
	VersionCreated bool
}

// Apply makes spec the pipeline's default version, creating only what is missing: the
// pipeline if it does not exist, and a version only if the spec's digest (as the server
// computes it) differs from the default version's, so applying the same spec twice changes
// nothing. The spec is validated first, so a bad one (INVALID_ARGUMENT, violations under
// "spec.") leaves no empty pipeline behind. Errors are *Error.
func (c *Client) Apply(ctx context.Context, pipelineID string, spec *raypipev1.PipelineSpec) (*ApplyResult, error) {
	validated, err := c.Pipelines.ValidatePipelineSpec(ctx, &raypipev1.ValidatePipelineSpecRequest{Spec: spec})
	if err != nil {
		return nil, FromError(err)
	}
	name := PipelineName(pipelineID)
	result := &ApplyResult{}
	got, err := c.Pipelines.GetPipeline(ctx, &raypipev1.GetPipelineRequest{Name: name})
	switch {
	case err == nil:
		result.Pipeline = got.GetPipeline()
	case FromError(err).Code == codes.NotFound:
		created, err := c.Pipelines.CreatePipeline(ctx, &raypipev1.CreatePipelineRequest{
			PipelineId: ID(name), Pipeline: &raypipev1.Pipeline{},
		})
		switch {
		case err == nil:
			result.Pipeline, result.PipelineCreated = created.GetPipeline(), true
		case FromError(err).Code == codes.AlreadyExists: // created concurrently: use theirs
			got, err := c.Pipelines.GetPipeline(ctx, &raypipev1.GetPipelineRequest{Name: name})
			if err != nil {
				return nil, FromError(err)
			}
			result.Pipeline = got.GetPipeline()
		default:
			return nil, FromError(err)
		}
	default:
		return nil, FromError(err)
	}
	if current := result.Pipeline.GetDefaultVersion(); current != "" {
		version, err := c.Pipelines.GetPipelineVersion(ctx, &raypipev1.GetPipelineVersionRequest{Name: current})
		if err != nil {
			return nil, FromError(err)
		}
		if version.GetPipelineVersion().GetSpecDigest() == validated.GetSpecDigest() {
			result.Version = version.GetPipelineVersion()
			return result, nil
		}
	}
	created, err := c.Pipelines.CreatePipelineVersion(ctx, &raypipev1.CreatePipelineVersionRequest{
		Parent: name, PipelineVersion: &raypipev1.PipelineVersion{Spec: spec},
	})
	if err != nil {
		return nil, FromError(err)
	}
	result.Version, result.VersionCreated = created.GetPipelineVersion(), true
	after, err := c.Pipelines.GetPipeline(ctx, &raypipev1.GetPipelineRequest{Name: name})
	if err != nil {
		return nil, FromError(err)
	}
	result.Pipeline = after.GetPipeline()
	return result, nil
}
