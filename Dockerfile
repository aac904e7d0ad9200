# One image for every CastRay service; the command picks the service (see docker-compose.yml).
#   docker build -t castray .                          # everything (Ray included): discovery, registry,
#                                                      # transfer, a Ray head, `castray up`
#   docker build -t castray-gateway --build-arg EXTRAS=gateway .   # the gateway alone, without Ray
FROM python:3.11-slim

ARG EXTRAS=all

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    CASTRAY_DATA_DIR=/data

WORKDIR /app

COPY pyproject.toml README.md ./
COPY castray ./castray
COPY shared ./shared
COPY services ./services

RUN pip install ".[${EXTRAS}]" \
    && useradd --create-home --uid 1000 castray \
    && mkdir -p /data \
    && chown castray:castray /data

USER castray
VOLUME ["/data"]
EXPOSE 8000

# Without a command: everything in one container (embedded Redis, a local Ray head if none is found).
CMD ["castray", "up", "--host", "0.0.0.0"]
