# One image for every CastRay service; the command picks the service (see docker-compose.yml).
#   docker build -t castray .                                      # everything, Ray included
#   docker build -t castray-gateway --build-arg EXTRAS=gateway .   # the gateway alone, without Ray
#   docker build --build-arg BASE_IMAGE=<image> .                  # another Python 3.11 base (docker/standins/)
#
# Two stages: the first installs CastRay into a venv at /opt/castray, the second copies only that venv.
# No source folder is left in the image, so nothing can shadow the installed package (`python -m` puts the
# working directory first on sys.path, and the folder castray/ there lacks the package-dir mapping).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG EXTRAS=all
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/castray
WORKDIR /src
# The dependencies first, in a layer of their own, from pyproject.toml and empty packages: a change to the
# source alone reuses this layer (Ray and the rest are not installed again).
COPY pyproject.toml README.md ./
RUN for d in castray shared services/discovery services/gateway services/node-registry services/transfer; do \
        mkdir -p "$d" && touch "$d/__init__.py"; \
    done \
    && /opt/castray/bin/pip install ".[${EXTRAS}]" \
    && /opt/castray/bin/pip uninstall -y castray
COPY castray ./castray
COPY shared ./shared
COPY services ./services
RUN /opt/castray/bin/pip install --no-deps . \
    && /opt/castray/bin/python -c "import castray.cli"

FROM ${BASE_IMAGE}
ENV PATH=/opt/castray/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    CASTRAY_DATA_DIR=/data
COPY --from=build /opt/castray /opt/castray
RUN useradd --create-home --uid 1000 castray \
    && mkdir -p /data \
    && chown castray:castray /data
USER castray
# Not the source (there is none here): the home folder.
WORKDIR /home/castray
VOLUME ["/data"]
EXPOSE 8000

# Without a command: everything in one container (embedded Redis, a local Ray head if none is found).
# Bound to every interface so that a published port reaches it; set CASTRAY_API_TOKEN when it is published
# beyond this machine.
CMD ["castray", "up", "--host", "0.0.0.0"]
