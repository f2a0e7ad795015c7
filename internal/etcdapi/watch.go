package etcdapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/watch"
)

// DefaultProgressNotifyInterval is how often a watcher created with
// progress_notify hears of the revision it has reached when it got no
// events meanwhile: etcd's default.
const DefaultProgressNotifyInterval = 10 * time.Minute

// RegisterWatch installs etcd's Watch service on s, served by hub. It
// panics if cfg does not Validate.
func RegisterWatch(s *grpc.Server, hub *watch.Hub, cfg Config) {
	if hub == nil {
		panic(errors.New("etcdapi: nil watch hub"))
	}
	pb.RegisterWatchServer(s, &watchServer{hub: hub, cfg: mustComplete(cfg)})
}

type watchServer struct {
	pb.UnimplementedWatchServer
	hub *watch.Hub
	cfg Config
}

// watchOptions are one watcher's options that shape its responses.
type watchOptions struct {
	prevKV, noPut, noDelete, fragment, progress bool
}

// Watch serves one etcd watch stream: a receiving goroutine creates and
// cancels watchers and asks for progress; this goroutine sends the
// stream's responses in their order.
func (ws *watchServer) Watch(stream pb.Watch_WatchServer) error {
	ctx := stream.Context()
	st := ws.hub.NewStream(ctx)
	defer st.Close()
	errc := make(chan error, 1)
	go func() { errc <- ws.recvLoop(ctx, stream, st) }()

	interval := ws.cfg.ProgressNotifyInterval
	if interval <= 0 {
		interval = DefaultProgressNotifyInterval
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	// active are the created watchers; quiet those that got no event
	// since the last progress tick, and progress those that asked.
	active := map[int64]*watchOptions{}
	quiet := map[int64]bool{}
	// hdr is the encoded header of revision hdrRev, the last one sent:
	// the watchers of one change share it.
	var hdr []byte
	var hdrRev int64
	for {
		select {
		case r := <-st.Out():
			opts, _ := r.Opaque.(*watchOptions)
			switch {
			case r.Created:
				if !r.Canceled && r.WatchID != -1 {
					active[r.WatchID] = opts
				}
				if err := stream.Send(&pb.WatchResponse{Header: ws.header(r.Revision), WatchId: r.WatchID, Created: true, Canceled: r.Canceled, CancelReason: reasonOf(r)}); err != nil {
					return err
				}
				continue
			case r.Canceled:
				if _, ok := active[r.WatchID]; !ok {
					continue
				}
				delete(active, r.WatchID)
				delete(quiet, r.WatchID)
				if err := stream.Send(&pb.WatchResponse{Header: ws.header(r.Revision), WatchId: r.WatchID, Canceled: true, CompactRevision: r.CompactRevision}); err != nil {
					return err
				}
				continue
			case r.Progress:
				if err := stream.Send(&pb.WatchResponse{Header: ws.header(r.Revision), WatchId: r.WatchID}); err != nil {
					return err
				}
				continue
			}
			if _, ok := active[r.WatchID]; !ok || opts == nil {
				continue // canceled meanwhile
			}
			evs := fromEvents(r.Events, opts)
			if len(evs) == 0 {
				continue
			}
			delete(quiet, r.WatchID)
			for len(evs) > 0 {
				// At most maxRevsPerResponse revisions per response, as
				// etcd sends a watcher's history.
				n := revisionsPrefix(evs, maxRevsPerResponse)
				part := evs[:n]
				evs = evs[n:]
				var err error
				if opts.fragment {
					wr := &pb.WatchResponse{Header: ws.header(r.Revision), WatchId: r.WatchID, Events: etcdEvents(part)}
					err = sendFragments(wr, ws.cfg.MaxRequestBytes, stream.Send)
				} else {
					if r.Revision != hdrRev || hdr == nil {
						if hdr, err = proto.Marshal(ws.header(r.Revision)); err != nil {
							return err
						}
						hdrRev = r.Revision
					}
					// The events' encodings are shared by every watcher
					// of the stream's hub: a put due to 1000 watchers is
					// marshalled once, not 1000 times.
					err = stream.SendMsg(&wireMessage{b: appendEventsResponse(hdr, r.WatchID, part)})
				}
				if err != nil {
					return err
				}
			}
		case <-ticker.C:
			for id, opts := range active {
				if opts.progress && quiet[id] {
					st.NotifyProgress(id)
				}
				quiet[id] = true
			}
		case err := <-errc:
			if err != nil {
				return err
			}
			// The client closed its side: keep sending until it goes.
			errc = nil
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return rpctypes.ErrGRPCWatchCanceled
			}
			return ctx.Err()
		}
	}
}

// maxRevsPerResponse bounds the revisions of one watch response: etcd's
// watchBatchMaxRevs.
const maxRevsPerResponse = 1000

// revisionsPrefix returns how many of evs hold their first max revisions.
func revisionsPrefix(evs []*translated, max int) int {
	revs := 0
	for i, ev := range evs {
		if i == 0 || ev.ev.Kv.ModRevision != evs[i-1].ev.Kv.ModRevision {
			if revs == max {
				return i
			}
			revs++
		}
	}
	return len(evs)
}

// reasonOf is a refused create's cancel reason.
func reasonOf(r watch.Response) string {
	if s, ok := r.Opaque.(string); ok {
		return s
	}
	return ""
}

// recvLoop serves the client's requests until it closes its side (nil) or
// the stream fails.
func (ws *watchServer) recvLoop(ctx context.Context, stream pb.Watch_WatchServer, st *watch.Stream) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return errEOF(err)
		}
		switch u := req.GetRequestUnion().(type) {
		case *pb.WatchRequest_CreateRequest:
			ws.create(ctx, st, u.CreateRequest)
		case *pb.WatchRequest_CancelRequest:
			if u.CancelRequest != nil {
				st.Cancel(ctx, u.CancelRequest.GetWatchId())
			}
		case *pb.WatchRequest_ProgressRequest:
			if u.ProgressRequest != nil {
				st.RequestProgress()
			}
		}
	}
}

// errEOF maps the client's end of stream to nil.
func errEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// create serves a WatchCreateRequest with etcd's rules: an empty key is
// "\x00", range_end "\x00" watches every key from key on, a negative start
// revision is refused as compacted, a client-chosen id in use is refused.
func (ws *watchServer) create(ctx context.Context, st *watch.Stream, c *pb.WatchCreateRequest) {
	if c == nil {
		return
	}
	refuse := func(reason string) {
		st.Push(ctx, watch.Response{WatchID: -1, Created: true, Canceled: true, Opaque: reason})
	}
	key := c.GetKey()
	if len(key) == 0 {
		key = []byte{0}
	}
	if c.GetStartRevision() < 0 {
		refuse(rpctypes.ErrCompacted.Error())
		return
	}
	if err := ws.cfg.watchAllowed(ctx, key, c.GetRangeEnd()); err != nil {
		// etcd's cancel reasons are its gRPC errors' messages.
		refuse(rpctypes.ErrorDesc(err))
		return
	}
	span := keys.Span{Start: keys.User(key)}
	if end := c.GetRangeEnd(); len(end) > 0 {
		span.End = keys.UserEnd(end)
	}
	opts := &watchOptions{prevKV: c.GetPrevKv(), fragment: c.GetFragment(), progress: c.GetProgressNotify()}
	for _, f := range c.GetFilters() {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			opts.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			opts.noDelete = true
		}
	}
	_, err := st.Watch(ctx, watch.Request{Span: span, StartRevision: c.GetStartRevision(), ID: c.GetWatchId(), Opaque: opts})
	if err != nil {
		refuse(err.Error())
	}
}

// translated is a change as etcd's API gives it to a watcher, and its
// protobuf encoding.
type translated struct {
	ev   *mvccpb.Event
	wire []byte
}

// fromEvents translates a watcher's events, dropping those its filters
// exclude and prev_kv unless it asked for it. The translations and their
// encodings are shared by every watcher of an event (etcd shares its
// events too): gRPC and appendEventsResponse only read them.
func fromEvents(evs []*watch.Event, opts *watchOptions) []*translated {
	out := make([]*translated, 0, len(evs))
	for _, ev := range evs {
		if ev.GetType() == kvpb.Event_DELETE && opts.noDelete || ev.GetType() == kvpb.Event_PUT && opts.noPut {
			continue
		}
		slot := 0
		if opts.prevKV {
			slot = 1
		}
		out = append(out, ev.Memo(slot, func() any {
			e := &mvccpb.Event{Kv: fromKeyValue(ev.GetKv())}
			if ev.GetType() == kvpb.Event_DELETE {
				e.Type = mvccpb.Event_DELETE
			}
			if opts.prevKV {
				e.PrevKv = fromKeyValue(ev.GetPrevKv())
			}
			wire, err := proto.Marshal(e)
			if err != nil {
				// proto.Marshal fails only on a string field that is not
				// UTF-8, and an Event holds bytes and numbers.
				panic(fmt.Sprintf("etcdapi: marshal watch event: %v", err))
			}
			return &translated{ev: e, wire: wire}
		}).(*translated))
	}
	return out
}

// etcdEvents returns the events of evs.
func etcdEvents(evs []*translated) []*mvccpb.Event {
	out := make([]*mvccpb.Event, len(evs))
	for i, ev := range evs {
		out[i] = ev.ev
	}
	return out
}

// The field numbers of etcd's WatchResponse that appendEventsResponse
// writes (etcdserverpb/rpc.proto).
const (
	watchResponseHeader  = 1
	watchResponseWatchID = 2
	watchResponseEvents  = 11
)

// appendEventsResponse encodes a WatchResponse of header (encoded), watchID
// and evs, as proto.Marshal of the same message does (fields in number
// order, watch_id left out when 0), from the events' shared encodings.
func appendEventsResponse(header []byte, watchID int64, evs []*translated) []byte {
	size := protowire.SizeTag(watchResponseHeader) + protowire.SizeBytes(len(header))
	if watchID != 0 {
		size += protowire.SizeTag(watchResponseWatchID) + protowire.SizeVarint(uint64(watchID))
	}
	for _, ev := range evs {
		size += protowire.SizeTag(watchResponseEvents) + protowire.SizeBytes(len(ev.wire))
	}
	b := make([]byte, 0, size)
	b = protowire.AppendTag(b, watchResponseHeader, protowire.BytesType)
	b = protowire.AppendBytes(b, header)
	if watchID != 0 {
		b = protowire.AppendTag(b, watchResponseWatchID, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(watchID))
	}
	for _, ev := range evs {
		b = protowire.AppendTag(b, watchResponseEvents, protowire.BytesType)
		b = protowire.AppendBytes(b, ev.wire)
	}
	return b
}

func (ws *watchServer) header(rev int64) *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: ws.cfg.ClusterID, MemberId: ws.cfg.MemberID, Revision: rev}
}

// sendFragments sends wr in pieces of about maxBytes each (a piece holds
// at least one event), all but the last marked fragment, for a watcher
// created with fragment: etcd's rule, so that clientv3 puts them together.
func sendFragments(wr *pb.WatchResponse, maxBytes int, send func(*pb.WatchResponse) error) error {
	if proto.Size(wr) < maxBytes || len(wr.Events) < 2 {
		return send(wr)
	}
	evs := wr.Events
	for len(evs) > 0 {
		cur := &pb.WatchResponse{Header: wr.Header, WatchId: wr.WatchId, Fragment: true}
		n := 0
		for n < len(evs) {
			cur.Events = evs[:n+1]
			if n > 0 && proto.Size(cur) >= maxBytes {
				cur.Events = evs[:n]
				break
			}
			n++
		}
		evs = evs[len(cur.Events):]
		cur.Fragment = len(evs) > 0
		if err := send(cur); err != nil {
			return err
		}
	}
	return nil
}
