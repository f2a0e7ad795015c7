package telemetry

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Propagator carries trace context between nodes: W3C traceparent and
// baggage in gRPC metadata.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// TracingEnabled reports whether the standard OpenTelemetry environment
// asks for OTLP trace export: OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (or OTEL_TRACES_EXPORTER is
// "otlp"), and OTEL_SDK_DISABLED is not "true". Tracing is off otherwise.
func TracingEnabled() bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	switch os.Getenv("OTEL_TRACES_EXPORTER") {
	case "none":
		return false
	case "otlp":
		return true
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// TracingOptions configures SetupTracing.
type TracingOptions struct {
	// SamplingRatio is the fraction of new traces recorded, in [0, 1]; a
	// request that arrives with a sampled parent is always recorded.
	SamplingRatio float64
	// NodeName becomes the service.instance.id resource attribute.
	NodeName string
}

// SetupTracing returns the tracer provider of a process: one exporting
// over OTLP/gRPC (endpoint, headers, TLS and timeouts from the standard
// OTEL_EXPORTER_OTLP_* variables) when TracingEnabled, else a provider
// that records nothing. shutdown flushes pending spans; call it on exit.
func SetupTracing(ctx context.Context, opts TracingOptions) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	if !TracingEnabled() {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	if opts.SamplingRatio < 0 || opts.SamplingRatio > 1 {
		return nil, nil, fmt.Errorf("telemetry: sampling ratio %v outside [0, 1]", opts.SamplingRatio)
	}
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: OTLP exporter: %w", err)
	}
	sdk := NewTracerProvider(sdktrace.NewBatchSpanProcessor(exp), opts)
	return sdk, sdk.Shutdown, nil
}

// NewTracerProvider builds an SDK tracer provider around sp with
// Concord's resource and sampler; tests pass a tracetest exporter's
// syncer.
func NewTracerProvider(sp sdktrace.SpanProcessor, opts TracingOptions) *sdktrace.TracerProvider {
	attrs := []attribute.KeyValue{attribute.String("service.name", "concord")}
	if opts.NodeName != "" {
		attrs = append(attrs, attribute.String("service.instance.id", opts.NodeName))
	}
	res, err := resource.New(context.Background(), resource.WithFromEnv(), resource.WithAttributes(attrs...))
	if err != nil {
		// A malformed OTEL_RESOURCE_ATTRIBUTES only loses attributes.
		res = resource.NewSchemaless(attrs...)
	}
	return sdktrace.NewTracerProvider(
		sdktrace.WithSpanProcessor(sp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(opts.SamplingRatio))),
	)
}
