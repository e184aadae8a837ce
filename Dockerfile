# aitier as a container: the service with its two default models baked in.
#   docker build -t aitier:0.1.0 .
#   docker run -p 8080:8080 -p 9090:9090 -e AITIER_ALLOW_OPEN=true aitier:0.1.0
# Without AITIER_ALLOW_OPEN the server refuses to start on 0.0.0.0 until an
# API key exists in its database (docs/operations.md#running-in-a-container).

# Build. The engine is compiled for x86-64-v3 (AVX2, FMA, F16C: Intel
# Haswell and AMD Zen and later), not for the CPU of the machine that
# builds the image, so the image runs wherever it is pulled.
FROM rust:1.95-slim-trixie AS build
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang libclang-dev g++ make python3 python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ENV RUSTFLAGS="-C target-cpu=x86-64-v3"
RUN cargo build --release --locked -p aitier-server --bin aitier \
 && scripts/fetch-model.sh \
 && scripts/fetch-model.sh minilm

# Run: a slim base, no compiler, a user without a shell or privileges.
FROM debian:trixie-slim
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/aitier --create-home --shell /usr/sbin/nologin aitier
COPY --from=build /src/target/release/aitier /usr/local/bin/aitier
COPY --from=build /src/models/SmolLM2-135M-Instruct.Q4_1.gguf /src/models/all-MiniLM-L6-v2.F32.gguf /opt/aitier/models/
USER 10001
WORKDIR /var/lib/aitier
ENV AITIER_HOST=0.0.0.0 \
    AITIER_PORT=8080 \
    AITIER_METRICS_ADDR=0.0.0.0:9090 \
    AITIER_MODELS_DIR=/opt/aitier/models \
    AITIER_DATA_DIR=/var/lib/aitier/data \
    AITIER_LOG_FORMAT=json
EXPOSE 8080 9090
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["aitier", "probe", "--path", "/health"]
ENTRYPOINT ["aitier"]
CMD ["serve"]
