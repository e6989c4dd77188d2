#!/usr/bin/env bash
# Client libraries partners script with, each running a whole workflow
# (mkdir, a SIZE_MIB upload, list, stat, download, rename, overwrite,
# append, delete) against bucketgate over S3: Node's ssh2-sftp-client and
# basic-ftp (npm, installed into the work folder) and PHP's phpseclib3
# (Debian php-phpseclib3). Not timed: it says which clients work, with
# their versions, for the README's client table. The end-to-end tests
# cover OpenSSH sftp and scp, lftp, curl, wget, paramiko, asyncssh,
# ftplib, Apache Commons Net and ncftp.
#
#   bench/clients.sh
#
# Needs: a release build, node and npm, php-cli with php-phpseclib3, openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-20}
source bench/lib.sh
need node npm php openssl

(cd "$work" && npm init -y >/dev/null && npm install --silent basic-ftp ssh2-sftp-client >/dev/null 2>&1)
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$work/big.bin"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -keyout "$work/ftps.key" -out "$work/ftps.pem" 2>/dev/null
SFTP_PORT=$(free_port) FTP_PORT=$(free_port)
HASH=$(printf 'bench\n' | "$BIN" hash-password)
{
    cat <<TOML
[server]
keys_dir = "$work/bg-keys"
state_dir = "$work/bg-state"
[sftp]
listen = "127.0.0.1:$SFTP_PORT"
[ftp]
listen = "127.0.0.1:$FTP_PORT"
passive_ports = "40000-40999"
tls_cert = "$work/ftps.pem"
tls_key = "$work/ftps.key"
TOML
    s3_remote_toml
    cat <<TOML
[[users]]
name = "bench"
password = "$HASH"
home = "s3:/clients"
TOML
} > "$work/gateway.toml"
start_bucketgate "$SFTP_PORT"
wait_port "$FTP_PORT"

version() { node -p "require('$work/node_modules/$1/package.json').version"; }
status=0
NODE_PATH="$work/node_modules" node bench/clients/sftp_node.js "$SFTP_PORT" bench bench "$work" || status=1
NODE_PATH="$work/node_modules" node bench/clients/ftp_node.js "$FTP_PORT" bench bench "$work" || status=1
php bench/clients/sftp_php.php "$SFTP_PORT" bench bench "$work" || status=1
echo "versions: ssh2-sftp-client $(version ssh2-sftp-client), basic-ftp $(version basic-ftp)," \
    "phpseclib3 $(dpkg-query -W -f '${Version}' php-phpseclib3 2>/dev/null || echo '?')," \
    "node $(node --version), php $(php -r 'echo PHP_VERSION;')"
grep -E '"level":"(WARN|ERROR)"|WARN|ERROR' "$work/bucketgate.log" || true
exit $status
