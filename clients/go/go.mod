// The Go client of raypipe: the generated code of proto/raypipe/v1 (gen/raypipe/v1, package
// raypipev1) and the helper package raypipe. Built and tested in this repository in GOPATH mode
// against Debian's packaged modules (grpc 1.33, protobuf 1.28); with a module proxy, run
// `go mod tidy` once: it adds genproto's errdetails module and writes go.sum.
module github.com/raypipe/raypipe/clients/go

go 1.19

require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
