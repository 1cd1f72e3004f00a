// Package raypipe is a small layer over raypipe's generated gRPC code (package raypipev1):
// a Client holding a stub per service, the dial options raypipe's servers expect, errors
// unpacked from their status details (ErrorInfo, BadRequest), WaitRun over WatchRun with
// reconnect on UNAVAILABLE, a page iterator for the List methods, and resource names.
//
// The generated stubs stay the API: every request and response is a raypipev1 message, so
// anything the contract offers is reachable through Client.Pipelines, Client.Runs and
// Client.Schedules, and this package only adds what every caller would otherwise rewrite.
package raypipe

import (
	"context"
	"fmt"
	"os"
	"time"

	raypipev1 "github.com/raypipe/raypipe/clients/go/gen/raypipe/v1"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// DefaultAddress is where `raypipe serve` listens unless told otherwise.
const DefaultAddress = "localhost:50051"

// maxMessageBytes matches the server's limit, so a large run (thousands of nodes) fits.
const maxMessageBytes = 64 << 20

// Client holds one connection and a stub per raypipe service. Its methods are safe for
// concurrent use, as the stubs are.
type Client struct {
	conn      *grpc.ClientConn
	Pipelines raypipev1.PipelineServiceClient
	Runs      raypipev1.RunServiceClient
	Schedules raypipev1.ScheduleServiceClient
	Health    healthpb.HealthClient
}

// AddressFromEnv returns $RAYPIPE_ADDRESS, or DefaultAddress when it is unset or empty.
func AddressFromEnv() string {
	if address := os.Getenv("RAYPIPE_ADDRESS"); address != "" {
		return address
	}
	return DefaultAddress
}

// DialOptions are the options Dial uses: a plaintext connection (the server listens on
// loopback or behind a TLS-terminating proxy; pass grpc.WithTransportCredentials after these
// to use TLS), raypipe's message-size limit both ways, and keepalive pings so that a
// long WatchRun through an idle proxy is not dropped silently.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInsecure(),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(maxMessageBytes),
			grpc.MaxCallSendMsgSize(maxMessageBytes),
		),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                30 * time.Second,
			Timeout:             10 * time.Second,
			PermitWithoutStream: false,
		}),
	}
}

// Dial connects to a raypipe server at address ("host:port") with DialOptions followed by
// opts, and returns without waiting for the connection (gRPC connects on the first call);
// use Ready to wait for a serving server.
func Dial(ctx context.Context, address string, opts ...grpc.DialOption) (*Client, error) {
	conn, err := grpc.DialContext(ctx, address, append(DialOptions(), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("raypipe: dial %s: %w", address, err)
	}
	client := NewClient(conn)
	client.conn = conn
	return client, nil
}

// NewClient wraps a connection made elsewhere (with interceptors, TLS, a bufconn in tests).
// Close does not close it: its owner does.
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{
		Pipelines: raypipev1.NewPipelineServiceClient(conn),
		Runs:      raypipev1.NewRunServiceClient(conn),
		Schedules: raypipev1.NewScheduleServiceClient(conn),
		Health:    healthpb.NewHealthClient(conn),
	}
}

// Close closes the connection that Dial made.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close()
}

// Ready waits until the server's health service answers SERVING, retrying while it cannot be
// reached, until ctx ends.
func (c *Client) Ready(ctx context.Context) error {
	backoff := newBackoff()
	for {
		response, err := c.Health.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		if err == nil && response.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if ctx.Err() != nil {
			if err == nil {
				err = fmt.Errorf("health is %s", response.GetStatus())
			}
			return fmt.Errorf("raypipe: server not ready: %w", err)
		}
		if err := backoff.sleep(ctx); err != nil {
			return fmt.Errorf("raypipe: server not ready: %w", err)
		}
	}
}
