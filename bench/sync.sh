#!/usr/bin/env bash
# Sync benchmark: `bucketgate sync run` against `rclone copy`, the peer
# operators reach for, between a local folder and S3:
#   push-big    one SIZE_MIB file, local -> S3
#   pull-big    the same file back, S3 -> local
#   push-small  FILES files of 4 KiB in 10 folders, local -> S3
#   push-again  the same again with nothing changed (list, compare, copy nothing)
# Each round uses fresh prefixes; rounds are interleaved and the medians
# are reported with ratios, with bucketgate's peak RSS.
#
#   bench/sync.sh                  # moto_server on loopback as the S3 endpoint
#   S3_ENDPOINT=http://127.0.0.1:9000 S3_KEY=... S3_SECRET=... bench/sync.sh
#
# Needs: a release build (cargo build --release), rclone, python3 with
# boto3 (pip install 'moto[server]'). Variables: ROUNDS (3), SIZE_MIB (256), FILES (500).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SIZE_MIB=${SIZE_MIB:-256}
FILES=${FILES:-500}
source bench/lib.sh
need rclone python3

mkdir -p "$work/big" "$work/small"
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$work/big/big.bin"
for i in $(seq 1 "$FILES"); do
    d="$work/small/d$((i % 10))"
    mkdir -p "$d"
    head -c 4096 /dev/urandom > "$d/f$i.txt"
done

# config ROUND: jobs up-big, down-big, up-small on prefixes of that round.
config() {
    cat > "$work/gateway.toml" <<EOF
[server]
keys_dir = "$work/bg-keys"
state_dir = "$work/bg-state-$1"
[remotes.local]
kind = "filesystem"
root = "$work"
$(s3_remote_toml)
[[syncs]]
name = "up-big"
local = "local:/big"
remote = "s3:/bg-$1/big"
direction = "push"
[[syncs]]
name = "down-big"
local = "local:/bg-down-$1"
remote = "s3:/bg-$1/big"
direction = "pull"
[[syncs]]
name = "up-small"
local = "local:/small"
remote = "s3:/bg-$1/small"
direction = "push"
EOF
}

# bg JOB: one sync run; its peak RSS (KiB) is appended to rss.txt.
cat > "$work/rss.py" <<'EOF'
import resource, subprocess, sys
code = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL).returncode
with open(sys.argv[1], "a") as f:
    f.write(f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\n")
sys.exit(code)
EOF
bg() {
    RUST_LOG=warn python3 "$work/rss.py" "$work/rss.txt" "$BIN" sync run "$1" --config "$work/gateway.toml"
}

times="$work/times.txt"
for r in $(seq 1 "$ROUNDS"); do
    config "$r"
    timed "$times" bucketgate push-big bg up-big
    timed "$times" rclone push-big rclone_s3 copy "$work/big" ":s3:$BUCKET/rc-$r/big"
    timed "$times" bucketgate pull-big bg down-big
    timed "$times" rclone pull-big rclone_s3 copy ":s3:$BUCKET/rc-$r/big" "$work/rc-down-$r"
    cmp "$work/big/big.bin" "$work/bg-down-$r/big.bin"
    timed "$times" bucketgate push-small bg up-small
    timed "$times" rclone push-small rclone_s3 copy "$work/small" ":s3:$BUCKET/rc-$r/small"
    timed "$times" bucketgate push-again bg up-small
    timed "$times" rclone push-again rclone_s3 copy "$work/small" ":s3:$BUCKET/rc-$r/small"
    rm -rf "$work/bg-down-$r" "$work/rc-down-$r"
done
echo "sync: one ${SIZE_MIB} MiB file, ${FILES} x 4 KiB files, endpoint $S3_ENDPOINT"
medians "$times" bucketgate rclone
echo "bucketgate peak RSS over all runs: $(( $(sort -n "$work/rss.txt" | tail -1) / 1024 )) MiB"
