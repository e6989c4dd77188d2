#!/usr/bin/env bash
# A folder of many subfolders listed over FTP (curl, LIST) and SFTP
# (OpenSSH sftp, `ls -1`), at two sizes: SMALL (5 000) and LARGE (20 000)
# subfolders, S3 paging them 1000 at a time. A listing is streamed page by
# page and each subfolder costs the same, so the time should grow with the
# size (LARGE/SMALL about 4, not 16) and the gateway's peak RSS should not.
#
#   bench/listing.sh                      # moto_server on loopback
#   BIN=target/debug/bucketgate bench/listing.sh
#
# Variables: ROUNDS (3), SMALL (5000), LARGE (20000).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SMALL=${SMALL:-5000}
LARGE=${LARGE:-20000}
source bench/lib.sh
need curl sftp ssh-keygen python3

echo "creating $SMALL + $LARGE folder markers..." >&2
py "import concurrent.futures
keys = ['bench/', 'bench/small/', 'bench/large/']
keys += ['bench/small/d%06d/' % i for i in range($SMALL)]
keys += ['bench/large/d%06d/' % i for i in range($LARGE)]
put = lambda k: s3.put_object(Bucket='$BUCKET', Key=k, Body=b'')
with concurrent.futures.ThreadPoolExecutor(16) as ex: list(ex.map(put, keys))"

ssh-keygen -q -t ed25519 -N '' -f "$work/id"
HASH=$(printf 'bench\n' | "$BIN" hash-password)
SFTP_PORT=$(free_port) FTP_PORT=$(free_port)
cat > "$work/gateway.toml" <<EOF
[server]
keys_dir = "$work/bg-keys"
state_dir = "$work/bg-state"
[sftp]
listen = "127.0.0.1:$SFTP_PORT"
[ftp]
listen = "127.0.0.1:$FTP_PORT"
passive_ports = "41000-41099"
$(s3_remote_toml)
prefetch_window = "0s"
[[users]]
name = "bench"
password = "$HASH"
authorized_keys = ["$(cat "$work/id.pub")"]
home = "s3:/bench"
EOF
start_bucketgate "$FTP_PORT"
wait_port "$SFTP_PORT"

rss_peak() { awk '/VmHWM/ {print $2}' "/proc/$BG_PID/status"; }
times="$work/times"
: > "$times"
for round in $(seq 1 "$ROUNDS"); do
    for size in small large; do
        timed "$times" ftp "$size" curl -s -u bench:bench "ftp://127.0.0.1:$FTP_PORT/$size/"
        timed "$times" sftp "$size" sftp_batch "$SFTP_PORT" bench "ls -1 /$size"
        echo "round $round $size: peak RSS $(rss_peak) KiB" >&2
    done
done
count=$(curl -s -u bench:bench "ftp://127.0.0.1:$FTP_PORT/large/" | wc -l)
[ "$count" = "$LARGE" ] || { echo "LIST of large gave $count lines, not $LARGE" >&2; exit 1; }
python3 - "$times" "$SMALL" "$LARGE" <<'PY'
import sys, statistics, collections
times = collections.defaultdict(list)
for line in open(sys.argv[1]):
    proto, size, s = line.split()
    times[(proto, size)].append(float(s))
small, large = int(sys.argv[2]), int(sys.argv[3])
for proto in ("ftp", "sftp"):
    a, b = statistics.median(times[(proto, "small")]), statistics.median(times[(proto, "large")])
    print(f"{proto:<5} {small} folders {a:7.2f}s   {large} folders {b:7.2f}s   ratio {b / a:5.2f} (sizes {large / small:.0f}x)")
PY
echo "gateway peak RSS: $(rss_peak) KiB" >&2
