#!/bin/bash
# Two pop3d release binaries side by side: A as it is, B with [metrics] listen set and
# /metrics scraped every second; alternating rounds of pop3-load login and retr.
#   benches/scripts/metrics-cost.sh OLD/pop3d NEW/pop3d target/release/pop3-load [ROUNDS]
# (docs/performance.md, "Metrics recording").
set -e
A=$1
B=$2
LOAD=$3
ROUNDS=${4:-5}
D=$(mktemp -d /tmp/pop3-metrics-cost.XXXXXX)
trap 'rm -rf "$D"' EXIT
mkdir -p $D/data
: > $D/data/users
for u in 0 1 2 3 4 5 6 7; do echo "user$u:{PLAIN}secret" >> $D/data/users; done
cat > $D/base.toml <<EOT
[server]
listen = ["127.0.0.1:21110"]
listen_tls = []
[users]
file = "$D/data/users"
[mail]
location = "$D/data/mail/%u"
[auth]
secret_file = "$D/data/secret"
[limits]
max_connections_per_user_ip = 1000
EOT
cp $D/base.toml $D/a.toml
{ cat $D/base.toml; printf '[metrics]\nlisten = "127.0.0.1:21910"\n'; } > $D/b.toml
if [ ! -d $D/data/mail ]; then
  body=$(head -c 20000 /dev/urandom | base64 -w 76)
  for u in 0 1 2 3 4 5 6 7; do for m in $(seq 1 20); do
    printf 'Subject: m%s\n\n%s\n' "$m" "$body" | $B --config $D/a.toml deliver user$u
  done; done
fi
run() { # name binary config mode args...
  local name=$1 bin=$2 cfg=$3; shift 3
  $bin --config $cfg serve >/dev/null 2>&1 & local pid=$!
  for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/21110) 2>/dev/null && break; sleep 0.1; done
  local scraper=""
  if [ $name = B ]; then ( while sleep 1; do curl -s http://127.0.0.1:21910/metrics >/dev/null; done ) & scraper=$!; fi
  $LOAD --target 127.0.0.1:21110 --pid $pid --json "$@" | tail -1 | python3 -c "import sys,json; r=json.load(sys.stdin); print('$name', r['mode'], round(r['rate'],1), r['unit'], 'cpu/unit', r['cpu_per_unit'], r['cpu_unit'], 'errors', r['errors'])"
  [ -n "$scraper" ] && kill $scraper
  kill $pid; wait $pid 2>/dev/null || true
}
for round in $(seq $ROUNDS); do
  for who in A B; do
    if [ $who = A ]; then bin=$A; cfg=$D/a.toml; else bin=$B; cfg=$D/b.toml; fi
    run $who $bin $cfg --mode login -c 8 -d 5s -w 1s
    run $who $bin $cfg --mode retr -c 4 -d 5s -w 1s
  done
done
