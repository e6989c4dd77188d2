#!/usr/bin/env bash
# Webhook cost: FILES small files (4 KiB) put over SFTP (OpenSSH `sftp`, one
# session, `put -r`) by a user whose uploads a webhook posts, and by one no
# webhook names, on the same gateway and bucket, rounds interleaved. A
# receiver on loopback (Python's ThreadingHTTPServer, answering 200) counts
# the events; each round must deliver one per file.
#
#   bench/events.sh               # moto_server on loopback as the S3 endpoint
#   CLUSTER=1 bench/events.sh     # and a second gateway, clustered on a local
#                                 # PostgreSQL: its events go to the outbox
#
# Needs: a release build (cargo build --release), OpenSSH sftp, python3
# with boto3 (pip install 'moto[server]'), and for CLUSTER=1 PostgreSQL
# (apt-get install postgresql). Variables: ROUNDS (3), FILES (1000),
# SESSIONS (1: one client uploading file after file; more split the files
# between that many sessions at once, where events share spool syncs or
# outbox commits), CLUSTER (0).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
FILES=${FILES:-1000}
SESSIONS=${SESSIONS:-1}
CLUSTER=${CLUSTER:-0}
source bench/lib.sh
need sftp ssh-keygen python3

for i in $(seq -w 1 "$FILES"); do
    part=$((10#$i % SESSIONS))
    mkdir -p "$work/in/s$part"
    head -c 4096 /dev/urandom > "$work/in/s$part/f$i"
done
ssh-keygen -q -t ed25519 -N '' -f "$work/id"

start_receiver id

BG_PORT=$(free_port)
ADMIN_PORT=$(free_port)
cat > "$work/gateway.toml" <<EOF
[server]
keys_dir = "$work/bg-keys"
state_dir = "$work/bg-state"
[sftp]
listen = "127.0.0.1:$BG_PORT"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
$(s3_remote_toml)
[[users]]
name = "hooked"
authorized_keys = ["$(cat "$work/id.pub")"]
home = "s3:/hooked"
[[users]]
name = "plain"
authorized_keys = ["$(cat "$work/id.pub")"]
home = "s3:/plain"
[[webhooks]]
name = "bench"
url = "http://127.0.0.1:$RX_PORT/"
secret = "bench-secret"
users = ["hooked"]
EOF
start_bucketgate "$BG_PORT"
targets=(bucketgate bucketgate-nohook)

# CLUSTER=1: the same gateway with [cluster], on its own ports; its user
# `clustered` is the one its webhook names.
if [ "$CLUSTER" = 1 ]; then
    start_postgres
    CL_PORT=$(free_port)
    CL_ADMIN=$(free_port)
    sed -e "s/127.0.0.1:$BG_PORT/127.0.0.1:$CL_PORT/" -e "s/127.0.0.1:$ADMIN_PORT/127.0.0.1:$CL_ADMIN/" \
        -e "s|bg-state|cl-state|" -e 's/"hooked"/"clustered"/' -e 's|s3:/hooked|s3:/clustered|' \
        "$work/gateway.toml" > "$work/cluster.toml"
    printf '[cluster]\ndatabase = "%s"\nnode = "bench"\n' "$PG_URL" >> "$work/cluster.toml"
    RUST_LOG=info "$BIN" serve --config "$work/cluster.toml" 2>"$work/cluster.log" &
    pids+=($!)
    wait_port "$CL_PORT"
    for _ in $(seq 1 100); do grep -q "joined the cluster" "$work/cluster.log" && break; sleep 0.1; done
    grep -q "joined the cluster" "$work/cluster.log" || { echo "the clustered gateway did not join" >&2; exit 1; }
    targets+=(bucketgate-cluster)
fi

# SESSIONS sessions at once, each putting its share of the files.
put_all() { # port, user, round
    local p sessions=()
    for p in $(seq 0 $((SESSIONS - 1))); do
        sftp_batch "$1" "$2" "mkdir r$3-$p
put -r in/s$p/* r$3-$p/" &
        sessions+=($!)
    done
    for p in "${sessions[@]}"; do wait "$p"; done
}
# The port and user of each target in the table: bucketgate (webhook
# on), bucketgate-nohook, bucketgate-cluster (webhook on, outbox).
target_user() {
    case $1 in
        bucketgate) echo "$BG_PORT hooked" ;;
        bucketgate-nohook) echo "$BG_PORT plain" ;;
        bucketgate-cluster) echo "$CL_PORT clustered" ;;
    esac
}

: > "$work/times"
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    for t in "${targets[@]}"; do
        # shellcheck disable=SC2046 # port and user: two words
        timed "$work/times" "$t" "put_${FILES}_small" put_all $(target_user "$t") "$round"
    done
    # Every upload of a hooked user is one event, delivered.
    want=$((round * FILES * (1 + CLUSTER)))
    for _ in $(seq 1 600); do
        [ "$(sort -u "$work/received" | wc -l)" -ge "$want" ] && break
        sleep 0.1
    done
    got=$(sort -u "$work/received" | wc -l)
    [ "$got" -eq "$want" ] || { echo "round $round: $got of $want events delivered" >&2; exit 1; }
done

medians "$work/times" "${targets[@]}"
echo "events delivered: $(wc -l < "$work/received") ($(sort -u "$work/received" | wc -l) distinct) for $((ROUNDS * FILES * (1 + CLUSTER))) hooked uploads in $SESSIONS session(s) at once"
echo "spool syncs: $(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^bucketgate_event_spool_syncs_total/ {print $2}')"
