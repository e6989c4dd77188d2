#!/usr/bin/env bash
# SFTP benchmark: bucketgate against `rclone serve sftp` over the same S3
# endpoint, and against OpenSSH's sftp-server on local disk, all driven by
# the OpenSSH `sftp` program. Rounds are interleaved (every target runs each
# workload once per round) and the median is reported with ratios.
#
#   bench/sftp.sh                 # moto_server on loopback as the S3 endpoint
#   S3_ENDPOINT=http://127.0.0.1:9000 S3_KEY=... S3_SECRET=... bench/sftp.sh
#
# Needs: a release build (cargo build --release), openssh-client,
# openssh-server (for sftp-server), rclone, python3 with boto3
# (pip install 'moto[server]'). Variables: ROUNDS (3), SIZE_MIB (256),
# PARALLEL (8, for the memory check).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SIZE_MIB=${SIZE_MIB:-256}
PARALLEL=${PARALLEL:-8}
BIN=target/release/bucketgate
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
for tool in sftp rclone python3; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
SFTP_SERVER=$(ls /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server 2>/dev/null | head -1 || true)
SSHD=$(command -v sshd || ls /usr/sbin/sshd 2>/dev/null || true)

work=$(mktemp -d /tmp/bucketgate-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

# --- S3 endpoint -----------------------------------------------------------
if [ -z "${S3_ENDPOINT:-}" ]; then
    command -v moto_server >/dev/null || { echo "missing: moto_server (pip install 'moto[server]')" >&2; exit 1; }
    port=$(free_port)
    moto_server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
    pids+=($!)
    wait_port "$port"
    S3_ENDPOINT="http://127.0.0.1:$port"
    S3_KEY=testing
    S3_SECRET=testing-secret
fi
BUCKET=bench-$$
s3py() {
    python3 - "$@" <<EOF
import boto3, sys
s3 = boto3.client('s3', endpoint_url='$S3_ENDPOINT', aws_access_key_id='$S3_KEY',
                  aws_secret_access_key='$S3_SECRET', region_name='us-east-1')
$(cat "$work/py")
EOF
}
py() { printf '%s\n' "$1" > "$work/py"; shift; s3py "$@"; }
# Versioning on: rclone 1.60 HEADs each upload with `versionId=null`, which
# moto refuses on an unversioned bucket. Both S3 targets share the bucket.
py "s3.create_bucket(Bucket='$BUCKET')
s3.put_bucket_versioning(Bucket='$BUCKET', VersioningConfiguration={'Status': 'Enabled'})"

# --- Files ------------------------------------------------------------------
mkdir -p "$work/in/small" "$work/local"
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$work/in/big.bin"
for i in $(seq -w 1 200); do head -c 4096 /dev/urandom > "$work/in/small/f$i"; done
ssh-keygen -q -t ed25519 -N '' -f "$work/id"

# --- Targets ----------------------------------------------------------------
BG_PORT=$(free_port)
cat > "$work/gateway.toml" <<EOF
[server]
keys_dir = "$work/bg-keys"
state_dir = "$work/bg-state"
[sftp]
listen = "127.0.0.1:$BG_PORT"
[remotes.s3]
kind = "s3"
endpoint = "$S3_ENDPOINT"
bucket = "$BUCKET"
access_key_id = "$S3_KEY"
secret_access_key = "$S3_SECRET"
[[users]]
name = "bench"
authorized_keys = ["$(cat "$work/id.pub")"]
home = "s3:/bucketgate"
EOF
start_bucketgate() {
    RUST_LOG=warn "$BIN" serve --config "$work/gateway.toml" 2>"$work/bucketgate.log" &
    BG_PID=$!
    pids+=($BG_PID)
    wait_port "$BG_PORT"
}
start_bucketgate

RC_PORT=$(free_port)
# rclone refuses AWS_CA_BUNDLE with its own HTTP transport; the endpoint is plain HTTP anyway.
env -u AWS_CA_BUNDLE rclone serve sftp ":s3:$BUCKET/rclone" --s3-provider Other --s3-endpoint "$S3_ENDPOINT" \
    --s3-access-key-id "$S3_KEY" --s3-secret-access-key "$S3_SECRET" --s3-region us-east-1 \
    --addr "127.0.0.1:$RC_PORT" --authorized-keys "$work/id.pub" \
    --config "$work/rclone.conf" --cache-dir "$work/rclone-cache" -q &
pids+=($!)
wait_port "$RC_PORT"
py "s3.put_object(Bucket='$BUCKET', Key='rclone/.keep', Body=b'')"

targets=(bucketgate rclone)
if [ -n "$SSHD" ] && [ -n "$SFTP_SERVER" ]; then
    OS_PORT=$(free_port)
    ssh-keygen -q -t ed25519 -N '' -f "$work/sshd_host"
    cp "$work/id.pub" "$work/authorized_keys"
    mkdir -p /run/sshd
    cat > "$work/sshd_config" <<EOF
Port $OS_PORT
ListenAddress 127.0.0.1
HostKey $work/sshd_host
AuthorizedKeysFile $work/authorized_keys
PermitRootLogin yes
PasswordAuthentication no
StrictModes no
UsePAM no
Subsystem sftp $SFTP_SERVER
EOF
    "$SSHD" -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
    pids+=($!)
    wait_port "$OS_PORT"
    targets+=(openssh)
else
    echo "(openssh-server not installed: the local-disk column is left out)" >&2
fi

# target -> "port user remote-dir"
endpoint_of() {
    case $1 in
        bucketgate) echo "$BG_PORT bench /" ;;
        rclone) echo "$RC_PORT bench /" ;;
        openssh) echo "$OS_PORT $(id -un) $work/local" ;;
    esac
}
sftp_run() { # target, batch text
    read -r port user dir < <(endpoint_of "$1")
    local batch
    batch=$(mktemp "$work/batch.XXXXXX")
    printf 'cd %s\n%s\n' "$dir" "$2" > "$batch"
    (cd "$work" && sftp -q -b "$batch" -P "$port" -i "$work/id" \
        -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o IdentitiesOnly=yes "$user@127.0.0.1" >/dev/null)
}
seconds() { date +%s.%N; }
timed() { # target, workload, batch → appends "target workload seconds"
    local t0 t1
    t0=$(seconds)
    sftp_run "$1" "$3"
    t1=$(seconds)
    echo "$1 $2 $(python3 -c "print(round($t1 - $t0, 3))")" >> "$work/times"
}

# 1000 entries to list per round, written straight to each store: a fresh
# folder each round, so no target answers from a listing it cached earlier
# (rclone keeps listings for 5 minutes; the gateway always asks S3).
py "
for r in range(1, $ROUNDS + 1):
    for prefix in ['bucketgate', 'rclone']:
        for i in range(1000):
            s3.put_object(Bucket='$BUCKET', Key=f'{prefix}/list{r}/e{i:04d}', Body=b'x')
"
for r in $(seq 1 "$ROUNDS"); do
    mkdir -p "$work/local/list$r"
    for i in $(seq -w 0 999); do echo x > "$work/local/list$r/e$i"; done
done

# Raw S3 reference: boto3's own transfer (multipart, parallel).
raw_s3() {
    py "
import time
t = time.time(); s3.upload_file('$work/in/big.bin', '$BUCKET', 'raw/big.bin'); up = time.time() - t
t = time.time(); s3.download_file('$BUCKET', 'raw/big.bin', '$work/raw.bin'); down = time.time() - t
print(f'raw-s3 put_big {up:.3f}\nraw-s3 get_big {down:.3f}')
" >> "$work/times"
    rm -f "$work/raw.bin"
}

: > "$work/times"
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    raw_s3
    for t in "${targets[@]}"; do
        rm -rf "$work/out"; mkdir -p "$work/out"
        timed "$t" put_big "put in/big.bin big.bin"
        timed "$t" get_big "get big.bin out/big.bin"
        cmp -s "$work/in/big.bin" "$work/out/big.bin" || { echo "$t: downloaded bytes differ" >&2; exit 1; }
        timed "$t" put_small "mkdir small$round
put -r in/small/* small$round/"
        timed "$t" get_small "get -r small$round out/small"
        timed "$t" list_1000 "ls -l list$round"
        sftp_run "$t" "rm big.bin"
    done
done

# Memory: a fresh gateway, PARALLEL uploads of SIZE_MIB at once; peak RSS.
kill "$BG_PID"; wait "$BG_PID" 2>/dev/null || true
start_bucketgate
uploads=()
for i in $(seq 1 "$PARALLEL"); do
    sftp_run bucketgate "put in/big.bin par$i.bin" &
    uploads+=($!)
done
for u in "${uploads[@]}"; do wait "$u"; done
peak_kib=$(awk '/VmHWM/ {print $2}' "/proc/$BG_PID/status")

python3 - "$work/times" "$peak_kib" "$PARALLEL" "$SIZE_MIB" <<'EOF'
import sys, statistics, collections
times = collections.defaultdict(list)
for line in open(sys.argv[1]):
    t, w, s = line.split()
    times[(t, w)].append(float(s))
med = {k: statistics.median(v) for k, v in times.items()}
workloads = ["put_big", "get_big", "put_small", "get_small", "list_1000"]
targets = [t for t in ["bucketgate", "rclone", "openssh", "raw-s3"] if any((t, w) in med for w in workloads)]
print(f"{'workload':<11}" + "".join(f"{t:>12}" for t in targets) + "   rclone/bg  openssh/bg  raw-s3/bg")
for w in workloads:
    row = f"{w:<11}" + "".join(f"{med[(t, w)]:>11.2f}s" if (t, w) in med else f"{'':>12}" for t in targets)
    bg = med.get(("bucketgate", w))
    for other in ["rclone", "openssh", "raw-s3"]:
        row += f"{med[(other, w)] / bg:>11.2f}x" if bg and (other, w) in med else f"{'':>12}"
    print(row)
peak_mib = int(sys.argv[2]) / 1024
bound = int(sys.argv[3]) * 5 * 8 + 64
print(f"\npeak RSS with {sys.argv[3]} parallel {sys.argv[4]} MiB uploads: {peak_mib:.0f} MiB "
      f"(bound {sys.argv[3]} x (4+1) x 8 MiB + 64 MiB = {bound} MiB)")
print("ratios above 1 mean bucketgate took less time")
EOF
