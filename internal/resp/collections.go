package resp

import (
	"errors"
	"strconv"
	"strings"

	"github.com/concorddb/concord/internal/ap"
	"github.com/concorddb/concord/internal/ap/crdt"
)

func sadd(c *call) {
	// Every add mints a dot, even of a member already there: a concurrent
	// remove elsewhere must not undo this add. So the set is written
	// (touched) whatever the count.
	updateEach(c, crdt.KindSet, true /* touch */, func(o *crdt.Object, w ap.Write, m string) bool {
		return o.Set.Add(w.Actor, m)
	})
}

// updateEach applies each to the object at args[1], which must be of kind,
// once for every argument from args[2:], in one update, and answers how
// many of them changed it. The object is written if touch (and marked
// written at the update's time) or if any argument changed it.
func updateEach(c *call, kind crdt.Kind, touch bool, each func(o *crdt.Object, w ap.Write, arg string) bool) {
	var n int64
	err := c.update(c.args[1], func(o *crdt.Object, w ap.Write) (bool, error) {
		if err := checkKind(o, w, kind); err != nil {
			return false, err
		}
		for _, a := range c.args[2:] {
			if each(o, w, string(a)) {
				n++
			}
		}
		if touch {
			o.Touch(kind, w.TS, w.Actor)
		}
		return touch || n > 0, nil
	})
	if err != nil {
		c.fail(err)
		return
	}
	c.w.int(n)
}

func srem(c *call) {
	updateEach(c, crdt.KindSet, false /* touch */, func(o *crdt.Object, _ ap.Write, m string) bool {
		return o.Set.Remove(m)
	})
}

func smembers(c *call) {
	o, _, err := c.readKind(c.args[1], crdt.KindSet)
	if err != nil {
		c.fail(err)
		return
	}
	ms := o.Set.Members()
	if o.Kind(c.s.cfg.Store.NowMs()) == crdt.KindNone {
		ms = nil
	}
	c.w.setHeader(len(ms))
	for _, m := range ms {
		c.w.bulkString(m)
	}
}

func sismember(c *call) {
	o, ok, err := c.readKind(c.args[1], crdt.KindSet)
	if err != nil {
		c.fail(err)
		return
	}
	if ok && o.Set.Has(string(c.args[2])) {
		c.w.int(1)
		return
	}
	c.w.int(0)
}

func scard(c *call) {
	o, ok, err := c.readKind(c.args[1], crdt.KindSet)
	if err != nil {
		c.fail(err)
		return
	}
	if !ok {
		c.w.int(0)
		return
	}
	c.w.int(int64(o.Set.Len()))
}

func hset(c *call) {
	if len(c.args)%2 != 0 {
		c.w.err("ERR wrong number of arguments for 'hset' command")
		return
	}
	var n int64
	err := c.update(c.args[1], func(o *crdt.Object, w ap.Write) (bool, error) {
		if err := checkKind(o, w, crdt.KindHash); err != nil {
			return false, err
		}
		for i := 2; i < len(c.args); i += 2 {
			f := o.Hash.Field(string(c.args[i]))
			if !f.Live() {
				n++
			}
			f.Set(w.TS, w.Actor, c.args[i+1])
		}
		o.Touch(crdt.KindHash, w.TS, w.Actor)
		return true, nil
	})
	if err != nil {
		c.fail(err)
		return
	}
	c.w.int(n)
}

func hget(c *call) {
	o, ok, err := c.readKind(c.args[1], crdt.KindHash)
	if err != nil {
		c.fail(err)
		return
	}
	if ok {
		if v, ok := o.Hash.Get(string(c.args[2])); ok {
			c.w.bulk(v)
			return
		}
	}
	c.w.null()
}

func hdel(c *call) {
	updateEach(c, crdt.KindHash, false /* touch */, func(o *crdt.Object, w ap.Write, f string) bool {
		return o.Hash.Delete(w.TS, w.Actor, f)
	})
}

func hgetall(c *call) {
	o, ok, err := c.readKind(c.args[1], crdt.KindHash)
	if err != nil {
		c.fail(err)
		return
	}
	var fields []string
	if ok {
		fields = o.Hash.Fields()
	}
	c.w.mapHeader(len(fields))
	for _, f := range fields {
		v, _ := o.Hash.Get(f)
		c.w.bulkString(f)
		c.w.bulk(v)
	}
}

func hincrby(c *call) {
	d, err := parseInt(c.args[3])
	if err != nil {
		c.fail(err)
		return
	}
	var v int64
	err = c.update(c.args[1], func(o *crdt.Object, w ap.Write) (bool, error) {
		if err := checkKind(o, w, crdt.KindHash); err != nil {
			return false, err
		}
		var err error
		if v, err = o.Hash.Field(string(c.args[2])).IncrBy(w.Actor, d); err != nil {
			return false, strIncrError(err, errHashInt)
		}
		o.Touch(crdt.KindHash, w.TS, w.Actor)
		return true, nil
	})
	if err != nil {
		c.fail(err)
		return
	}
	c.w.int(v)
}

func typeCmd(c *call) {
	_, kind, err := c.read(c.args[1])
	if err != nil {
		c.fail(err)
		return
	}
	c.w.status(kind.String())
}

// scan pages through the keyspace. COUNT is the number of keys examined
// per call, as in Redis: MATCH and TYPE filter those, so a page may come
// back short or empty before the scan is done.
func scan(c *call) {
	cursor, err := strconv.ParseUint(string(c.args[1]), 10, 64)
	if err != nil {
		c.w.err(errCursor)
		return
	}
	count, match, typ := 10, "", ""
	hasMatch, hasType := false, false
	for i := 2; i < len(c.args); i += 2 {
		if i+1 >= len(c.args) {
			c.w.err(errSyntax)
			return
		}
		v := string(c.args[i+1])
		switch strings.ToLower(string(c.args[i])) {
		case "count":
			n, err := strconv.Atoi(v)
			if err != nil {
				c.w.err(errNotInteger)
				return
			}
			if n < 1 {
				c.w.err(errSyntax)
				return
			}
			count = n
		case "match":
			match, hasMatch = v, true
		case "type":
			typ, hasType = strings.ToLower(v), true
		default:
			c.w.err(errSyntax)
			return
		}
	}
	var start []byte
	if cursor != 0 {
		var ok bool
		if start, ok = c.s.cursors.get(cursor); !ok {
			c.w.err(errCursor)
			return
		}
	}
	keys, next, err := c.s.cfg.Store.Scan(c.ctx, c.sess.ks, start, min(count, maxScanCount))
	if err != nil {
		c.fail(err)
		return
	}
	var out [][]byte
	for _, k := range keys {
		if hasMatch && !globMatch(match, string(k)) {
			continue
		}
		if hasType {
			_, kind, err := c.read(k)
			if err != nil {
				c.fail(err)
				return
			}
			if kind.String() != typ {
				continue
			}
		}
		out = append(out, k)
	}
	nextCursor := uint64(0)
	if next != nil {
		nextCursor = c.s.cursors.put(next)
	}
	c.w.array(2)
	c.w.bulkString(strconv.FormatUint(nextCursor, 10))
	c.w.array(len(out))
	for _, k := range out {
		c.w.bulk(k)
	}
}

// maxScanCount bounds the keys one SCAN call examines.
const maxScanCount = 10000

// flushdb deletes every key of the selected keyspace, one CRDT delete per
// key: writes concurrent with it survive, as with DEL.
func flushdb(c *call) {
	if len(c.args) > 2 || (len(c.args) == 2 && !strings.EqualFold(string(c.args[1]), "sync") && !strings.EqualFold(string(c.args[1]), "async")) {
		c.w.err(errSyntax)
		return
	}
	var start []byte
	for {
		keys, next, err := c.s.cfg.Store.Scan(c.ctx, c.sess.ks, start, flushBatch)
		if err != nil {
			c.fail(err)
			return
		}
		for _, k := range keys {
			err := c.update(k, func(o *crdt.Object, w ap.Write) (bool, error) {
				if o.Kind(w.NowMs) == crdt.KindNone {
					return false, nil
				}
				o.Delete(w.TS, w.Actor)
				return true, nil
			})
			if err != nil && !errors.Is(err, ap.ErrUnavailable) {
				c.fail(err)
				return
			}
		}
		if next == nil {
			break
		}
		start = next
	}
	c.w.ok()
}

// flushBatch is the keys FLUSHDB lists per page.
const flushBatch = 1000

// globMatch reports whether s matches the glob pattern p as Redis's MATCH
// reads it: * any run, ? one byte, [abc] [^abc] [a-z] classes, \ escapes.
func globMatch(p, s string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			if len(p) == 0 {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if globMatch(p, s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if len(s) == 0 {
				return false
			}
			p, s = p[1:], s[1:]
		case '[':
			if len(s) == 0 {
				return false
			}
			rest, ok := matchClass(p[1:], s[0])
			if !ok {
				return false
			}
			p, s = rest, s[1:]
		default:
			if p[0] == '\\' && len(p) > 1 {
				p = p[1:]
			}
			if len(s) == 0 || p[0] != s[0] {
				return false
			}
			p, s = p[1:], s[1:]
		}
	}
	return len(s) == 0
}

// matchClass matches c against the class whose body starts p (after '[')
// and returns the pattern after the closing ']'. An unclosed class runs to
// the end of the pattern.
func matchClass(p string, c byte) (string, bool) {
	negate := false
	if len(p) > 0 && p[0] == '^' {
		negate, p = true, p[1:]
	}
	matched := false
	for len(p) > 0 && p[0] != ']' {
		lo := p[0]
		if lo == '\\' && len(p) > 1 {
			p = p[1:]
			lo = p[0]
		}
		p = p[1:]
		if len(p) >= 2 && p[0] == '-' && p[1] != ']' {
			hi := p[1]
			p = p[2:]
			if lo > hi {
				lo, hi = hi, lo
			}
			if c >= lo && c <= hi {
				matched = true
			}
			continue
		}
		if c == lo {
			matched = true
		}
	}
	if len(p) > 0 {
		p = p[1:]
	}
	return p, matched != negate
}
