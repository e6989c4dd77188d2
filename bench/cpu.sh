#!/usr/bin/env bash
# Server CPU per GiB: what each SFTP server spends to take and give one
# file, the OpenSSH `sftp` client driving, in both ciphers the client may
# pick (chacha20-poly1305, OpenSSH's first choice, and aes256-gcm). Servers:
# bucketgate and `rclone serve sftp` over the same S3 endpoint, OpenSSH's
# sshd with sftp-server on local disk (its children's CPU included); raw S3
# (boto3's multipart) for wall time. Rounds are interleaved; medians.
# rclone's SSH has no aes256-gcm: its column has chacha20 rows only.
# Last, for bucketgate and raw S3, the CPU of every process a transfer
# runs on (client, server, S3 store): on a machine they share, their sum
# over the cores is the least wall time the transfer can take.
#
#   GARAGE=path/to/garage bench/cpu.sh    # what the README's figures use
#   bench/cpu.sh                          # moto_server (the bottleneck)
#
# Variables: ROUNDS (3), SIZES (MiB, "256 1024"), CIPHERS
# ("chacha20-poly1305@openssh.com aes256-gcm@openssh.com").
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SIZES=${SIZES:-256 1024}
CIPHERS=${CIPHERS:-chacha20-poly1305@openssh.com aes256-gcm@openssh.com}
source bench/lib.sh
need sftp rclone python3

mkdir -p "$work/in" "$work/out" "$work/local"
for size in $SIZES; do head -c "$((size << 20))" /dev/urandom > "$work/in/f$size.bin"; done
ssh-keygen -q -t ed25519 -N '' -f "$work/id"

start_sftp_gateway

start_rclone_sftp
py "s3.put_object(Bucket='$BUCKET', Key='rclone/.keep', Body=b'')"

targets=(bucketgate rclone)
if start_sshd "$work/id.pub"; then
    SSHD_PID=${pids[-1]}
    targets+=(openssh)
fi

# target -> "port user remote-dir pid"
endpoint_of() {
    case $1 in
        bucketgate) echo "$BG_PORT bench / $BG_PID" ;;
        rclone) echo "$RC_PORT bench / $RC_PID" ;;
        openssh) echo "$OS_PORT $(id -un) $work/local $SSHD_PID" ;;
    esac
}
# sshd forks a process per connection, which forks sftp-server: once both
# are gone and reaped, their time is in the listener's.
server_cpu() {
    [ "$1" = "${SSHD_PID:-}" ] && while pgrep -P "$1" >/dev/null; do sleep 0.05; done
    cpu_of "$1"
}
# raw_s3_cpu FILE MIB: boto3's multipart put and get (wall time to times,
# client and store CPU to all).
raw_s3_cpu() {
    py "
import time
$(store_cpu_py)
for op in ('put', 'get'):
    t, c, s = time.time(), time.process_time(), store()
    if op == 'put': s3.upload_file('$1', '$BUCKET', 'raw/$2')
    else: s3.download_file('$BUCKET', 'raw/$2', '$work/raw.bin')
    t, c, s = time.time() - t, time.process_time() - c, store() - s
    print(f'raw-s3 {op}_$2 {t:.3f}', file=open('$work/times', 'a'))
    print(f'raw-s3 {op}_$2 {t:.3f} {c:.3f} 0 {s:.3f}', file=open('$work/all', 'a'))
"
    cmp -s "$1" "$work/raw.bin" || { echo "raw-s3: downloaded bytes differ" >&2; exit 1; }
    rm -f "$work/raw.bin"
}

: > "$work/times"
: > "$work/cpu"
: > "$work/all"
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    for size in $SIZES; do
        raw_s3_cpu "$work/in/f$size.bin" "$size"
        for cipher in $CIPHERS; do
            c=${cipher%%-*}
            c=${c%%@*}
            for t in "${targets[@]}"; do
                # rclone's SSH offers no aes256-gcm.
                [ "$t" = rclone ] && [ "$c" = aes256 ] && continue
                read -r port user dir pid < <(endpoint_of "$t")
                for op in put get; do
                    case $op in
                        put) batch="cd $dir
put in/f$size.bin f.bin" ;;
                        get) batch="cd $dir
get f.bin out/f.bin" ;;
                    esac
                    cpu0=$(server_cpu "$pid") s0=$(store_cpu) && client_cpu && c0=$CLIENT_CPU t0=$(seconds)
                    SFTP_CIPHER=$cipher sftp_batch "$port" "$user" "$batch"
                    t1=$(seconds) && client_cpu && c1=$CLIENT_CPU s1=$(store_cpu) cpu1=$(server_cpu "$pid")
                    echo "$t ${op}_${size}_$c $(elapsed "$t0" "$t1")" >> "$work/times"
                    echo "$t ${op}_${size}_$c $(python3 -c "print(($cpu1 - $cpu0) * 1024 / $size)")" >> "$work/cpu"
                    echo "$t ${op}_${size}_$c $(elapsed "$t0" "$t1") \
                        $(python3 -c "print($c1 - $c0, $cpu1 - $cpu0, $s1 - $s0)")" >> "$work/all"
                done
                cmp -s "$work/in/f$size.bin" "$work/out/f.bin" || { echo "$t: downloaded bytes differ" >&2; exit 1; }
                rm -f "$work/out/f.bin"
            done
        done
    done
done

echo "Wall time:"
medians "$work/times" "${targets[@]}" raw-s3
echo
echo "Server CPU seconds per GiB:"
UNIT="s cpu" medians "$work/cpu" "${targets[@]}"
echo
cpu_sums "$work/all"
