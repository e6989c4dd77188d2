#!/usr/bin/env bash
# Load: SESSIONS concurrent SFTP sessions (the russh client of
# examples/sftp_load.rs) against one gateway with S3 behind it; each logs
# in, lists its home, puts a FILE_BYTES file and gets it back. Reports the
# errors (there must be none), session-time p50/p99 and the gateway's peak
# RSS.
#
#   bench/load.sh                   # moto_server on loopback as the S3 endpoint
#
# Needs: cargo build --release --example sftp_load (and the release
# binary), python3 with boto3, ssh-keygen. Variables: SESSIONS (300),
# FILE_BYTES (4096), AUTH (password; key: a listed ed25519 key;
# certificate: a key signed by a trusted CA, listed nowhere).
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${SESSIONS:-300}
FILE_BYTES=${FILE_BYTES:-4096}
source bench/lib.sh
LOAD=target/release/examples/sftp_load
[ -x "$LOAD" ] || { echo "build first: cargo build --release --example sftp_load" >&2; exit 1; }

AUTH=${AUTH:-password}
PORT=$(free_port)
HASH=$(printf 'load\n' | "$BIN" hash-password)
ssh-keygen -q -t ed25519 -N '' -f "$work/id"
ssh-keygen -q -t ed25519 -N '' -f "$work/ca"
ssh-keygen -q -s "$work/ca" -I load -n load -V +1d "$work/id.pub"
case "$AUTH" in
# (Only what the AUTH needs is written, so that BIN may be an older build.)
password) CREDENTIAL=load; CA=''; KEYS='' ;;
key) CREDENTIAL="key:$work/id"; CA=''; KEYS="authorized_keys = [\"$(cat "$work/id.pub")\"]" ;;
certificate) CREDENTIAL="cert:$work/id"; CA="trusted_user_ca_keys = [\"$work/ca.pub\"]"; KEYS='' ;;
*) echo "AUTH is password, key or certificate" >&2; exit 2 ;;
esac
cat > "$work/gateway.toml" <<EOF
$(crowd_server_toml "$SESSIONS")
[sftp]
listen = "127.0.0.1:$PORT"
$CA
$(s3_remote_toml)
[[users]]
name = "load"
password = "$HASH"
$KEYS
home = "s3:/load"
max_sessions = $((SESSIONS + 100))
EOF
py "s3.put_object(Bucket='$BUCKET', Key='load/load/', Body=b'')"
start_bucketgate "$PORT"
ulimit -n "$(ulimit -Hn)"
echo "$SESSIONS sessions at once, logging in by $AUTH"
"$LOAD" "127.0.0.1:$PORT" load "$CREDENTIAL" "$SESSIONS" "$FILE_BYTES"
echo "gateway peak RSS: $(awk '/VmHWM/ {printf "%d MiB", $2/1024}' /proc/$BG_PID/status)"
