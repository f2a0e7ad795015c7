// Package resp is the Redis-protocol front end of Concord's AP keyspaces:
// a RESP2 and RESP3 server (the wire format is github.com/tidwall/redcon's)
// that maps each Redis command onto the CRDT of the nearest meaning
// (internal/ap/crdt) and runs it through an AP node (internal/ap).
//
// One connection's commands run one at a time, in order, on the
// connection's goroutine; a command returns its reply only after its write
// is acknowledged by the keyspace's write quorum. SELECT n picks keyspace
// n (0 to 15). Where a CRDT must differ from Redis (an add concurrent with
// a remove: the add wins) README.md says so.
package resp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/redcon"

	"github.com/concorddb/concord/internal/ap"
	"github.com/concorddb/concord/internal/ap/crdt"
)

// Store is the AP keyspace engine the commands run on (*ap.Node). Safe for
// concurrent use.
type Store interface {
	// Read returns the merged state of key (empty if absent); the caller
	// owns it.
	Read(ctx context.Context, ks uint32, key []byte) (*crdt.Object, error)
	// Update applies op to key's state and returns once the write quorum
	// stored the result.
	Update(ctx context.Context, ks uint32, key []byte, op ap.Op) error
	// Scan lists up to limit live keys from start, and the next start (nil
	// at the end).
	Scan(ctx context.Context, ks uint32, start []byte, limit int) (keys [][]byte, next []byte, err error)
	// NowMs is the wall clock in Unix milliseconds.
	NowMs() int64
	// Replica returns this node's own state of key, not merged with any
	// other node's (CONCORD REPLICA).
	Replica(ks uint32, key []byte) (ap.Replica, error)
}

// Config configures New.
type Config struct {
	Store Store
	// Version is Concord's version, reported by INFO and HELLO.
	Version string
	// Info, if set, returns extra INFO lines ("name:value\r\n" each) for
	// its "# Concord" section.
	Info   func() string
	Logger *slog.Logger
	// CommandTimeout bounds one command (0: 5 s).
	CommandTimeout time.Duration
}

// Tunables.
const (
	// numKeyspaces is how many SELECT accepts, as Redis's default
	// "databases 16".
	numKeyspaces = ap.NumKeyspaces
	// maxCursors bounds the SCAN cursors remembered; the oldest is
	// forgotten first (a client resuming it gets ERR invalid cursor).
	maxCursors = 4096
	// defaultCommandTimeout bounds a command's quorum round trips.
	defaultCommandTimeout = 5 * time.Second
)

// Server serves RESP on one listener.
type Server struct {
	cfg Config
	srv *redcon.Server

	// mu guards closed and the adding to inflight: a command starts only
	// while the server is open, and Close waits for those started.
	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup

	cursors cursorTable
}

// session is one connection's state (redcon's conn context).
type session struct {
	ks    uint32
	proto int // 2 or 3
}

// New returns a server; Serve starts it.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("resp: Config needs a Store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = defaultCommandTimeout
	}
	s := &Server{cfg: cfg}
	s.cursors.m = map[uint64][]byte{}
	s.srv = redcon.NewServerNetwork("tcp", "", s.handle, func(c redcon.Conn) bool {
		c.SetContext(&session{proto: 2})
		return true
	}, nil)
	return s, nil
}

// Serve serves connections from l until Close; it returns nil after Close.
func (s *Server) Serve(l net.Listener) error { return s.srv.Serve(l) }

// Close stops accepting, closes every connection and waits for the
// commands in progress to finish, so that the Store can close after it.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	_ = s.srv.Close()
	s.inflight.Wait()
}

func (s *Server) handle(c redcon.Conn, cmd redcon.Command) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.WriteError("ERR server is shutting down")
		return
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	defer s.inflight.Done()
	sess, _ := c.Context().(*session)
	if sess == nil {
		sess = &session{proto: 2}
		c.SetContext(sess)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CommandTimeout)
	defer cancel()
	w := &writer{c: c, proto: sess.proto}
	name := strings.ToLower(string(cmd.Args[0]))
	spec, ok := commands[name]
	if !ok {
		w.err(unknownCommand(cmd.Args))
		return
	}
	if !spec.arity.ok(len(cmd.Args)) {
		w.err("ERR wrong number of arguments for '" + name + "' command")
		return
	}
	spec.run(&call{s: s, ctx: ctx, sess: sess, w: w, args: cmd.Args})
}

// unknownCommand is Redis's message for a command it does not have.
func unknownCommand(args [][]byte) string {
	var b strings.Builder
	b.WriteString("ERR unknown command '")
	b.WriteString(truncate(string(args[0]), 128))
	b.WriteString("', with args beginning with: ")
	for _, a := range args[1:] {
		b.WriteString("'" + truncate(string(a), 128) + "' ")
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// cursorTable maps SCAN cursors (the integers Redis clients expect) to the
// key the scan resumes from.
type cursorTable struct {
	mu sync.Mutex
	// Invariant: len(m) <= maxCursors; order lists m's ids oldest first.
	m     map[uint64][]byte
	order []uint64
	next  uint64
}

func (t *cursorTable) put(start []byte) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next++
	id := t.next
	t.m[id] = start
	t.order = append(t.order, id)
	if len(t.order) > maxCursors {
		delete(t.m, t.order[0])
		t.order = t.order[1:]
	}
	return id
}

func (t *cursorTable) get(id uint64) ([]byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	start, ok := t.m[id]
	return start, ok
}
