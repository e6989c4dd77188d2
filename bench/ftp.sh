#!/usr/bin/env bash
# FTP benchmark: a SIZE_MIB file put and got with curl and with lftp,
# through bucketgate (S3 behind it) and through vsftpd (local disk), beside
# a raw S3 copy of the same file (`rclone copyto`). Rounds are interleaved
# and the medians are reported with ratios.
#
#   bench/ftp.sh                  # moto_server on loopback as the S3 endpoint
#   S3_ENDPOINT=http://127.0.0.1:9000 S3_KEY=... S3_SECRET=... bench/ftp.sh
#
# Needs: a release build (cargo build --release), curl, lftp, rclone,
# vsftpd (run as root; anonymous uploads into a scratch folder), python3
# with boto3 (pip install 'moto[server]'). Variables: ROUNDS (3), SIZE_MIB (256).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SIZE_MIB=${SIZE_MIB:-256}
source bench/lib.sh
need curl lftp rclone python3
VSFTPD=$(command -v vsftpd || ls /usr/sbin/vsftpd 2>/dev/null || true)

head -c "$((SIZE_MIB << 20))" /dev/urandom > "$work/big.bin"

# --- bucketgate: FTP in front of the bucket ---------------------------------
BG_PORT=$(free_port)
HASH=$(printf 'bench\n' | "$BIN" hash-password)
cat > "$work/gateway.toml" <<EOF
[server]
keys_dir = "$work/bg-keys"
state_dir = "$work/bg-state"
[ftp]
listen = "127.0.0.1:$BG_PORT"
passive_ports = "40000-40999"
$(s3_remote_toml)
$(s3_remote_toml | sed 's/^\[remotes.s3\]/[remotes.s3nodigest]/')
checksums = []
[[users]]
name = "bench"
password = "$HASH"
home = "s3:/bucketgate"
[[users]]
name = "nodigest"
password = "$HASH"
home = "s3nodigest:/nodigest"
EOF
start_bucketgate "$BG_PORT"
# bucketgate-nodigest: the same gateway on a remote with `checksums = []`,
# so the cost of the digests (SHA-256 by default) shows in one run.
targets=(bucketgate bucketgate-nodigest)

# --- vsftpd: the same protocol on local disk ---------------------------------
if [ -n "$VSFTPD" ] && [ "$(id -u)" = 0 ]; then
    VS_PORT=$(free_port)
    mkdir -p "$work/vsftp/up" /var/run/vsftpd/empty
    chown ftp "$work/vsftp/up" 2>/dev/null || chmod 777 "$work/vsftp/up"
    cat > "$work/vsftpd.conf" <<EOF
listen=YES
listen_address=127.0.0.1
listen_port=$VS_PORT
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=$work/vsftp
local_enable=NO
write_enable=YES
anon_upload_enable=YES
anon_other_write_enable=YES
anon_umask=022
pasv_min_port=41000
pasv_max_port=41999
seccomp_sandbox=NO
EOF
    "$VSFTPD" "$work/vsftpd.conf" 2>"$work/vsftpd.log" &
    pids+=($!)
    wait_port "$VS_PORT"
    targets+=(vsftpd)
else
    echo "(vsftpd not installed, or not root: the local-disk column is left out)" >&2
fi

# target -> "port user password folder"
endpoint_of() {
    case $1 in
        bucketgate) echo "$BG_PORT bench bench /" ;;
        bucketgate-nodigest) echo "$BG_PORT nodigest bench /" ;;
        vsftpd) echo "$VS_PORT anonymous x /up/" ;;
    esac
}
check() { # what, downloaded file
    cmp -s "$work/big.bin" "$2" || { echo "$1: downloaded bytes differ" >&2; exit 1; }
    rm -f "$2"
}
lftp_do() { # port user password commands
    lftp -c "set net:max-retries 1; set ftp:ssl-allow false; open -u $2,$3 -p $1 127.0.0.1; $4"
}

# One table per client; the raw S3 copy is the same in both.
: > "$work/curl"
: > "$work/lftp"
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    timed "$work/raw" rclone-s3 put rclone_s3 copyto --ignore-times "$work/big.bin" ":s3:$BUCKET/raw/big.bin"
    timed "$work/raw" rclone-s3 get rclone_s3 copyto --ignore-times ":s3:$BUCKET/raw/big.bin" "$work/raw.out"
    check rclone "$work/raw.out"
    for t in "${targets[@]}"; do
        read -r port user pass dir < <(endpoint_of "$t")
        url="ftp://127.0.0.1:$port$dir"
        timed "$work/curl" "$t" put curl -sS -u "$user:$pass" -T "$work/big.bin" "${url}c.bin"
        timed "$work/curl" "$t" get curl -sS -u "$user:$pass" -o "$work/c.out" "${url}c.bin"
        check "$t curl" "$work/c.out"
        timed "$work/lftp" "$t" put lftp_do "$port" "$user" "$pass" "put $work/big.bin -o ${dir}l$round.bin"
        timed "$work/lftp" "$t" get lftp_do "$port" "$user" "$pass" "get ${dir}l$round.bin -o $work/l.out"
        check "$t lftp" "$work/l.out"
    done
done

for client in curl lftp; do
    echo
    echo "== $client, $SIZE_MIB MiB"
    cat "$work/raw" >> "$work/$client"
    medians "$work/$client" "${targets[@]}" rclone-s3
done
