#!/usr/bin/env bash
# Load through a real balancer: HAProxy (TCP, PROXY protocol v2) in front
# of three `bucketgate serve` processes over one S3 bucket, driven by the
# russh client of examples/sftp_load.rs (key login; each session lists,
# puts FILE_BYTES and gets them back).
#
#   1. SESSIONS sessions at once across the three gateways: no errors.
#   2. SESSIONS more, started over RAMP seconds; a third of the way in, one
#      gateway gets SIGTERM. Its sessions end (finish within its shutdown
#      grace, or are closed), it exits 0, new sessions go to the other two
#      (HAProxy's check marks it down; `option redispatch`), none fails to
#      log in, and every object in the bucket is whole: the right size and
#      bytes, and no multipart upload left.
# HAProxy checks each gateway's /healthz for the "draining" state it enters
# at SIGTERM for `shutdown_drain`, while the listener still accepts. Prints the peak
# RSS of each gateway.
#
# CLUSTER=1: the three gateways are one fleet on a local PostgreSQL, and a
# webhook posts every upload to a receiver on loopback. In step 2 gw1 is
# SIGKILLed instead: the sessions it held end, and every upload whose close
# a client saw answered must reach the receiver (the others deliver gw1's
# events from the outbox). Prints the database connections the fleet held.
#
# Needs: cargo build --release --bins --examples, haproxy, python3 with
# boto3 (pip install 'moto[server]'), PostgreSQL for CLUSTER=1. Variables:
# SESSIONS (1000), FILE_BYTES (4096), RAMP (20), CLUSTER (0).
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${SESSIONS:-1000}
FILE_BYTES=${FILE_BYTES:-4096}
RAMP=${RAMP:-20}
CLUSTER=${CLUSTER:-0}
source bench/lib.sh
need haproxy
LOAD=target/release/examples/sftp_load
[ -x "$LOAD" ] || { echo "build first: cargo build --release --examples" >&2; exit 1; }
ulimit -n 20000 2>/dev/null || ulimit -n 8192 2>/dev/null || true

ssh-keygen -q -t ed25519 -N '' -f "$work/id"
fleet() { :; }
if [ "$CLUSTER" = 1 ]; then
    start_postgres
    start_receiver path
    # The fleet's part of gateway N's config.
    fleet() {
        printf '[cluster]\ndatabase = "%s"\nnode = "gw%s"\n' "$PG_URL" "$1"
        printf '[[webhooks]]\nname = "bench"\nurl = "http://127.0.0.1:%s/"\nsecret = "s"\nevents = ["upload"]\n' "$RX_PORT"
    }
fi
ports=() admins=() gw_pids=()
for g in 1 2 3; do
    port=$(free_port)
    admin=$(free_port)
    ports+=("$port")
    admins+=("$admin")
    cat > "$work/gw$g.toml" <<EOF
[server]
keys_dir = "$work/keys"
state_dir = "$work/state$g"
max_sessions = $SESSIONS
shutdown_grace = "10s"
# SIGTERM: /healthz answers 503 for 2 s (four of HAProxy's checks) before
# the listener closes, so no new connection is sent here and refused.
shutdown_drain = "2s"
# The load comes from one address: no per-source cap, no ban.
max_unauthenticated_per_source = 1000000
[security]
ban_threshold = 1000000
[sftp]
listen = "127.0.0.1:$port"
proxy_protocol = "required"
proxy_allowed = ["127.0.0.1/32"]
[admin]
listen = "127.0.0.1:$admin"
$(s3_remote_toml)
# moto refuses connections past a few hundred at once: each gateway keeps
# to 64, and requests queue for them.
max_connections = 64
[[users]]
name = "load"
authorized_keys = ["$(cat "$work/id.pub")"]
home = "s3:/load"
max_sessions = $SESSIONS
$(fleet "$g")
EOF
    # The first start creates the shared host keys; the others reuse them.
    RUST_LOG=${RUST_LOG:-warn} "$BIN" serve --config "$work/gw$g.toml" 2>"$work/gw$g.log" &
    gw_pids+=($!)
    pids+=($!)
    wait_port "$port"
done

LB=$(free_port)
cat > "$work/haproxy.cfg" <<EOF
global
    maxconn 8000
defaults
    mode tcp
    timeout connect 5s
    timeout client 10m
    timeout server 10m
    retries 3
    option redispatch
frontend sftp
    bind 127.0.0.1:$LB
    maxconn 8000
    default_backend gateways
backend gateways
    balance leastconn
    # Out of rotation only while draining: an S3 endpoint too busy to
    # answer a probe (moto under this load) makes /healthz 503 on every
    # gateway alike, and taking them all out would refuse every client.
    option httpchk GET /healthz
    http-check expect ! string draining
    default-server send-proxy-v2 check inter 500ms fall 1 rise 1
    server gw1 127.0.0.1:${ports[0]} port ${admins[0]}
    server gw2 127.0.0.1:${ports[1]} port ${admins[1]}
    server gw3 127.0.0.1:${ports[2]} port ${admins[2]}
EOF
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
pids+=($!)
wait_port "$LB"

peak() { awk '/VmHWM/ {printf "%d MiB", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "(exited)"; }
peaks() {
    for g in 1 2 3; do echo "gw$g peak RSS: $(peak "${gw_pids[$((g - 1))]}")"; done
}

# Each run's files go to a folder of their own; sessions list the home,
# which holds just these folders.
py "for f in ('one', 'two'):
    s3.put_object(Bucket='$BUCKET', Key=f'load/{f}/', Body=b'')"

# events_check ACKED: every upload path in the file ACKED reached the
# receiver (within 2 minutes: a killed node's leases end first).
events_check() {
    [ "$CLUSTER" = 1 ] || return 0
    python3 - "$1" "$work/received" <<'PY'
import sys, time
acked = set(open(sys.argv[1]).read().split())
for _ in range(1200):
    got = set(open(sys.argv[2]).read().split())
    missing = acked - got
    if not missing:
        break
    time.sleep(0.1)
print(f"events: {len(acked)} acknowledged uploads, {len(acked & got)} of their events delivered, {len(missing)} missing; {sum(1 for _ in open(sys.argv[2]))} deliveries in all")
sys.exit(1 if missing else 0)
PY
}
connections() {
    [ "$CLUSTER" = 1 ] || return 0
    echo "database connections held by the fleet: $(pg_sql "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'bucketgate%'")"
}

echo "== 1. $SESSIONS sessions at once through HAProxy"
LOAD_PREFIX=one LOAD_ACKED="$work/one.acked" "$LOAD" "127.0.0.1:$LB" load "key:$work/id" "$SESSIONS" "$FILE_BYTES"
peaks
connections
events_check "$work/one.acked"

signal=TERM
[ "$CLUSTER" = 1 ] && signal=KILL
echo "== 2. $SESSIONS sessions over ${RAMP}s; gw1 gets SIG$signal after $((RAMP / 3))s"
LOAD_PREFIX=two LOAD_RAMP=$RAMP LOAD_TOLERATE_ENDED=1 LOAD_ACKED="$work/two.acked" \
    "$LOAD" "127.0.0.1:$LB" load "key:$work/id" "$SESSIONS" "$FILE_BYTES" > "$work/two.out" &
load_pid=$!
sleep $((RAMP / 3))
echo "gw1 peak RSS before it stops: $(peak "${gw_pids[0]}")"
kill -"$signal" "${gw_pids[0]}"
status=0
wait "${gw_pids[0]}" || status=$?
echo "gw1 exited with $status"
load_status=0
wait "$load_pid" || load_status=$?
cat "$work/two.out"
peaks
connections
if [ "$signal" = TERM ]; then
    [ "$status" = 0 ] || { echo "FAIL: gw1 did not exit cleanly" >&2; exit 1; }
    [ "$load_status" = 0 ] || { echo "FAIL: sessions failed (not ended by the shutdown)" >&2; exit 1; }
else
    echo "(sessions in the middle of a step at gw1 when it was killed fail: that is a crash)"
fi
events_check "$work/two.acked" || { echo "FAIL: events lost" >&2; exit 1; }

echo "== bucket check"
py "
import sys
bad, n = [], 0
for page in s3.get_paginator('list_objects_v2').paginate(Bucket='$BUCKET', Prefix='load/'):
    for o in page.get('Contents', []):
        name = '/' + o['Key'][len('load/'):]
        if name.endswith('/'):
            continue
        n += 1
        body = s3.get_object(Bucket='$BUCKET', Key=o['Key'])['Body'].read()
        want = (name.encode() * ($FILE_BYTES // len(name) + 1))[:$FILE_BYTES]
        if body != want:
            bad.append(name)
ups = s3.list_multipart_uploads(Bucket='$BUCKET').get('Uploads', [])
print(f'{n} objects, {len(bad)} not whole, {len(ups)} multipart uploads left')
sys.exit(1 if bad or ups else 0)
"
echo "OK"
