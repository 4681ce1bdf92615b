# deltagate server image: build with the Rust toolchain, run on a slim Debian.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin deltagate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/deltagate /usr/local/bin/deltagate
EXPOSE 5432
ENV DELTAGATE_LISTEN=0.0.0.0:5432
ENTRYPOINT ["/usr/local/bin/deltagate"]
