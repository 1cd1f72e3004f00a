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
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	raypipev1 "github.com/raypipe/raypipe/clients/go/gen/raypipe/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
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

// DialOptions are the options Dial starts from: a plaintext connection (the server listens on
// loopback or behind a TLS-terminating proxy; Credentials.DialOptions, after these, make it
// TLS), raypipe's message-size limit both ways, and keepalive pings so that a
// long WatchRun through an idle proxy is not dropped silently.
func DialOptions() []grpc.DialOption {
	return append([]grpc.DialOption{grpc.WithInsecure()}, commonOptions()...)
}

// commonOptions are DialOptions less the choice of plaintext.
func commonOptions() []grpc.DialOption {
	return []grpc.DialOption{
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

// Credentials are what a server with authentication asks of its callers (docs/security.md):
// a bearer token, TLS with the CA of the server's certificate, and for mutual TLS a client
// certificate. Empty fields are not used.
type Credentials struct {
	// Token is sent with every call as "authorization: Bearer TOKEN".
	Token string
	// TLSCA is a PEM file of the CA the server's certificate chains to; "system" trusts the
	// system's roots. With it (or a client certificate) the connection is TLS.
	TLSCA string
	// TLSCert and TLSKey are PEM files of a client certificate and its key (mutual TLS).
	TLSCert, TLSKey string
}

// CredentialsFromEnv reads RAYPIPE_TOKEN, RAYPIPE_TLS_CA, RAYPIPE_TLS_CERT and RAYPIPE_TLS_KEY,
// as the Python SDK and the CLI do.
func CredentialsFromEnv() Credentials {
	return Credentials{
		Token:   os.Getenv("RAYPIPE_TOKEN"),
		TLSCA:   os.Getenv("RAYPIPE_TLS_CA"),
		TLSCert: os.Getenv("RAYPIPE_TLS_CERT"),
		TLSKey:  os.Getenv("RAYPIPE_TLS_KEY"),
	}
}

// DialOptions are the options that carry c, to use instead of the package's DialOptions:
// raypipe's message limits and keepalive, TLS (or plaintext without a CA or certificate),
// and the bearer token.
func (c Credentials) DialOptions() ([]grpc.DialOption, error) {
	opts := commonOptions()
	secure := c.TLSCA != "" || c.TLSCert != ""
	if !secure {
		opts = append(opts, grpc.WithInsecure())
	} else {
		config := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.TLSCA != "" && c.TLSCA != "system" {
			pem, err := os.ReadFile(c.TLSCA)
			if err != nil {
				return nil, fmt.Errorf("raypipe: TLS CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("raypipe: TLS CA %s holds no PEM certificate", c.TLSCA)
			}
			config.RootCAs = pool
		}
		if c.TLSCert != "" || c.TLSKey != "" {
			pair, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("raypipe: TLS client certificate: %w", err)
			}
			config.Certificates = []tls.Certificate{pair}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(config)))
	}
	if c.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: c.Token, secure: secure}))
	}
	return opts, nil
}

// bearer sends a token with every call. Over plaintext it is allowed too, for a server on
// loopback; anywhere else the server should have TLS.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

// Dial connects to a raypipe server at address ("host:port") with the options of
// CredentialsFromEnv (DialOptions' when none is set), then opts, and returns without waiting for the
// connection (gRPC connects on the first call); use Ready to wait for a serving server.
func Dial(ctx context.Context, address string, opts ...grpc.DialOption) (*Client, error) {
	fromEnv, err := CredentialsFromEnv().DialOptions()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.DialContext(ctx, address, append(fromEnv, opts...)...)
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
