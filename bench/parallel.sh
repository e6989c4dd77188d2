#!/usr/bin/env bash
# Parallel streams: STREAMS (8) OpenSSH `sftp` clients at once, each putting
# a SIZE_MIB (256) file, then each getting its file back; the aggregate
# MiB/s of each phase through bucketgate and `rclone serve sftp` over the
# same S3 endpoint, against raw S3 with the same parallelism (STREAMS
# boto3 transfers at once, each its own multipart). Rounds interleaved;
# medians, the server's CPU seconds per GiB, and every process's CPU (the
# clients', the server's, the store's); every file read back is compared
# with what was put.
#
#   GARAGE=path/to/garage bench/parallel.sh   # what the README's figures use
#
# Needs: a release build, OpenSSH sftp, rclone, python3 with boto3.
# Variables: ROUNDS (3), STREAMS (8), SIZE_MIB (256), TARGETS
# ("bucketgate rclone").
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
STREAMS=${STREAMS:-8}
SIZE_MIB=${SIZE_MIB:-256}
source bench/lib.sh
need sftp rclone python3

mkdir -p "$work/out"
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$work/f.bin"
ssh-keygen -q -t ed25519 -N '' -f "$work/id"

start_sftp_gateway
targets=(${TARGETS:-bucketgate rclone})
if [[ " ${targets[*]} " == *" rclone "* ]]; then
    start_rclone_sftp
    py "s3.put_object(Bucket='$BUCKET', Key='rclone/.keep', Body=b'')"
fi
port_of() { case $1 in bucketgate) echo "$BG_PORT" ;; rclone) echo "$RC_PORT" ;; esac; }
pid_of() { case $1 in bucketgate) echo "$BG_PID" ;; rclone) echo "$RC_PID" ;; esac; }

# all_at_once TARGET OP: STREAMS sftp clients putting (or getting) at once.
all_at_once() {
    local port i jobs=()
    port=$(port_of "$1")
    for i in $(seq 1 "$STREAMS"); do
        case $2 in
            put) sftp_batch "$port" bench "put f.bin s$i.bin" & ;;
            get) sftp_batch "$port" bench "get s$i.bin out/s$i.bin" & ;;
        esac
        jobs+=($!)
    done
    for j in "${jobs[@]}"; do wait "$j"; done
}
# raw_parallel: STREAMS boto3 uploads at once, then STREAMS downloads;
# appends both phases' times (and client and store CPU to all).
raw_parallel() {
    py "
import time, concurrent.futures as cf
$(store_cpu_py)
n = $STREAMS
with cf.ThreadPoolExecutor(n) as pool:
    for op in ('put', 'get'):
        t, c, s = time.time(), time.process_time(), store()
        if op == 'put':
            list(pool.map(lambda i: s3.upload_file('$work/f.bin', '$BUCKET', f'raw/s{i}.bin'), range(n)))
        else:
            list(pool.map(lambda i: s3.download_file('$BUCKET', f'raw/s{i}.bin', f'$work/out/raw{i}.bin'), range(n)))
        t, c, s = time.time() - t, time.process_time() - c, store() - s
        print(f'raw-s3 {op} {t:.3f}', file=open('$work/times', 'a'))
        print(f'raw-s3 {op} {t:.3f} {c:.3f} 0 {s:.3f}', file=open('$work/all', 'a'))
"
    for i in $(seq 0 $((STREAMS - 1))); do
        cmp -s "$work/f.bin" "$work/out/raw$i.bin" || { echo "raw-s3: stream $i read back differs" >&2; exit 1; }
    done
    rm -f "$work/out"/raw*.bin
}

: > "$work/times"
: > "$work/cpu"
: > "$work/all"
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    raw_parallel
    for t in "${targets[@]}"; do
        for op in put get; do
            cpu0=$(cpu_of "$(pid_of "$t")") s0=$(store_cpu) && client_cpu && c0=$CLIENT_CPU t0=$(seconds)
            all_at_once "$t" "$op"
            t1=$(seconds) && client_cpu && c1=$CLIENT_CPU s1=$(store_cpu) cpu1=$(cpu_of "$(pid_of "$t")")
            echo "$t $op $(elapsed "$t0" "$t1")" >> "$work/times"
            echo "$t $op $(python3 -c "print(($cpu1 - $cpu0) * 1024 / ($STREAMS * $SIZE_MIB))")" >> "$work/cpu"
            echo "$t $op $(elapsed "$t0" "$t1") $(python3 -c "print($c1 - $c0, $cpu1 - $cpu0, $s1 - $s0)")" >> "$work/all"
        done
        for i in $(seq 1 "$STREAMS"); do
            cmp -s "$work/f.bin" "$work/out/s$i.bin" || { echo "$t: stream $i read back differs" >&2; exit 1; }
        done
        rm -f "$work/out"/s*.bin
    done
done

medians "$work/times" "${targets[@]}" raw-s3
echo "Server CPU seconds per GiB:"
UNIT="s cpu" medians "$work/cpu" "${targets[@]}"
echo "Aggregate MiB/s ($STREAMS streams of $SIZE_MIB MiB at once, from the medians):"
python3 - "$work/times" <<PY
import sys, statistics, collections
times = collections.defaultdict(list)
for line in open(sys.argv[1]):
    t, w, s = line.split()
    times[(t, w)].append(float(s))
for (t, w), v in sorted(times.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    print(f"{w:<4} {t:<11} {$STREAMS * $SIZE_MIB / statistics.median(v):8.0f} MiB/s")
PY
cpu_sums "$work/all"
