# Minimal image; the operations issue finishes it (non-root user, volumes, healthcheck).
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
COPY --from=build /src/target/release/bucketgate /usr/local/bin/bucketgate
WORKDIR /etc/bucketgate
EXPOSE 2222 2121
ENTRYPOINT ["bucketgate"]
CMD ["serve", "--config", "/etc/bucketgate/gateway.toml"]
