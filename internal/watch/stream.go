package watch

import (
	"context"
	"errors"
	"sync"

	"github.com/concorddb/concord/internal/keys"
)

// Response is one message for a watch stream: changes for a watcher
// (shared with other watchers: do not modify them; prev_kv is always
// filled where the history has it), a watcher's creation or cancellation,
// or a progress notification (WatchID -1 for the whole stream). Revision
// is the revision the response reflects: every change up to it that the
// watcher needs has been queued.
type Response struct {
	WatchID         int64
	Events          []*Event
	Revision        int64
	Created         bool
	Canceled        bool
	CompactRevision int64
	Progress        bool
	// Opaque is the watcher's Request.Opaque (nil for a stream's
	// progress).
	Opaque any
}

// Errors of Stream.Watch.
var (
	// ErrDuplicateID: the client chose a watch id in use on the stream.
	ErrDuplicateID = errors.New("mvcc: duplicate watch ID provided on the WatchStream")
	// ErrEmptyRange: the watched range's end is not after its key.
	ErrEmptyRange = errors.New("mvcc: watcher range is empty")
)

// Stream is one etcd watch stream: its watchers and the one ordered queue
// of their responses (Out). Watch, Cancel and the progress requests are
// called from the stream's receiving goroutine; Out is read by its sender.
type Stream struct {
	h      *Hub
	ctx    context.Context
	cancel context.CancelFunc
	out    chan Response

	mu struct {
		sync.Mutex
		watchers map[int64]*watcher
		nextID   int64
		// progress holds the watch ids (-1: the whole stream) asked for
		// progress and not yet served; progressing is set while the one
		// goroutine that serves them runs. A request answered is one
		// served after it arrived, so requests that come while one is
		// served wait for the next round: the set is bounded by the
		// stream's watchers, and so is the work.
		progress    map[int64]bool
		progressing bool
	}
}

// NewStream opens a watch stream; Close it when the client goes.
func (h *Hub) NewStream(ctx context.Context) *Stream {
	ctx, cancel := context.WithCancel(ctx)
	s := &Stream{h: h, ctx: ctx, cancel: cancel, out: make(chan Response, StreamQueueLen)}
	s.mu.watchers = map[int64]*watcher{}
	return s
}

// Out is the stream's queue of responses, in the order they must be sent.
func (s *Stream) Out() <-chan Response { return s.out }

// Done is closed once the stream is closed.
func (s *Stream) Done() <-chan struct{} { return s.ctx.Done() }

// Request is what one watcher watches.
type Request struct {
	// Span is the watched span of global keys; an empty End watches the
	// single key Start.
	Span keys.Span
	// StartRevision is the first revision of interest; 0 means the
	// revision after the current one.
	StartRevision int64
	// ID is the client's choice of watch id; AutoID lets the stream pick.
	ID int64
	// Opaque is the caller's, carried on every response for the watcher
	// (its options, say).
	Opaque any
}

// AutoID asks the stream to choose a watch id (etcd's AutoWatchID).
const AutoID = 0

// Watch creates a watcher: it queues the created response (header
// revision: the cluster's current revision), then the watcher's changes
// as they come. It returns the watch id. Errors: ErrDuplicateID,
// ErrEmptyRange, or the cluster's (no current revision), with nothing
// queued.
func (s *Stream) Watch(ctx context.Context, req Request) (int64, error) {
	span := req.Span
	single := len(span.End) == 0
	if single {
		span.End = append(append([]byte(nil), span.Start...), 0)
	} else if span.Empty() {
		return -1, ErrEmptyRange
	}
	cur, err := s.h.src.Current(ctx)
	if err != nil {
		return -1, err
	}
	s.mu.Lock()
	id := req.ID
	if id == AutoID {
		for s.mu.watchers[s.mu.nextID] != nil {
			s.mu.nextID++
		}
		id = s.mu.nextID
		s.mu.nextID++
	} else if s.mu.watchers[id] != nil {
		s.mu.Unlock()
		return -1, ErrDuplicateID
	}
	w := &watcher{id: id, s: s, span: span, single: single, minRev: req.StartRevision, opaque: req.Opaque}
	if w.minRev <= 0 {
		w.minRev = cur + 1
	}
	s.mu.watchers[id] = w
	s.mu.Unlock()
	if !s.push(ctx, Response{WatchID: id, Created: true, Revision: cur, Opaque: w.opaque}) {
		s.forget(id)
		return -1, ctx.Err()
	}
	h := s.h
	if err := h.ensureRunning(ctx); err != nil {
		// The watcher still catches up, once the hub can start.
		h.log.Debug("watch hub not started", "err", err)
	}
	h.mu.Lock()
	if w.canceled {
		h.mu.Unlock()
		return id, nil
	}
	h.mu.watchers++
	w.counted = true
	joined := h.tryJoinLocked(w)
	h.mu.Unlock()
	if !joined {
		go h.catchUp(w)
	}
	return id, nil
}

// Cancel removes a watcher and queues its canceled response; false if the
// stream has no such watcher.
func (s *Stream) Cancel(ctx context.Context, id int64) bool {
	w := s.forget(id)
	if w == nil {
		return false
	}
	s.h.mu.Lock()
	s.h.dropLocked(w)
	rev := s.h.mu.frontier
	s.h.mu.Unlock()
	s.push(ctx, Response{WatchID: id, Canceled: true, Revision: rev, Opaque: w.opaque})
	return true
}

// Push queues a response of the caller's (a refused create, say) in order
// with the others, waiting for room; false if ctx or the stream ends
// first.
func (s *Stream) Push(ctx context.Context, r Response) bool { return s.push(ctx, r) }

// RequestProgress queues, once the hub has caught up with the cluster's
// current revision, a progress notification for the whole stream (watch
// id -1) if every watcher of the stream is synced then, as etcd does; it
// waits for that in the stream's progress goroutine.
func (s *Stream) RequestProgress() { s.askProgress(-1) }

// NotifyProgress is RequestProgress for one watcher (progress_notify).
func (s *Stream) NotifyProgress(id int64) { s.askProgress(id) }

// askProgress records a progress request and starts the stream's progress
// goroutine if it does not run.
func (s *Stream) askProgress(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.progress == nil {
		s.mu.progress = map[int64]bool{}
	}
	s.mu.progress[id] = true
	if !s.mu.progressing {
		s.mu.progressing = true
		go s.serveProgress()
	}
}

// serveProgress serves the progress requests, a round at a time, until
// none is left.
func (s *Stream) serveProgress() {
	for {
		s.mu.Lock()
		ids := s.mu.progress
		s.mu.progress = nil
		if len(ids) == 0 || s.ctx.Err() != nil {
			s.mu.progressing = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		rev, err := s.h.progressAt(s.ctx)
		if err != nil {
			continue // the stream ended, or the cluster did not answer: dropped, as etcd drops a request it cannot answer
		}
		for id := range ids {
			s.progress(id, rev)
		}
	}
}

// progress queues watcher id's (-1: the stream's) progress at rev, if its
// watchers are synced there.
func (s *Stream) progress(id, rev int64) {
	s.mu.Lock()
	ws := make([]*watcher, 0, len(s.mu.watchers))
	for wid, w := range s.mu.watchers {
		if id == -1 || wid == id {
			ws = append(ws, w)
		}
	}
	s.mu.Unlock()
	if id != -1 && len(ws) == 0 {
		return
	}
	s.h.mu.Lock()
	for _, w := range ws {
		if !w.synced || w.minRev > rev+1 {
			s.h.mu.Unlock()
			return
		}
	}
	s.h.mu.Unlock()
	var opaque any
	if id != -1 {
		opaque = ws[0].opaque
	}
	s.push(s.ctx, Response{WatchID: id, Revision: rev, Progress: true, Opaque: opaque})
}

// Close cancels every watcher of the stream.
func (s *Stream) Close() {
	s.cancel()
	s.mu.Lock()
	ws := s.mu.watchers
	s.mu.watchers = map[int64]*watcher{}
	s.mu.Unlock()
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	for _, w := range ws {
		s.h.dropLocked(w)
	}
}

// forget removes a watcher from the stream's table and returns it.
func (s *Stream) forget(id int64) *watcher {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.mu.watchers[id]
	delete(s.mu.watchers, id)
	return w
}

// offer queues r if the stream has room, without waiting.
func (s *Stream) offer(r Response) bool {
	select {
	case s.out <- r:
		return true
	default:
		return false
	}
}

// push queues r, waiting for room; false if ctx or the stream ends first.
func (s *Stream) push(ctx context.Context, r Response) bool {
	select {
	case s.out <- r:
		return true
	case <-ctx.Done():
		return false
	case <-s.ctx.Done():
		return false
	}
}
