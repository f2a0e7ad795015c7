package resp

import (
	"strings"

	"github.com/concorddb/concord/internal/ap/crdt"
)

// CONCORD is the container of Concord's own commands, apart from Redis's
// names:
//
//	CONCORD REPLICA key
//
// answers what THIS node holds of key in the selected keyspace, not
// merged with any other node's (every other command reads a quorum): a
// map of node (this node's id), preferred (1 if this node is in the key's
// preference list as it sees the membership, else 0), type (as TYPE
// answers), value (as GET, SMEMBERS or HGETALL would, nil for none) and
// hints (how many states this node holds under key for other nodes, not
// yet handed off). Asking every node shows whether the replicas of a key
// agree: the fault-injection harness's AP check does (internal/chaos).
func concord(c *call) {
	switch sub := strings.ToLower(string(c.args[1])); {
	case sub == "replica" && len(c.args) == 3:
		replica(c)
	case sub == "replica":
		c.w.err("ERR wrong number of arguments for 'concord|replica' command")
	default:
		c.w.err("ERR unknown subcommand '" + truncate(string(c.args[1]), 128) + "'. Try CONCORD REPLICA key.")
	}
}

func replica(c *call) {
	r, err := c.s.cfg.Store.Replica(c.sess.ks, c.args[2])
	if err != nil {
		c.fail(err)
		return
	}
	o := r.Object
	kind := o.Kind(c.s.cfg.Store.NowMs())
	c.w.mapHeader(5)
	c.w.bulkString("node")
	c.w.int(int64(r.Node))
	c.w.bulkString("preferred")
	c.w.int(map[bool]int64{false: 0, true: 1}[r.Preferred])
	c.w.bulkString("type")
	c.w.bulkString(kind.String())
	c.w.bulkString("value")
	switch kind {
	case crdt.KindString:
		v, _ := o.Str.Get()
		c.w.bulk(v)
	case crdt.KindSet:
		ms := o.Set.Members()
		c.w.setHeader(len(ms))
		for _, m := range ms {
			c.w.bulkString(m)
		}
	case crdt.KindHash:
		fields := o.Hash.Fields()
		c.w.mapHeader(len(fields))
		for _, f := range fields {
			v, _ := o.Hash.Get(f)
			c.w.bulkString(f)
			c.w.bulk(v)
		}
	default:
		c.w.null()
	}
	c.w.bulkString("hints")
	c.w.int(int64(r.Hints))
}
