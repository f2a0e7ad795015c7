package etcdapi

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// wireMessage is a message already encoded in protobuf's wire format, sent
// as it is (wireCodec): the watch stream builds its responses from event
// encodings shared by all the watchers of a change.
type wireMessage struct{ b []byte }

// wireCodec is gRPC's proto codec, except that a *wireMessage is sent as
// its bytes. ServerOptions installs it on the client port, where every
// other message is encoded and decoded by the proto codec as before.
type wireCodec struct{ encoding.CodecV2 }

// Marshal returns a *wireMessage's bytes, and the proto codec's encoding of
// anything else.
func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if w, ok := v.(*wireMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(w.b)}, nil
	}
	return c.CodecV2.Marshal(v)
}

// newWireCodec wraps the registered proto codec.
func newWireCodec() wireCodec {
	return wireCodec{encoding.GetCodecV2("proto")}
}
