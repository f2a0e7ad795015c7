#!/bin/bash
# The AP keyspaces table of BENCHMARKS.md: redis-benchmark against node 1 of
# a concord demo and against redis-server with and without appendfsync
# always, on the same machine. Needs redis-server and redis-tools.
set -u
cd "$(dirname "$0")/../.." && go build -o /tmp/concord ./cmd/concord || exit 1
bench() { # name port
  for P in 1 16; do
    redis-benchmark -h 127.0.0.1 -p $2 -t set,get,incr -n 20000 -c 50 -r 100000 -P $P -q 2>&1 | tr '\r' '\n' | grep "requests per second" | sed "s/^/$1 P$P /"
  done
  echo "$1 load: $(cut -d' ' -f1 /proc/loadavg)"
}
rm -rf /tmp/apbench; mkdir -p /tmp/apbench
/tmp/concord demo --base-port 0 --data-dir /tmp/apbench/c --log-level error > /tmp/apbench/demo.out 2>&1 &
DEMO=$!
for i in $(seq 50); do grep -q "node n3" /tmp/apbench/demo.out && break; sleep 0.2; done
sleep 3
RP=$(grep "node n1" /tmp/apbench/demo.out | sed 's/.*redis 127.0.0.1://')
bench "concord(3 nodes,W=2)" $RP
kill -INT $DEMO; wait $DEMO
redis-server --port 16379 --save "" --appendonly no --dir /tmp/apbench > /dev/null 2>&1 &
R1=$!; sleep 0.5
bench "redis(no persistence)" 16379
kill $R1; wait $R1
redis-server --port 16380 --save "" --appendonly yes --appendfsync always --dir /tmp/apbench > /dev/null 2>&1 &
R2=$!; sleep 0.5
bench "redis(appendfsync always)" 16380
kill $R2; wait $R2
