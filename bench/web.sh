#!/usr/bin/env bash
# Web frontend benchmark: a SIZE_MIB file uploaded over tus in 8 MiB
# PATCHes (curl, one request per piece, as a browser's uploader sends
# them) and downloaded with a plain GET, against OpenSSH `sftp` put/get on
# the same gateway and bucket. Rounds are interleaved; medians with
# ratios. Then the gateway's peak RSS while Chromium uploads a BIG_MIB file
# through the page (needs chromium and playwright; BROWSER=0 skips it).
#
#   bench/web.sh                     # moto_server on loopback
#   GARAGE=path/to/garage bench/web.sh
#
# Variables: ROUNDS (3), SIZE_MIB (256), BIG_MIB (1024), BROWSER (1).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SIZE_MIB=${SIZE_MIB:-256}
BIG_MIB=${BIG_MIB:-1024}
source bench/lib.sh
need curl sftp ssh-keygen python3

head -c "$((SIZE_MIB << 20))" /dev/urandom > "$work/big.bin"
ssh-keygen -q -t ed25519 -N '' -f "$work/id"
SFTP_PORT=$(free_port) WEB_PORT=$(free_port)
HASH=$(printf 'bench\n' | "$BIN" hash-password)
cat > "$work/gateway.toml" <<TOML
[server]
keys_dir = "$work/bg-keys"
state_dir = "$work/bg-state"
[sftp]
listen = "127.0.0.1:$SFTP_PORT"
[web]
listen = "127.0.0.1:$WEB_PORT"
$(s3_remote_toml)
[[users]]
name = "bench"
password = "$HASH"
authorized_keys = ["$(cat "$work/id.pub")"]
home = "s3:/bench"
TOML
start_bucketgate "$SFTP_PORT"
wait_port "$WEB_PORT"
BASE_URL="http://127.0.0.1:$WEB_PORT"

# A web login: the cookie in $work/cookies, the CSRF token in $CSRF.
CSRF=$(curl -sf -c "$work/cookies" -H 'content-type: application/json' \
    -d '{"user":"bench","password":"bench"}' "$BASE_URL/api/login" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["csrf"])')

# tus_put FILE NAME: creation, then 8 MiB PATCHes until the last byte.
tus_put() {
    local size at offset=0 piece=$((8 << 20))
    size=$(stat -c %s "$1")
    at=$(curl -sf -b "$work/cookies" -X POST -H 'tus-resumable: 1.0.0' -H "x-csrf-token: $CSRF" \
        -H "upload-length: $size" \
        -H "upload-metadata: filename $(printf '%s' "$2" | base64 -w0),folder $(printf / | base64)" \
        -D - -o /dev/null "$BASE_URL/tus/" | awk 'tolower($1) == "location:" {print $2}' | tr -d '\r')
    while [ "$offset" -lt "$size" ]; do
        dd if="$1" iflag=skip_bytes,count_bytes skip="$offset" count="$piece" bs=1M status=none | curl -sf -b "$work/cookies" -X PATCH \
            -H 'tus-resumable: 1.0.0' -H "x-csrf-token: $CSRF" -H "upload-offset: $offset" \
            -H 'content-type: application/offset+octet-stream' --data-binary @- -o /dev/null "$BASE_URL$at"
        offset=$((offset + piece < size ? offset + piece : size))
    done
}
web_get() { curl -sf -b "$work/cookies" -o "$work/got-web.bin" "$BASE_URL/api/download?path=/$1"; }
sftp_put() { sftp_batch "$SFTP_PORT" bench "put $work/big.bin /$1"; }
sftp_get() { sftp_batch "$SFTP_PORT" bench "get /$1 $work/got-sftp.bin"; }

times="$work/times"
for round in $(seq 1 "$ROUNDS"); do
    timed "$times" web upload tus_put "$work/big.bin" "web-$round.bin"
    timed "$times" sftp upload sftp_put "sftp-$round.bin"
    timed "$times" web download web_get "web-$round.bin"
    timed "$times" sftp download sftp_get "sftp-$round.bin"
    cmp -s "$work/big.bin" "$work/got-web.bin" || { echo "the web download differs" >&2; exit 1; }
    cmp -s "$work/big.bin" "$work/got-sftp.bin" || { echo "the sftp download differs" >&2; exit 1; }
done
echo "== $SIZE_MIB MiB through one gateway: the web client (tus in 8 MiB PATCHes, a GET) and OpenSSH sftp"
BASE=web medians "$times" web sftp

# The gateway's peak resident memory while Chromium uploads BIG_MIB through the page.
if [ "${BROWSER:-1}" != 0 ] && command -v chromium >/dev/null && python3 -c 'import playwright' 2>/dev/null; then
    head -c "$((BIG_MIB << 20))" /dev/urandom > "$work/huge.bin"
    idle=$(awk '/VmRSS/ {print $2}' "/proc/$BG_PID/status")
    echo "$idle" > "$work/peak"
    ( peak=0; while kill -0 "$BG_PID" 2>/dev/null; do
        rss=$(awk '/VmRSS/ {print $2}' "/proc/$BG_PID/status" 2>/dev/null || echo 0)
        if [ "${rss:-0}" -gt "$peak" ]; then peak=$rss; echo "$peak" > "$work/peak"; fi
        sleep 0.1
      done ) &
    pids+=($!)
    t0=$(seconds)
    python3 bench/web_upload.py "$BASE_URL/" "$work/huge.bin"
    t1=$(seconds)
    budget=$(python3 -c "import os; print(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 4 >> 20)")
    echo "== a $BIG_MIB MiB upload in Chromium through the page: $(elapsed "$t0" "$t1") s;" \
        "gateway RSS idle $((idle >> 10)) MiB, peak $(( $(cat "$work/peak") >> 10 )) MiB (memory_budget auto: $budget MiB)"
fi
