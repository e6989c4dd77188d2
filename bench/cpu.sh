#!/usr/bin/env bash
# Server CPU per GiB: what each SFTP server spends to take and give one
# file, the OpenSSH `sftp` client driving, in both ciphers the client may
# pick (chacha20-poly1305, OpenSSH's first choice, and aes256-gcm). Servers:
# bucketgate and `rclone serve sftp` over the same S3 endpoint, OpenSSH's
# sshd with sftp-server on local disk (its children's CPU included); raw S3
# (boto3's multipart) for wall time. Rounds are interleaved; medians.
# rclone's SSH has no aes256-gcm: its column has chacha20 rows only.
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
# CPU seconds process PID and its reaped children have spent. sshd forks a
# process per connection, which forks sftp-server: once both are gone and
# reaped, their time is in the listener's.
cpu_of() {
    [ "$1" = "${SSHD_PID:-}" ] && while pgrep -P "$1" >/dev/null; do sleep 0.05; done
    python3 -c "
f = open('/proc/$1/stat').read().rsplit(')', 1)[1].split()
print(sum(int(x) for x in f[11:15]) / $(getconf CLK_TCK))"
}

: > "$work/times"
: > "$work/cpu"
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    for size in $SIZES; do
        raw_s3 "$work/in/f$size.bin" "$size"
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
                    cpu0=$(cpu_of "$pid")
                    SFTP_CIPHER=$cipher timed "$work/times" "$t" "${op}_${size}_$c" \
                        sftp_batch "$port" "$user" "$batch"
                    cpu1=$(cpu_of "$pid")
                    echo "$t ${op}_${size}_$c $(python3 -c "print(($cpu1 - $cpu0) * 1024 / $size)")" >> "$work/cpu"
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
