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
# (pip install 'moto[server]'); for the bucketgate-console column, chromium
# and playwright (as .ci/run installs them). Variables: ROUNDS (3),
# SIZE_MIB (256), PARALLEL (8, for the memory check), CONSOLE (1; 0 leaves
# the console column out; poll: the page's requests without a browser),
# SMALL (200 files of 4 KiB for put_small/get_small), LOGINS (20 sessions
# one after another for login_N, each a key login and `pwd`), TARGETS (the
# targets to run, space-separated; all by default).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SIZE_MIB=${SIZE_MIB:-256}
PARALLEL=${PARALLEL:-8}
LOGINS=${LOGINS:-20}
source bench/lib.sh
need sftp rclone python3

# --- Files ------------------------------------------------------------------
mkdir -p "$work/in/small" "$work/local"
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$work/in/big.bin"
SMALL=${SMALL:-200}
for i in $(seq -w 1 "$SMALL"); do head -c 4096 /dev/urandom > "$work/in/small/f$i"; done
ssh-keygen -q -t ed25519 -N '' -f "$work/id"

# --- Targets ----------------------------------------------------------------
BG_PORT=$(free_port)
ADMIN_PORT=$(free_port)
ADMIN_HASH=$(echo bench | "$BIN" hash-password)
cat > "$work/gateway.toml" <<EOF
[server]
keys_dir = "$work/bg-keys"
state_dir = "$work/bg-state"
[sftp]
listen = "127.0.0.1:$BG_PORT"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[[admin.users]]
name = "ops"
password = "$ADMIN_HASH"
$(s3_remote_toml)
$(s3_remote_toml | sed 's/^\[remotes.s3\]/[remotes.s3nodigest]/')
checksums = []
[[users]]
name = "bench"
authorized_keys = ["$(cat "$work/id.pub")"]
home = "s3:/bucketgate"
[[users]]
name = "console"
authorized_keys = ["$(cat "$work/id.pub")"]
home = "s3:/bgconsole"
[[users]]
name = "nodigest"
authorized_keys = ["$(cat "$work/id.pub")"]
home = "s3nodigest:/nodigest"
[[users]]
name = "twin"
authorized_keys = ["$(cat "$work/id.pub")"]
home = "s3:/twin"
[[users]]
name = "governed"
authorized_keys = ["$(cat "$work/id.pub")"]
home = "s3:/governed"
quota = "1000GiB"
quota_files = 100000000
max_file_size = "100GiB"
bandwidth_up = "100GiB/s"
bandwidth_down = "100GiB/s"
[[users.filters]]
path = "/"
deny = ["*.exe", "*.js"]
EOF
start_bucketgate "$BG_PORT"

start_rclone_sftp
py "s3.put_object(Bucket='$BUCKET', Key='rclone/.keep', Body=b'')"

# bucketgate-governed: the same gateway as a user with a quota, quota_files,
# max_file_size, both bandwidths and a filter, all too large to bind: what
# holding a user to them costs (README "Quotas and limits").
# bucketgate-twin: the same gateway as another user just like bench: what
# two identical columns differ by is this machine's noise.
# bucketgate-nodigest: the same gateway on a remote with `checksums = []`,
# so the cost of the digests (SHA-256 by default) shows in one run.
# bucketgate-console: the same gateway while the admin console is open in
# headless Chromium on its live sessions view; CONSOLE=poll makes the
# page's requests without a browser (the gateway's cost alone), CONSOLE=0
# leaves the column out.
CONSOLE=${CONSOLE:-browser}
targets=(bucketgate bucketgate-twin bucketgate-governed bucketgate-nodigest rclone)
if [ "$CONSOLE" = poll ] || { [ "$CONSOLE" = browser ] && command -v chromium >/dev/null \
    && python3 -c 'import playwright' 2>/dev/null; }; then
    targets+=(bucketgate-console)
fi
if start_sshd "$work/id.pub"; then
    targets+=(openssh)
fi
if [ -n "${TARGETS:-}" ]; then
    read -r -a targets <<< "$TARGETS"
fi

# target -> "port user remote-dir"
endpoint_of() {
    case $1 in
        bucketgate) echo "$BG_PORT bench /" ;;
        bucketgate-console) echo "$BG_PORT console /" ;;
        bucketgate-nodigest) echo "$BG_PORT nodigest /" ;;
        bucketgate-governed) echo "$BG_PORT governed /" ;;
        bucketgate-twin) echo "$BG_PORT twin /" ;;
        rclone) echo "$RC_PORT bench /" ;;
        openssh) echo "$OS_PORT $(id -un) $work/local" ;;
    esac
}
sftp_run() { # target, batch text
    read -r port user dir < <(endpoint_of "$1")
    sftp_batch "$port" "$user" "cd $dir
$2"
}
# What the gateway spent so far: CPU seconds, and requests sent to S3 (its
# /metrics). The targets take turns on one gateway, so what a workload
# adds is its own: the cost of governance shows here without the noise
# of wall-clock time on a machine the store and the clients share.
gateway_spent() {
    local ticks
    ticks=$(awk '{print $14 + $15}' "/proc/$BG_PID/stat")
    echo "$(python3 -c "print($ticks / $(getconf CLK_TCK))")" \
        "$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" \
            | awk '/^bucketgate_s3_requests_total/ {n += $2} END {print n + 0}')"
}
sftp_repeat() { # times, target, batch
    local i
    for ((i = 0; i < $1; i++)); do sftp_run "$2" "$3"; done
}
sftp_timed() { # target, workload, batch, [sessions one after another: 1]
    local cpu0 req0 cpu1 req1
    [[ $1 == bucketgate* ]] && read -r cpu0 req0 < <(gateway_spent)
    timed "$work/times" "$1" "$2" sftp_repeat "${4:-1}" "$1" "$3"
    if [[ $1 == bucketgate* ]]; then
        read -r cpu1 req1 < <(gateway_spent)
        echo "$1 $2 $(elapsed "$cpu0" "$cpu1")" >> "$work/cpu"
        echo "$1 $2 $((req1 - req0))" >> "$work/requests"
    fi
}

# 1000 entries to list per round, written straight to each store: a fresh
# folder each round, so no target answers from a listing it cached earlier
# (rclone keeps listings for 5 minutes; the gateway always asks S3).
py "
for r in range(1, $ROUNDS + 1):
    for prefix in ['bucketgate', 'bgconsole', 'nodigest', 'governed', 'twin', 'rclone']:
        for i in range(1000):
            s3.put_object(Bucket='$BUCKET', Key=f'{prefix}/list{r}/e{i:04d}', Body=b'x')
"
for r in $(seq 1 "$ROUNDS"); do
    mkdir -p "$work/local/list$r"
    for i in $(seq -w 0 999); do echo x > "$work/local/list$r/e$i"; done
done

: > "$work/times"
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    raw_s3 "$work/in/big.bin" big
    for t in "${targets[@]}"; do
        rm -rf "$work/out"; mkdir -p "$work/out"
        if [ "$t" = bucketgate-console ]; then
            python3 bench/console_open.py "http://127.0.0.1:$ADMIN_PORT/" ops bench "$CONSOLE" > "$work/console.out" &
            console_pid=$!
            pids+=("$console_pid")
            until grep -q open "$work/console.out" 2>/dev/null; do sleep 0.2; done
        fi
        sftp_timed "$t" put_big "put in/big.bin big.bin"
        sftp_timed "$t" get_big "get big.bin out/big.bin"
        cmp -s "$work/in/big.bin" "$work/out/big.bin" || { echo "$t: downloaded bytes differ" >&2; exit 1; }
        sftp_timed "$t" put_small "mkdir small$round
put -r in/small/* small$round/"
        sftp_timed "$t" get_small "get -r small$round out/small"
        sftp_timed "$t" list_1000 "ls -l list$round"
        sftp_timed "$t" "login_$LOGINS" "pwd" "$LOGINS"
        sftp_run "$t" "rm big.bin"
        if [ "$t" = bucketgate-console ]; then kill "$console_pid"; wait "$console_pid" 2>/dev/null || true; fi
    done
done

# Memory: a fresh gateway, PARALLEL uploads of SIZE_MIB at once; peak RSS.
kill "$BG_PID"; wait "$BG_PID" 2>/dev/null || true
start_bucketgate "$BG_PORT"
uploads=()
for i in $(seq 1 "$PARALLEL"); do
    sftp_run bucketgate "put in/big.bin par$i.bin" &
    uploads+=($!)
done
for u in "${uploads[@]}"; do wait "$u"; done
peak_kib=$(awk '/VmHWM/ {print $2}' "/proc/$BG_PID/status")

bg_targets=()
for t in "${targets[@]}"; do [[ $t == bucketgate* ]] && bg_targets+=("$t"); done
targets+=(raw-s3)
medians "$work/times" "${targets[@]}"
echo
echo "The gateway's CPU seconds and S3 requests per workload:"
UNIT="s cpu" medians "$work/cpu" "${bg_targets[@]}"
UNIT=" req" medians "$work/requests" "${bg_targets[@]}"
echo
echo "peak RSS with $PARALLEL parallel $SIZE_MIB MiB uploads: $((peak_kib / 1024)) MiB" \
    "(bound $PARALLEL x (4+1) x 8 MiB + 64 MiB = $((PARALLEL * 40 + 64)) MiB)"
