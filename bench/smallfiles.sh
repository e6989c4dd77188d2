#!/usr/bin/env bash
# Folders of small files fetched the way FileZilla, WinSCP and `sftp get -r`
# do it, one file after another, over an S3 endpoint with real first-byte
# latency: a relay (bench/latency_relay.py) holds each S3 response DELAY_MS
# (20 ms, a typical S3 first byte) before passing it on. Through bucketgate
# (with its listing-driven prefetch, and as `bg-noprefetch` with
# prefetch_window = "0"), rclone serve sftp over the same bucket, and
# OpenSSH's sftp-server on local disk; rounds interleaved, medians and
# ratios, then the prefetching gateway's peak RSS against its
# memory_budget (BUDGET, 64MiB) and its prefetch counters.
#
#   bench/smallfiles.sh          # moto_server on loopback behind the relay
#
# Workloads: `get -r` of SMALL files (200) of 4 KiB in one folder, and of
# TREE files (2000) in 20 folders; the same tree as FileZilla fetches it
# (examples/sftp_walk.rs: one connection lists, two others download what it
# finds, while it lists); and `lftp mirror --parallel=2` of the tree over
# FTP (OpenSSH: over SFTP). Needs: a release build with its examples, OpenSSH
# sftp (and sshd for the local-disk column), rclone, lftp, python3 with
# boto3.
# Variables: ROUNDS (2), DELAY_MS (20), SMALL (200), TREE (2000), TARGETS
# (all: "bucketgate bg-noprefetch rclone openssh").
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-2}
DELAY_MS=${DELAY_MS:-20}
SMALL=${SMALL:-200}
TREE=${TREE:-2000}
source bench/lib.sh
need sftp ssh-keygen rclone lftp python3
WALK=target/release/examples/sftp_walk
[ -x "$WALK" ] || { echo "build first: cargo build --release --example sftp_walk" >&2; exit 1; }

# The same files in the bucket for each S3 target, and on local disk.
py "
import os
def files():
    for i in range($SMALL):
        yield f'small/f{i:04d}', os.urandom(4096)
    for i in range($TREE):
        yield f'tree/d{i % 20:02d}/f{i:05d}', os.urandom(4096)
for name, body in files():
    for prefix in ['bucketgate', 'rclone']:
        s3.put_object(Bucket='$BUCKET', Key=f'{prefix}/{name}', Body=body)
    path = os.path.join('$work/local', name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, 'wb').write(body)
"

RELAY_PORT=$(free_port)
python3 bench/latency_relay.py "$RELAY_PORT" "${S3_ENDPOINT#http://}" "$DELAY_MS" &
pids+=($!)
wait_port "$RELAY_PORT"
# From here on, the gateway and rclone reach S3 through the relay.
S3_ENDPOINT="http://127.0.0.1:$RELAY_PORT"

ssh-keygen -q -t ed25519 -N '' -f "$work/id"
BUDGET=${BUDGET:-64MiB}
# gateway_toml PORT NAME WINDOW ADMIN_PORT FTP_PORT PASSIVE_PORTS: a
# gateway serving the bucketgate prefix.
PASSWORD_HASH=$(printf 'bench\n' | "$BIN" hash-password)
gateway_toml() {
    cat <<EOF
[server]
keys_dir = "$work/$2-keys"
state_dir = "$work/$2-state"
memory_budget = "$BUDGET"
[sftp]
listen = "127.0.0.1:$1"
[ftp]
listen = "127.0.0.1:$5"
passive_ports = "$6"
[admin]
listen = "127.0.0.1:$4"
$(s3_remote_toml)
prefetch_window = "$3"
[[users]]
name = "bench"
password = "$PASSWORD_HASH"
authorized_keys = ["$(cat "$work/id.pub")"]
home = "s3:/bucketgate"
EOF
}
OFF_PORT=$(free_port) OFF_ADMIN=$(free_port) OFF_FTP=$(free_port)
gateway_toml "$OFF_PORT" off 0 "$OFF_ADMIN" "$OFF_FTP" 30100-30139 > "$work/gateway.toml"
start_bucketgate "$OFF_PORT"
BG_PORT=$(free_port) BG_ADMIN=$(free_port) BG_FTP=$(free_port)
gateway_toml "$BG_PORT" bg 5s "$BG_ADMIN" "$BG_FTP" 30200-30239 > "$work/gateway.toml"
start_bucketgate "$BG_PORT"

start_rclone_sftp

targets=(${TARGETS:-bucketgate bg-noprefetch rclone openssh})
if [[ " ${targets[*]} " == *" openssh "* ]] && ! start_sshd "$work/id.pub"; then
    targets=("${targets[@]/openssh}")
fi

endpoint_of() { # target -> "port user remote-dir"
    case $1 in
        bucketgate) echo "$BG_PORT bench /" ;;
        bg-noprefetch) echo "$OFF_PORT bench /" ;;
        rclone) echo "$RC_PORT bench /" ;;
        openssh) echo "$OS_PORT $(id -un) $work/local" ;;
    esac
}
sftp_run() { # target, batch text
    read -r port user dir < <(endpoint_of "$1")
    sftp_batch "$port" "$user" "cd $dir
$2"
}
walk() { # target: FileZilla's pattern over the tree, into out/tree
    read -r port user dir < <(endpoint_of "$1")
    "$WALK" "127.0.0.1:$port" "$user" "$work/id" "${dir%/}/tree" "$work/out/tree"
}
mirror() { # target: lftp mirror --parallel=2 of the tree into out/tree
    local url
    case $1 in
        bucketgate) url="ftp://bench:bench@127.0.0.1:$BG_FTP" ;;
        bg-noprefetch) url="ftp://bench:bench@127.0.0.1:$OFF_FTP" ;;
        openssh) url="sftp://$(id -un):@127.0.0.1:$OS_PORT" ;;
    esac
    read -r _ _ dir < <(endpoint_of "$1")
    lftp -c "set net:max-retries 1; set ftp:ssl-allow false; set sftp:auto-confirm yes
        set sftp:connect-program 'ssh -a -x -i $work/id -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'
        open $url; mirror --parallel=2 ${dir%/}/tree $work/out/tree"
}
check() { # target, folder
    diff -r -q "$work/local/$2" "$work/out/$2" >/dev/null \
        || { echo "$1: the files of $2 differ" >&2; exit 1; }
}

: > "$work/times"
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    for t in "${targets[@]}"; do
        rm -rf "$work/out"; mkdir -p "$work/out"
        timed "$work/times" "$t" "get_${SMALL}_small" sftp_run "$t" "get -r small out/"
        check "$t" small
        timed "$work/times" "$t" "get_${TREE}_in_20" sftp_run "$t" "get -r tree out/"
        check "$t" tree
        rm -rf "$work/out/tree"
        timed "$work/times" "$t" "filezilla_${TREE}" walk "$t"
        check "$t" tree
        if [ "$t" != rclone ]; then # (rclone serves FTP only apart)
            rm -rf "$work/out/tree"
            timed "$work/times" "$t" "lftp_mirror_${TREE}" mirror "$t"
            check "$t" tree
        fi
    done
done

medians "$work/times" "${targets[@]}"
echo "S3 responses delayed ${DELAY_MS} ms by the relay"
echo "bucketgate (prefetch on) peak RSS: $(awk '/VmHWM/ {printf "%d MiB", $2/1024}' "/proc/$BG_PID/status"), memory_budget $BUDGET"
curl -s "http://127.0.0.1:$BG_ADMIN/metrics" | grep '^bucketgate_prefetch' || true
