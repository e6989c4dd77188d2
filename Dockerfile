# bucketgate: build with the same command CI runs (`cargo build --release
# --locked`), then run it from a slim image as a non-root user.
#
#   docker build -t bucketgate .
#   docker run -v $PWD/gateway.toml:/etc/bucketgate/gateway.toml:ro \
#       -v bucketgate-data:/var/lib/bucketgate -p 2222:2222 -p 9100:9100 bucketgate
#
# The config's relative paths (keys_dir, state_dir, a filesystem root)
# resolve under /var/lib/bucketgate; listen addresses must be 0.0.0.0 in a
# container.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
# CA roots for HTTPS S3 endpoints; a system user with no shell.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/bucketgate --shell /usr/sbin/nologin bucketgate \
 && mkdir -p /etc/bucketgate /var/lib/bucketgate \
 && chown bucketgate /var/lib/bucketgate
COPY --from=build /src/target/release/bucketgate /usr/local/bin/bucketgate
USER bucketgate
WORKDIR /var/lib/bucketgate
# The config (read-only) and the host keys, sync state and local files.
VOLUME ["/etc/bucketgate", "/var/lib/bucketgate"]
# SFTP, FTP, implicit FTPS, the admin endpoint, FTP passive ports.
EXPOSE 2222 2121 9990 9100 50000-50100
# SIGTERM: transfers get [server].shutdown_grace, then the rest are aborted.
STOPSIGNAL SIGTERM
ENTRYPOINT ["bucketgate"]
CMD ["serve", "--config", "/etc/bucketgate/gateway.toml"]
