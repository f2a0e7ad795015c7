// Package backup owns the format of a Concord backup: the file that
// `etcdctl snapshot save` (etcd's Maintenance.Snapshot) receives from a node
// and that `concord snapshot restore` turns into the data directories of a
// new cluster.
//
// A backup holds every live key of the user keyspace as of one revision,
// with its etcd metadata (create and mod revision, version, lease):
//
//	magic "CONCORDB" | version byte 1 | revision (8 bytes BE)
//	record*           uvarint length (> 0) | KeyValue protobuf
//	end               uvarint 0
//	padding           zero bytes up to a multiple of 512
//	trailer           SHA-256 of every byte before it (32 bytes)
//
// The padding gives the file etcd's snapshot shape (a 512-byte aligned body
// and a SHA-256 trailer), which is what `etcdctl snapshot save` checks
// before it keeps a download.
// Records are in ascending key order. Nothing in a backup is trusted until
// the trailer matches: Read hands records to its callback as it goes, and
// the caller must discard them if Read returns an error.
package backup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"google.golang.org/protobuf/proto"
)

const (
	magic   = "CONCORDB"
	version = 1
	// align is the body alignment etcd's snapshot tools expect.
	align = 512
	// MaxRecordBytes bounds one record, far above any key-value pair a
	// node accepts (etcd's request limit is 1.5 MiB by default).
	MaxRecordBytes = 64 << 20
)

// ErrCorrupt is wrapped by every error about a malformed backup.
var ErrCorrupt = errors.New("backup: corrupt")

// Writer writes a backup. It is not safe for concurrent use.
type Writer struct {
	w       io.Writer
	h       hash.Hash
	size    int64
	lastKey []byte
	n       int64
	closed  bool
}

// NewWriter starts a backup of the keyspace at revision rev on w.
func NewWriter(w io.Writer, rev int64) (*Writer, error) {
	bw := &Writer{w: w, h: sha256.New()}
	hdr := append([]byte(magic), version)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(rev))
	return bw, bw.write(hdr)
}

func (w *Writer) write(b []byte) error {
	w.h.Write(b)
	w.size += int64(len(b))
	_, err := w.w.Write(b)
	return err
}

// Add appends one key-value pair; keys must come in strictly ascending
// order.
func (w *Writer) Add(kv *kvpb.KeyValue) error {
	if w.n > 0 && bytes.Compare(kv.GetKey(), w.lastKey) <= 0 {
		return fmt.Errorf("backup: key %q after %q: keys must ascend", kv.GetKey(), w.lastKey)
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(kv)
	if err != nil {
		return err
	}
	if len(data) > MaxRecordBytes {
		return fmt.Errorf("backup: key %q: record of %d bytes over the limit", kv.GetKey(), len(data))
	}
	rec := binary.AppendUvarint(nil, uint64(len(data)))
	if err := w.write(append(rec, data...)); err != nil {
		return err
	}
	w.lastKey = append(w.lastKey[:0], kv.GetKey()...)
	w.n++
	return nil
}

// Count returns the number of records added.
func (w *Writer) Count() int64 { return w.n }

// Close writes the end marker and the checksum. It does not close the
// underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return errors.New("backup: closed twice")
	}
	w.closed = true
	end := []byte{0}
	if pad := (align - (w.size+1)%align) % align; pad > 0 {
		end = append(end, make([]byte, pad)...)
	}
	if err := w.write(end); err != nil {
		return err
	}
	_, err := w.w.Write(w.h.Sum(nil))
	return err
}

// Info describes a verified backup.
type Info struct {
	Revision int64
	Keys     int64
	// MaxRevision is the largest create or mod revision in the backup.
	MaxRevision int64
}

// Read parses a backup, calling fn for each record in order, and verifies
// the checksum at the end. If it returns an error, whatever fn received
// must be discarded.
func Read(r io.Reader, fn func(kv *kvpb.KeyValue) error) (Info, error) {
	var info Info
	raw := bufio.NewReader(r)
	br := &hashingReader{r: raw, h: sha256.New()}
	hdr := make([]byte, len(magic)+1+8)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return info, fmt.Errorf("%w: header: %v", ErrCorrupt, err)
	}
	if string(hdr[:len(magic)]) != magic {
		return info, fmt.Errorf("%w: not a Concord backup (etcd's own snapshot files are not supported)", ErrCorrupt)
	}
	if hdr[len(magic)] != version {
		return info, fmt.Errorf("%w: backup version %d, want %d", ErrCorrupt, hdr[len(magic)], version)
	}
	info.Revision = int64(binary.BigEndian.Uint64(hdr[len(magic)+1:]))
	var lastKey []byte
	for {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return info, fmt.Errorf("%w: record length: %v", ErrCorrupt, err)
		}
		if n == 0 {
			if err := skipPadding(br); err != nil {
				return info, err
			}
			break
		}
		if n > MaxRecordBytes {
			return info, fmt.Errorf("%w: record of %d bytes", ErrCorrupt, n)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(br, data); err != nil {
			return info, fmt.Errorf("%w: record: %v", ErrCorrupt, err)
		}
		kv := &kvpb.KeyValue{}
		if err := proto.Unmarshal(data, kv); err != nil {
			return info, fmt.Errorf("%w: record: %v", ErrCorrupt, err)
		}
		if len(kv.GetKey()) == 0 || (info.Keys > 0 && bytes.Compare(kv.GetKey(), lastKey) <= 0) {
			return info, fmt.Errorf("%w: key %q out of order", ErrCorrupt, kv.GetKey())
		}
		if kv.GetModRevision() <= 0 || kv.GetCreateRevision() <= 0 || kv.GetCreateRevision() > kv.GetModRevision() || kv.GetVersion() <= 0 {
			return info, fmt.Errorf("%w: key %q has impossible revisions", ErrCorrupt, kv.GetKey())
		}
		lastKey = kv.GetKey()
		info.Keys++
		info.MaxRevision = max(info.MaxRevision, kv.GetModRevision())
		if err := fn(kv); err != nil {
			return info, err
		}
	}
	want := br.h.Sum(nil)
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(raw, got); err != nil {
		return info, fmt.Errorf("%w: checksum: %v", ErrCorrupt, err)
	}
	if !bytes.Equal(got, want) {
		return info, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	if _, err := raw.ReadByte(); err != io.EOF {
		return info, fmt.Errorf("%w: data after the checksum", ErrCorrupt)
	}
	return info, nil
}

// skipPadding consumes the zero padding after the end marker: it must end
// the body on a multiple of align.
func skipPadding(br *hashingReader) error {
	for br.n%align != 0 {
		b, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("%w: padding: %v", ErrCorrupt, err)
		}
		if b != 0 {
			return fmt.Errorf("%w: non-zero padding", ErrCorrupt)
		}
	}
	return nil
}

// hashingReader hashes exactly the bytes it hands out, so read-ahead in the
// buffer below never reaches the hash.
type hashingReader struct {
	r *bufio.Reader
	h hash.Hash
	n int64 // bytes handed out
}

func (x *hashingReader) Read(p []byte) (int, error) {
	n, err := x.r.Read(p)
	x.h.Write(p[:n])
	x.n += int64(n)
	return n, err
}

func (x *hashingReader) ReadByte() (byte, error) {
	b, err := x.r.ReadByte()
	if err == nil {
		x.h.Write([]byte{b})
		x.n++
	}
	return b, err
}
