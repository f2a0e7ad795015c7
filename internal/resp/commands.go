package resp

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"

	"github.com/concorddb/concord/internal/ap"
	"github.com/concorddb/concord/internal/ap/crdt"
)

// Redis's error messages, word for word: clients and tests match them.
const (
	errWrongType   = "WRONGTYPE Operation against a key holding the wrong kind of value"
	errSyntax      = "ERR syntax error"
	errNotInteger  = "ERR value is not an integer or out of range"
	errNotFloat    = "ERR value is not a valid float"
	errOverflow    = "ERR increment or decrement would overflow"
	errFloatResult = "ERR increment would produce NaN or Infinity"
	errHashInt     = "ERR hash value is not an integer"
	errDBIndex     = "ERR DB index is out of range"
	errCursor      = "ERR invalid cursor"
)

// replyError is an error whose text is the RESP error to send.
type replyError string

func (e replyError) Error() string { return string(e) }

// arity is a command's argument count, the name included: exactly n when
// n > 0, at least -n when n < 0.
type arity int

func (a arity) ok(n int) bool {
	if a > 0 {
		return n == int(a)
	}
	return n >= int(-a)
}

// call is one command being run.
type call struct {
	s    *Server
	ctx  context.Context
	sess *session
	w    *writer
	args [][]byte
}

type spec struct {
	arity arity
	run   func(*call)
}

// commands maps every command served (lower case) to its spec; anything
// else is answered "ERR unknown command".
var commands map[string]spec

func init() {
	commands = map[string]spec{
		"ping":        {-1, ping},
		"hello":       {-1, hello},
		"info":        {-1, info},
		"select":      {2, selectDB},
		"get":         {2, get},
		"set":         {-3, set},
		"mget":        {-2, mget},
		"mset":        {-3, mset},
		"del":         {-2, del},
		"exists":      {-2, exists},
		"expire":      {-3, expire},
		"ttl":         {2, ttl},
		"persist":     {2, persist},
		"incr":        {2, func(c *call) { incrBy(c, 1) }},
		"decr":        {2, func(c *call) { incrBy(c, -1) }},
		"incrby":      {3, func(c *call) { incrByArg(c, false) }},
		"decrby":      {3, func(c *call) { incrByArg(c, true) }},
		"incrbyfloat": {3, incrByFloat},
		"sadd":        {-3, sadd},
		"srem":        {-3, srem},
		"smembers":    {2, smembers},
		"sismember":   {3, sismember},
		"scard":       {2, scard},
		"hset":        {-4, hset},
		"hget":        {3, hget},
		"hdel":        {-3, hdel},
		"hgetall":     {2, hgetall},
		"hincrby":     {4, hincrby},
		"scan":        {-2, scan},
		"type":        {2, typeCmd},
		"flushdb":     {-1, flushdb},
		"concord":     {-2, concord},
	}
}

// fail writes err: a replyError as is, anything else (the store's) as a
// RESP error naming it.
func (c *call) fail(err error) {
	var re replyError
	switch {
	case errors.As(err, &re):
		c.w.err(string(re))
	case errors.Is(err, ap.ErrUnavailable):
		c.w.err("NOREPLICAS " + err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		c.w.err("TIMEOUT the command's quorum did not answer in time")
	default:
		c.w.err("ERR " + err.Error())
	}
}

// read returns key's state and its kind now.
func (c *call) read(key []byte) (*crdt.Object, crdt.Kind, error) {
	o, err := c.s.cfg.Store.Read(c.ctx, c.sess.ks, key)
	if err != nil {
		return nil, 0, err
	}
	return o, o.Kind(c.s.cfg.Store.NowMs()), nil
}

// readKind returns key's state if it is absent or of kind k, else a
// WRONGTYPE error.
func (c *call) readKind(key []byte, k crdt.Kind) (*crdt.Object, bool, error) {
	o, kind, err := c.read(key)
	if err != nil {
		return nil, false, err
	}
	if kind != crdt.KindNone && kind != k {
		return nil, false, replyError(errWrongType)
	}
	return o, kind == k, nil
}

func (c *call) update(key []byte, op ap.Op) error {
	return c.s.cfg.Store.Update(c.ctx, c.sess.ks, key, op)
}

// checkKind is an Op's first step: WRONGTYPE unless the key is absent or
// of kind k.
func checkKind(o *crdt.Object, w ap.Write, k crdt.Kind) error {
	if kind := o.Kind(w.NowMs); kind != crdt.KindNone && kind != k {
		return replyError(errWrongType)
	}
	return nil
}

func parseInt(b []byte) (int64, error) {
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, replyError(errNotInteger)
	}
	return v, nil
}

func ping(c *call) {
	switch len(c.args) {
	case 1:
		c.w.status("PONG")
	case 2:
		c.w.bulk(c.args[1])
	default:
		c.w.err("ERR wrong number of arguments for 'ping' command")
	}
}

func hello(c *call) {
	proto := c.sess.proto
	args := c.args[1:]
	if len(args) > 0 {
		v, err := strconv.Atoi(string(args[0]))
		if err != nil {
			c.w.err("ERR Protocol version is not an integer or out of range")
			return
		}
		if v != 2 && v != 3 {
			c.w.err("NOPROTO unsupported protocol version")
			return
		}
		proto = v
		args = args[1:]
	}
	for len(args) > 0 {
		switch strings.ToLower(string(args[0])) {
		case "setname":
			if len(args) < 2 {
				c.w.err(errSyntax)
				return
			}
			args = args[2:]
		case "auth":
			c.w.err("ERR AUTH is not supported: Concord's Redis port has no users")
			return
		default:
			c.w.err(errSyntax)
			return
		}
	}
	c.sess.proto = proto
	c.w.proto = proto
	c.w.mapHeader(7)
	c.w.bulkString("server")
	c.w.bulkString("redis")
	c.w.bulkString("version")
	c.w.bulkString(redisVersion)
	c.w.bulkString("proto")
	c.w.int(int64(proto))
	c.w.bulkString("id")
	c.w.int(0)
	c.w.bulkString("mode")
	c.w.bulkString("standalone")
	c.w.bulkString("role")
	c.w.bulkString("master")
	c.w.bulkString("modules")
	c.w.array(0)
}

// redisVersion is the Redis version whose commands Concord follows.
const redisVersion = "7.0.0"

func info(c *call) {
	var b strings.Builder
	b.WriteString("# Server\r\nredis_version:" + redisVersion + "\r\nconcord_version:" + c.s.cfg.Version + "\r\nredis_mode:standalone\r\n")
	b.WriteString("\r\n# Replication\r\nrole:master\r\n")
	b.WriteString("\r\n# Concord\r\nkeyspace_kind:ap\r\n")
	if c.s.cfg.Info != nil {
		b.WriteString(c.s.cfg.Info())
	}
	c.w.verbatim(b.String())
}

func selectDB(c *call) {
	n, err := strconv.Atoi(string(c.args[1]))
	if err != nil {
		c.w.err(errNotInteger)
		return
	}
	if n < 0 || n >= numKeyspaces {
		c.w.err(errDBIndex)
		return
	}
	c.sess.ks = uint32(n)
	c.w.ok()
}

func get(c *call) {
	o, ok, err := c.readKind(c.args[1], crdt.KindString)
	if err != nil {
		c.fail(err)
		return
	}
	if !ok {
		c.w.null()
		return
	}
	v, _ := o.Str.Get()
	c.w.bulk(v)
}

// setOptions are SET's flags.
type setOptions struct {
	nx, xx, keepTTL, get bool
	// expireMs is the TTL in milliseconds (0: none given).
	expireMs int64
}

func parseSet(args [][]byte) (setOptions, error) {
	var o setOptions
	for i := 0; i < len(args); i++ {
		switch strings.ToLower(string(args[i])) {
		case "nx":
			o.nx = true
		case "xx":
			o.xx = true
		case "keepttl":
			o.keepTTL = true
		case "get":
			o.get = true
		case "ex", "px":
			if i+1 >= len(args) || o.expireMs != 0 {
				return o, replyError(errSyntax)
			}
			v, err := parseInt(args[i+1])
			if err != nil {
				return o, err
			}
			if v <= 0 || (strings.EqualFold(string(args[i]), "ex") && v > math.MaxInt64/1000) {
				return o, replyError("ERR invalid expire time in 'set' command")
			}
			if strings.EqualFold(string(args[i]), "ex") {
				v *= 1000
			}
			o.expireMs = v
			i++
		default:
			return o, replyError(errSyntax)
		}
	}
	if (o.nx && o.xx) || (o.keepTTL && o.expireMs != 0) {
		return o, replyError(errSyntax)
	}
	return o, nil
}

// writeString is SET's change: the key becomes the string v.
func writeString(o *crdt.Object, w ap.Write, v []byte, expireMs int64, keepTTL bool) {
	o.ClearOthers(crdt.KindString, w.TS, w.Actor)
	o.Str.Set(w.TS, w.Actor, v)
	o.Touch(crdt.KindString, w.TS, w.Actor)
	switch {
	case expireMs > 0:
		o.SetExpiry(w.TS, w.Actor, w.NowMs+expireMs)
	case !keepTTL:
		o.Persist(w.TS, w.Actor)
	}
}

func set(c *call) {
	opts, err := parseSet(c.args[3:])
	if err != nil {
		c.fail(err)
		return
	}
	var (
		applied bool
		old     []byte
		hadOld  bool
	)
	err = c.update(c.args[1], func(o *crdt.Object, w ap.Write) (bool, error) {
		kind := o.Kind(w.NowMs)
		if opts.get {
			if kind != crdt.KindNone && kind != crdt.KindString {
				return false, replyError(errWrongType)
			}
			if kind == crdt.KindString {
				old, hadOld = o.Str.Get()
			}
		}
		if (opts.nx && kind != crdt.KindNone) || (opts.xx && kind == crdt.KindNone) {
			return false, nil
		}
		writeString(o, w, c.args[2], opts.expireMs, opts.keepTTL)
		applied = true
		return true, nil
	})
	switch {
	case err != nil:
		c.fail(err)
	case opts.get && hadOld:
		c.w.bulk(old)
	case opts.get:
		c.w.null()
	case applied:
		c.w.ok()
	default:
		c.w.null()
	}
}

func mget(c *call) {
	type result struct {
		v  []byte
		ok bool
	}
	out := make([]result, 0, len(c.args)-1)
	for _, k := range c.args[1:] {
		o, kind, err := c.read(k)
		if err != nil {
			c.fail(err)
			return
		}
		var r result
		if kind == crdt.KindString {
			r.v, r.ok = o.Str.Get()
		}
		out = append(out, r)
	}
	c.w.array(len(out))
	for _, r := range out {
		if r.ok {
			c.w.bulk(r.v)
		} else {
			c.w.null()
		}
	}
}

// mset sets each key in turn: each key's write is atomic and replicated,
// the set of them is not (a failure midway leaves the first ones set).
func mset(c *call) {
	if len(c.args)%2 != 1 {
		c.w.err("ERR wrong number of arguments for 'mset' command")
		return
	}
	for i := 1; i < len(c.args); i += 2 {
		v := c.args[i+1]
		err := c.update(c.args[i], func(o *crdt.Object, w ap.Write) (bool, error) {
			writeString(o, w, v, 0, false /* keepTTL */)
			return true, nil
		})
		if err != nil {
			c.fail(err)
			return
		}
	}
	c.w.ok()
}

func del(c *call) {
	var n int64
	for _, k := range c.args[1:] {
		err := c.update(k, func(o *crdt.Object, w ap.Write) (bool, error) {
			if o.Kind(w.NowMs) == crdt.KindNone {
				return false, nil
			}
			o.Delete(w.TS, w.Actor)
			n++
			return true, nil
		})
		if err != nil {
			c.fail(err)
			return
		}
	}
	c.w.int(n)
}

func exists(c *call) {
	var n int64
	for _, k := range c.args[1:] {
		_, kind, err := c.read(k)
		if err != nil {
			c.fail(err)
			return
		}
		if kind != crdt.KindNone {
			n++
		}
	}
	c.w.int(n)
}

func expire(c *call) {
	secs, err := parseInt(c.args[2])
	if err != nil {
		c.fail(err)
		return
	}
	var nx, xx, gt, lt bool
	for _, a := range c.args[3:] {
		switch strings.ToLower(string(a)) {
		case "nx":
			nx = true
		case "xx":
			xx = true
		case "gt":
			gt = true
		case "lt":
			lt = true
		default:
			c.w.err("ERR Unsupported option " + string(a))
			return
		}
	}
	if nx && (xx || gt || lt) {
		c.w.err("ERR NX and XX, GT or LT options at the same time are not compatible")
		return
	}
	if gt && lt {
		c.w.err("ERR GT and LT options at the same time are not compatible")
		return
	}
	if secs > math.MaxInt64/1000 || secs < math.MinInt64/1000 {
		c.w.err("ERR invalid expire time in 'expire' command")
		return
	}
	var done int64
	err = c.update(c.args[1], func(o *crdt.Object, w ap.Write) (bool, error) {
		if o.Kind(w.NowMs) == crdt.KindNone {
			return false, nil
		}
		at := w.NowMs + secs*1000
		cur, has := o.ExpireAt()
		switch {
		case nx && has, xx && !has:
			return false, nil
		case gt && (!has || at <= cur):
			// No expiry counts as infinite: nothing is greater.
			return false, nil
		case lt && has && at >= cur:
			return false, nil
		}
		done = 1
		if secs <= 0 {
			o.Delete(w.TS, w.Actor)
			return true, nil
		}
		o.SetExpiry(w.TS, w.Actor, at)
		return true, nil
	})
	if err != nil {
		c.fail(err)
		return
	}
	c.w.int(done)
}

func ttl(c *call) {
	o, kind, err := c.read(c.args[1])
	if err != nil {
		c.fail(err)
		return
	}
	if kind == crdt.KindNone {
		c.w.int(-2)
		return
	}
	at, ok := o.ExpireAt()
	if !ok {
		c.w.int(-1)
		return
	}
	c.w.int((at - c.s.cfg.Store.NowMs() + 500) / 1000)
}

func persist(c *call) {
	var done int64
	err := c.update(c.args[1], func(o *crdt.Object, w ap.Write) (bool, error) {
		if o.Kind(w.NowMs) == crdt.KindNone {
			return false, nil
		}
		if _, ok := o.ExpireAt(); !ok {
			return false, nil
		}
		o.Persist(w.TS, w.Actor)
		done = 1
		return true, nil
	})
	if err != nil {
		c.fail(err)
		return
	}
	c.w.int(done)
}

func incrByArg(c *call, negate bool) {
	d, err := parseInt(c.args[2])
	if err != nil {
		c.fail(err)
		return
	}
	if negate {
		if d == math.MinInt64 {
			c.w.err("ERR decrement would overflow")
			return
		}
		d = -d
	}
	incrBy(c, d)
}

// strIncrError maps the CRDT's increment errors to Redis's.
func strIncrError(err error, notNumber string) error {
	switch {
	case errors.Is(err, crdt.ErrNotInteger), errors.Is(err, crdt.ErrNotFloat):
		return replyError(notNumber)
	case errors.Is(err, crdt.ErrOverflow):
		return replyError(errOverflow)
	}
	return err
}

func incrBy(c *call, d int64) {
	var v int64
	err := c.update(c.args[1], func(o *crdt.Object, w ap.Write) (bool, error) {
		if err := checkKind(o, w, crdt.KindString); err != nil {
			return false, err
		}
		var err error
		if v, err = o.Str.IncrBy(w.Actor, d); err != nil {
			return false, strIncrError(err, errNotInteger)
		}
		o.Touch(crdt.KindString, w.TS, w.Actor)
		return true, nil
	})
	if err != nil {
		c.fail(err)
		return
	}
	c.w.int(v)
}

func incrByFloat(c *call) {
	d, err := crdt.ParseDecimal(string(c.args[2]))
	if err != nil {
		c.w.err(errNotFloat)
		return
	}
	var v []byte
	err = c.update(c.args[1], func(o *crdt.Object, w ap.Write) (bool, error) {
		if err := checkKind(o, w, crdt.KindString); err != nil {
			return false, err
		}
		var err error
		if v, err = o.Str.IncrByFloat(w.Actor, d); err != nil {
			if errors.Is(err, crdt.ErrOverflow) {
				return false, replyError(errFloatResult)
			}
			return false, strIncrError(err, errNotFloat)
		}
		o.Touch(crdt.KindString, w.TS, w.Actor)
		return true, nil
	})
	if err != nil {
		c.fail(err)
		return
	}
	c.w.bulk(v)
}
