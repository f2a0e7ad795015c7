package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			_, _ = w.Write([]byte("ok\n"))
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: no quorum\n"))
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	if err := probe(ctx, srv.URL+"/readyz"); err != nil {
		t.Fatalf("200: %v", err)
	}
	if err := probe(ctx, srv.URL+"/down"); err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "no quorum") {
		t.Fatalf("503: want the status and the reason, got %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := probe(tctx, srv.URL+"/slow"); err == nil || !strings.Contains(err.Error(), "no answer in time") {
		t.Fatalf("timeout: got %v", err)
	}
	if err := probe(ctx, "http://127.0.0.1:1/readyz"); err == nil {
		t.Fatal("refused connection: want an error")
	}
}
