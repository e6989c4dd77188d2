# Shared by the bench/ scripts: a work directory cleaned up on exit, free
# ports, timing, an S3 endpoint (moto_server on loopback; a one-node Garage
# with GARAGE=path/to/garage; yours with S3_ENDPOINT, S3_KEY, S3_SECRET)
# with a fresh bucket, boto3 and rclone helpers, and the table of medians.
# Source it after `set -euo pipefail` from the repository root.

BIN=${BIN:-target/release/bucketgate}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }

work=$(mktemp -d /tmp/bucketgate-bench.XXXXXX)
pids=()
cleanup() {
    # A function run with & is a subshell: its children go too (pkill -P).
    for p in "${pids[@]}"; do pkill -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${KEEP_WORK:-}" ]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

need() { for tool in "$@"; do command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }; done; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}
seconds() { date +%s.%N; }
# elapsed T0 T1: seconds between, 3 decimals
elapsed() { python3 -c "print(round($2 - $1, 3))"; }
# timed TIMES_FILE TARGET WORKLOAD COMMAND...: runs the command, appends
# "target workload seconds" to the file.
timed() {
    local t0 t1
    t0=$(seconds)
    "${@:4}" >/dev/null
    t1=$(seconds)
    echo "$2 $3 $(elapsed "$t0" "$t1")" >> "$1"
}

# cpu_of PID: CPU seconds process PID and its reaped children have spent.
cpu_of() {
    python3 -c "
f = open('/proc/$1/stat').read().rsplit(')', 1)[1].split()
print(sum(int(x) for x in f[11:15]) / $(getconf CLK_TCK))"
}
# store_cpu: the S3 store's CPU seconds (0 for an S3_ENDPOINT of your own);
# store_cpu_py: a python function store() that reads the same.
store_cpu() { if [ -n "${STORE_PID:-}" ]; then cpu_of "$STORE_PID"; else echo 0; fi; }
store_cpu_py() {
    cat <<EOF
def store():
    if not '${STORE_PID:-}': return 0
    f = open('/proc/${STORE_PID:-}/stat').read().rsplit(')', 1)[1].split()
    return sum(int(x) for x in f[11:15]) / $(getconf CLK_TCK)
EOF
}
# client_cpu: CPU seconds this shell's reaped children have spent (sftp
# clients and their ssh, once waited for) into CLIENT_CPU. `times` must
# run in this shell: a subshell's children are not this shell's.
client_cpu() {
    times > "$work/times.out"
    CLIENT_CPU=$(tail -1 "$work/times.out" | tr 'ms' '  ' | awk '{print $1 * 60 + $2 + $3 * 60 + $4}')
}
# cpu_sums FILE: from lines "target workload wall client server store"
# (seconds), the medians and the least wall time their sum allows on this
# machine's cores: where clients, server and store share the cores, a
# transfer takes no less.
cpu_sums() {
    echo "CPU seconds of each process on the transfer (medians), and the least"
    echo "wall time that CPU allows on $(nproc) cores:"
    python3 - "$1" "$(nproc)" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    t, w, *v = line.split()
    rows[(t, w)].append([float(x) for x in v])
cores = int(sys.argv[2])
print(f"{'target':<12}{'workload':<20}{'wall':>8}{'client':>8}{'server':>8}{'store':>8}{'sum':>8}{'sum/cores':>11}")
for (t, w), v in rows.items():
    wall, client, server, store = (statistics.median(x) for x in zip(*v))
    total = client + server + store
    print(f"{t:<12}{w:<20}{wall:>7.2f}s{client:>8.2f}{server:>8.2f}{store:>8.2f}{total:>8.2f}{total / cores:>10.2f}s")
PY
}

# start_garage: a one-node Garage (GARAGE=path to its binary) on loopback,
# with a key allowed to create buckets; sets S3_ENDPOINT, S3_KEY, S3_SECRET
# and STORE_PID (unset for an S3_ENDPOINT of your own).
start_garage() {
    local port rpc g
    port=$(free_port) rpc=$(free_port)
    cat > "$work/garage.toml" <<EOF
metadata_dir = "$work/garage/meta"
data_dir = "$work/garage/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$port"
EOF
    g() { "$GARAGE" -c "$work/garage.toml" "$@"; }
    RUST_LOG=warn "$GARAGE" -c "$work/garage.toml" server >"$work/garage.log" 2>&1 &
    pids+=($!)
    STORE_PID=$!
    wait_port "$port"
    for _ in $(seq 1 50); do g status >/dev/null 2>&1 && break; sleep 0.2; done
    g layout assign -z dc1 -c 10G "$(g node id -q | cut -d@ -f1)" >/dev/null
    g layout apply --version 1 >/dev/null
    g key create bench >"$work/garage-key.txt"
    g key allow --create-bucket bench >/dev/null
    S3_KEY=$(awk '/Key ID:/ {print $3}' "$work/garage-key.txt")
    S3_SECRET=$(g key info --show-secret bench | awk '/Secret key:/ {print $3}')
    S3_ENDPOINT="http://127.0.0.1:$port"
}

if [ -n "${GARAGE:-}" ]; then
    start_garage
elif [ -z "${S3_ENDPOINT:-}" ]; then
    need moto_server
    s3_port=$(free_port)
    moto_server -H 127.0.0.1 -p "$s3_port" >/dev/null 2>&1 &
    pids+=($!)
    STORE_PID=$!
    wait_port "$s3_port"
    S3_ENDPOINT="http://127.0.0.1:$s3_port"
    S3_KEY=testing
    S3_SECRET=testing-secret
fi
BUCKET=bench-$$

# py 'python code using s3': runs it with a boto3 client for the endpoint.
py() {
    printf '%s\n' "$1" > "$work/py"
    python3 - <<PY
import boto3, sys
s3 = boto3.client('s3', endpoint_url='$S3_ENDPOINT', aws_access_key_id='$S3_KEY',
                  aws_secret_access_key='$S3_SECRET', region_name='us-east-1')
$(cat "$work/py")
PY
}
# Versioning on: rclone 1.60 HEADs each upload with `versionId=null`, which
# moto refuses on an unversioned bucket. A server without versioning (an
# S3_ENDPOINT of your own) does without.
py "s3.create_bucket(Bucket='$BUCKET')
try:
    s3.put_bucket_versioning(Bucket='$BUCKET', VersioningConfiguration={'Status': 'Enabled'})
except Exception as e:
    print('(no bucket versioning:', e, ')', file=sys.stderr)"

# The bench bucket as the gateway's remote `s3`, for a gateway.toml.
s3_remote_toml() {
    cat <<EOF
[remotes.s3]
kind = "s3"
endpoint = "$S3_ENDPOINT"
bucket = "$BUCKET"
access_key_id = "$S3_KEY"
secret_access_key = "$S3_SECRET"
EOF
}

# start_bucketgate PORT: `bucketgate serve` on $work/gateway.toml (log in
# $work/bucketgate.log), back once PORT answers; its pid is BG_PID.
start_bucketgate() {
    RUST_LOG=warn "$BIN" serve --config "$work/gateway.toml" 2>"$work/bucketgate.log" &
    BG_PID=$!
    pids+=($BG_PID)
    wait_port "$1"
}

# crowd_server_toml N: the [server] and [security] tables of a gateway
# that N sessions from this one address log in to at once: its session and
# login caps above N, no ban.
crowd_server_toml() {
    cat <<EOF
[server]
keys_dir = "$work/keys"
state_dir = "$work/state"
max_sessions = $(($1 + 100))
max_unauthenticated = $(($1 + 100))
max_unauthenticated_per_source = $(($1 + 100))
[security]
ban_threshold = 1000000
EOF
}

# start_sftp_gateway: bucketgate with default settings serving SFTP on
# BG_PORT to user `bench` (key $work/id.pub), home the bucket's
# bucketgate/ folder.
start_sftp_gateway() {
    BG_PORT=$(free_port)
    cat > "$work/gateway.toml" <<EOF
[server]
keys_dir = "$work/bg-keys"
state_dir = "$work/bg-state"
[sftp]
listen = "127.0.0.1:$BG_PORT"
$(s3_remote_toml)
[[users]]
name = "bench"
authorized_keys = ["$(cat "$work/id.pub")"]
home = "s3:/bucketgate"
EOF
    start_bucketgate "$BG_PORT"
}

# start_postgres: Debian's PostgreSQL (package postgresql) in $work/pg on
# a loopback port, run as the postgres user when we are root (initdb
# refuses root), with its durability defaults (fsync on): the fleet's
# database for CLUSTER=1. Sets PG_URL.
start_postgres() {
    local bin port as=()
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    PG_BIN=$bin
    [ -n "$bin" ] || { echo "missing: PostgreSQL (apt-get install postgresql)" >&2; exit 1; }
    port=$(free_port)
    mkdir -p "$work/pg"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$work/pg"
        chmod o+x "$work"
        as=(runuser -u postgres --)
    fi
    "${as[@]}" "$bin/initdb" -A trust -U postgres -D "$work/pg/data" >/dev/null
    "${as[@]}" "$bin/postgres" -D "$work/pg/data" -p "$port" -k "$work/pg" \
        -c listen_addresses=127.0.0.1 -c max_connections=300 ${PG_OPTS:-} 2>"$work/pg/log" &
    pids+=($!)
    wait_port "$port"
    PG_PORT=$port
    PG_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
}

# start_receiver FIELD: a webhook receiver on loopback port RX_PORT that
# appends each event's FIELD (id, path…) to $work/received, a line each,
# and answers 200. Python's ThreadingHTTPServer, at the lowest CPU
# priority: a receiver runs on its own host in real use, and here it
# would take the gateway's cores.
start_receiver() {
    RX_PORT=$(free_port)
    cat > "$work/receiver.py" <<EOF
import http.server, json, threading
lock = threading.Lock()
out = open("$work/received", "a")
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a production receiver would
    def do_POST(self):
        body = self.rfile.read(int(self.headers['Content-Length']))
        with lock:
            out.write(str(json.loads(body).get('$1')) + '\\n'); out.flush()
        self.send_response(200); self.send_header('Content-Length', '0'); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(('127.0.0.1', $RX_PORT), H).serve_forever()
EOF
    : > "$work/received"
    nice -n 19 python3 "$work/receiver.py" &
    pids+=($!)
    wait_port "$RX_PORT"
}

# pg_sql QUERY: one value from the CLUSTER=1 database (start_postgres).
pg_sql() {
    local as=()
    [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
    "${as[@]}" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atc "$1" postgres
}

# raw_s3 FILE NAME: the raw S3 reference, boto3's own transfer (multipart,
# parallel) of FILE up and down; appends "raw-s3 put_NAME s" and
# "raw-s3 get_NAME s" to $work/times.
raw_s3() {
    py "
import time
t = time.time(); s3.upload_file('$1', '$BUCKET', 'raw/$2'); up = time.time() - t
t = time.time(); s3.download_file('$BUCKET', 'raw/$2', '$work/raw.bin'); down = time.time() - t
print(f'raw-s3 put_$2 {up:.3f}\nraw-s3 get_$2 {down:.3f}')
" >> "$work/times"
    rm -f "$work/raw.bin"
}

# start_rclone_sftp: `rclone serve sftp` over the bench bucket's rclone/
# folder, key $work/id.pub; sets RC_PORT and RC_PID (rclone's own pid).
start_rclone_sftp() {
    RC_PORT=$(free_port)
    rclone_s3 serve sftp ":s3:$BUCKET/rclone" --addr "127.0.0.1:$RC_PORT" \
        --authorized-keys "$work/id.pub" --cache-dir "$work/rclone-cache" -q &
    pids+=($!)
    wait_port "$RC_PORT"
    RC_PID=$(pgrep -x -P "$!" rclone || echo "$!")
}

# start_sshd PUBKEY: OpenSSH's sshd with its sftp-server on local disk, on
# loopback port OS_PORT, for the key PUBKEY: the local-disk peer. Fails
# (with a note) when openssh-server is not installed.
start_sshd() {
    local sshd sftp_server
    sftp_server=$(ls /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server 2>/dev/null | head -1 || true)
    sshd=$(command -v sshd || ls /usr/sbin/sshd 2>/dev/null || true)
    if [ -z "$sshd" ] || [ -z "$sftp_server" ]; then
        echo "(openssh-server not installed: the local-disk column is left out)" >&2
        return 1
    fi
    OS_PORT=$(free_port)
    ssh-keygen -q -t ed25519 -N '' -f "$work/sshd_host"
    cp "$1" "$work/authorized_keys"
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
Subsystem sftp $sftp_server
EOF
    "$sshd" -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
    pids+=($!)
    wait_port "$OS_PORT"
}

# sftp_batch PORT USER TEXT: OpenSSH sftp on loopback as USER with the key
# $work/id, running the batch TEXT from $work; quiet unless it fails.
# SFTP_CIPHER, if set, is the one cipher the client offers.
sftp_batch() {
    local batch
    batch=$(mktemp "$work/batch.XXXXXX")
    printf '%s\n' "$3" > "$batch"
    (cd "$work" && sftp -q -b "$batch" -P "$1" -i "$work/id" ${SFTP_CIPHER:+-c "$SFTP_CIPHER"} \
        -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o IdentitiesOnly=yes "$2@127.0.0.1" >/dev/null)
}

# rclone against the endpoint. It refuses AWS_CA_BUNDLE with its own HTTP
# transport (the endpoint is plain HTTP here anyway).
: > "$work/rclone.conf"
rclone_s3() {
    env -u AWS_CA_BUNDLE rclone "$@" --s3-provider Other --s3-endpoint "$S3_ENDPOINT" \
        --s3-access-key-id "$S3_KEY" --s3-secret-access-key "$S3_SECRET" --s3-region us-east-1 \
        --config "$work/rclone.conf"
}

# medians TIMES_FILE TARGET...: the median per target and workload of lines
# "target workload seconds", with each other target's time divided by
# bucketgate's (above 1: bucketgate took less time). UNIT names what the
# lines count when it is not seconds of wall clock; BASE, the target the
# others are divided by, when it is not `bucketgate`.
medians() {
    UNIT=${UNIT:-s} BASE=${BASE:-bucketgate} python3 - "$@" <<'PY'
import os, sys, statistics, collections
unit = os.environ["UNIT"]
base = os.environ["BASE"]
times = collections.defaultdict(list)
for line in open(sys.argv[1]):
    t, w, s = line.split()
    times[(t, w)].append(float(s))
targets = sys.argv[2:]
workloads = list(dict.fromkeys(w for _, w in times))
med = {k: statistics.median(v) for k, v in times.items()}
others = [t for t in targets if t != base]
short = "bg" if base == "bucketgate" else base
print(f"{'workload':<16}" + "".join(f"{t:>14}" for t in targets) + "".join(f"{t + '/' + short:>16}" for t in others))
for w in workloads:
    row = f"{w:<16}" + "".join(f"{med[(t, w)]:>{14 - len(unit)}.2f}{unit}" if (t, w) in med else f"{'':>14}" for t in targets)
    bg = med.get((base, w))
    for o in others:
        row += f"{med[(o, w)] / bg:>15.2f}x" if bg and (o, w) in med else f"{'':>16}"
    print(row)
print("medians of", max(len(v) for v in times.values()), f"rounds; ratios above 1 mean {base} took less",
      "time" if unit == "s" else f"({unit})")
PY
}
