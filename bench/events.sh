#!/usr/bin/env bash
# Webhook cost: FILES small files (4 KiB) put over SFTP (OpenSSH `sftp`, one
# session, `put -r`) by a user whose uploads a webhook posts, and by one no
# webhook names, on the same gateway and bucket, rounds interleaved. A
# receiver on loopback (Python's ThreadingHTTPServer, answering 200) counts
# the events; each round must deliver one per file.
#
#   bench/events.sh               # moto_server on loopback as the S3 endpoint
#
# Needs: a release build (cargo build --release), OpenSSH sftp, python3
# with boto3 (pip install 'moto[server]'). Variables: ROUNDS (3), FILES (1000),
# SESSIONS (1: one client uploading file after file; more split the files
# between that many sessions at once, where events share spool syncs).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
FILES=${FILES:-1000}
SESSIONS=${SESSIONS:-1}
source bench/lib.sh
need sftp ssh-keygen python3

for i in $(seq -w 1 "$FILES"); do
    part=$((10#$i % SESSIONS))
    mkdir -p "$work/in/s$part"
    head -c 4096 /dev/urandom > "$work/in/s$part/f$i"
done
ssh-keygen -q -t ed25519 -N '' -f "$work/id"

# The receiver: appends each event's id to a file, answers 200.
RX_PORT=$(free_port)
cat > "$work/receiver.py" <<EOF
import http.server, json, threading
lock = threading.Lock()
out = open("$work/received", "a")
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a production receiver would
    def do_POST(self):
        body = self.rfile.read(int(self.headers['Content-Length']))
        with lock:
            out.write(json.loads(body)['id'] + '\n'); out.flush()
        self.send_response(200); self.send_header('Content-Length', '0'); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(('127.0.0.1', $RX_PORT), H).serve_forever()
EOF
: > "$work/received"
# At the lowest CPU priority: a receiver runs on its own host in real use;
# here it would take the gateway's cores.
nice -n 19 python3 "$work/receiver.py" &
pids+=($!)
wait_port "$RX_PORT"

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

sftp_run() { sftp_batch "$BG_PORT" "$1" "$2"; } # user, batch text
# SESSIONS sessions at once, each putting its share of the files.
put_all() { # user, round
    local p sessions=()
    for p in $(seq 0 $((SESSIONS - 1))); do
        sftp_run "$1" "mkdir r$2-$p
put -r in/s$p/* r$2-$p/" &
        sessions+=($!)
    done
    for p in "${sessions[@]}"; do wait "$p"; done
}
# Names bucketgate (webhook on) and bucketgate-nohook for the table.
target_user() { case $1 in bucketgate) echo hooked ;; bucketgate-nohook) echo plain ;; esac; }

: > "$work/times"
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    for t in bucketgate bucketgate-nohook; do
        timed "$work/times" "$t" "put_${FILES}_small" put_all "$(target_user "$t")" "$round"
    done
    # Every upload of the hooked user is one event, delivered.
    want=$((round * FILES))
    for _ in $(seq 1 600); do
        [ "$(sort -u "$work/received" | wc -l)" -ge "$want" ] && break
        sleep 0.1
    done
    got=$(sort -u "$work/received" | wc -l)
    [ "$got" -eq "$want" ] || { echo "round $round: $got of $want events delivered" >&2; exit 1; }
done

medians "$work/times" bucketgate bucketgate-nohook
echo "events delivered: $(wc -l < "$work/received") ($(sort -u "$work/received" | wc -l) distinct) for $((ROUNDS * FILES)) uploads in $SESSIONS session(s) at once"
echo "spool syncs: $(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^bucketgate_event_spool_syncs_total/ {print $2}')"
