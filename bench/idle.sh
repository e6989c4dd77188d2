#!/usr/bin/env bash
# Idle sessions: SESSIONS (10000) SFTP sessions logged in at once with a
# key (examples/sftp_load.rs, LOAD_HOLD=1), each with its SFTP channel
# open and its home listed once, then left idle. Reports the login rate,
# the errors (there must be none) and the gateway's resident memory per
# held session above its memory after one warm-up session: as the last
# session logs in, and 5 s later with all of them idle.
#
#   GARAGE=path/to/garage bench/idle.sh
#
# Needs: cargo build --release --bins --examples, ssh-keygen, and a file
# descriptor hard limit above SESSIONS + 1000 (the script raises the soft one
# to it). Variables: SESSIONS (10000), LOAD_RAMP (0: all at once).
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${SESSIONS:-10000}
source bench/lib.sh
LOAD=target/release/examples/sftp_load
[ -x "$LOAD" ] || { echo "build first: cargo build --release --example sftp_load" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

PORT=$(free_port)
ssh-keygen -q -t ed25519 -N '' -f "$work/id"
cat > "$work/gateway.toml" <<EOF
$(crowd_server_toml "$SESSIONS")
[sftp]
listen = "127.0.0.1:$PORT"
$(s3_remote_toml)
[[users]]
name = "idle"
authorized_keys = ["$(cat "$work/id.pub")"]
home = "s3:/idle"
max_sessions = $((SESSIONS + 100))
EOF
py "s3.put_object(Bucket='$BUCKET', Key='idle/a.txt', Body=b'a')"
start_bucketgate "$PORT"
rss() { awk '/VmRSS/ {print $2}' "/proc/$BG_PID/status"; }
# One session first: what every session shares (the remote's client, the
# user's record, code paged in) is not counted per session.
echo | LOAD_HOLD=1 "$LOAD" "127.0.0.1:$PORT" idle "key:$work/id" 1 >/dev/null
base=$(rss)
coproc HOLD { LOAD_HOLD=1 "$LOAD" "127.0.0.1:$PORT" idle "key:$work/id" "$SESSIONS"; }
hold_pid=$HOLD_PID
read -r held <&"${HOLD[0]}"
echo "$held"
burst=$(rss)
# The logins' own garbage (key exchanges, the listings' S3 connections past
# the pool's idle limit) is given back within jemalloc's decay time (1 s).
sleep 5
now=$(rss)
per() { echo "$(( ($1 - base) / SESSIONS )) KiB per session"; }
echo "gateway RSS: $((base / 1024)) MiB after one session;" \
    "$((burst / 1024)) MiB as the last logged in ($(per "$burst"));" \
    "$((now / 1024)) MiB holding them idle ($(per "$now"))"
echo >&"${HOLD[1]}"
cat <&"${HOLD[0]}"
wait "$hold_pid"
