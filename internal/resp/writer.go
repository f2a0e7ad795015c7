package resp

import (
	"strconv"

	"github.com/tidwall/redcon"
)

// writer writes replies in the connection's protocol version: RESP3's
// null, map, set and verbatim types, or their RESP2 forms.
type writer struct {
	c     redcon.Conn
	proto int
}

func (w *writer) err(msg string)      { w.c.WriteError(msg) }
func (w *writer) ok()                 { w.c.WriteString("OK") }
func (w *writer) status(s string)     { w.c.WriteString(s) }
func (w *writer) int(n int64)         { w.c.WriteInt64(n) }
func (w *writer) bulk(b []byte)       { w.c.WriteBulk(b) }
func (w *writer) bulkString(s string) { w.c.WriteBulkString(s) }
func (w *writer) array(n int)         { w.c.WriteArray(n) }
func (w *writer) raw(prefix byte, n int) {
	w.c.WriteRaw(strconv.AppendInt([]byte{prefix}, int64(n), 10))
	w.c.WriteRaw([]byte("\r\n"))
}

func (w *writer) null() {
	if w.proto == 3 {
		w.c.WriteRaw([]byte("_\r\n"))
		return
	}
	w.c.WriteNull()
}

// mapHeader starts a map of n pairs (RESP2: an array of 2n).
func (w *writer) mapHeader(n int) {
	if w.proto == 3 {
		w.raw('%', n)
		return
	}
	w.array(2 * n)
}

// setHeader starts a set of n members (RESP2: an array).
func (w *writer) setHeader(n int) {
	if w.proto == 3 {
		w.raw('~', n)
		return
	}
	w.array(n)
}

// verbatim writes text as RESP3's verbatim string (RESP2: a bulk string).
func (w *writer) verbatim(text string) {
	if w.proto == 3 {
		body := "txt:" + text
		w.c.WriteRaw([]byte("=" + strconv.Itoa(len(body)) + "\r\n" + body + "\r\n"))
		return
	}
	w.bulkString(text)
}
