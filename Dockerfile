# Multi-stage build: compile in the Rust image, run in a slim Debian with only the binary,
# the static files and CA certificates (for smtps:// to a real provider).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin signup-queue

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app app \
 && mkdir -p /app /data && chown app /data
WORKDIR /app
COPY --from=build /src/target/release/signup-queue /usr/local/bin/signup-queue
COPY static ./static
USER app
ENV BIND=0.0.0.0:3000 \
    DATABASE_URL=sqlite:///data/signup-queue.db
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fs http://127.0.0.1:3000/health || exit 1
ENTRYPOINT ["signup-queue"]
CMD ["serve"]
