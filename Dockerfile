# One image for every CastRay service; the command picks the service (see docker-compose.yml).
#   docker build -t castray .                                      # everything, Ray included
#   docker build -t castray-gateway --build-arg EXTRAS=gateway .   # the gateway alone, without Ray
#   docker build --build-arg BASE_IMAGE=<image> .                  # another Python 3.11 base (docker/standins/)
#
# The dependencies, CastRay's wheel and the image are built in stages; the image gets the venv and the wheel.
# No source folder is left in the image, so nothing can shadow the installed package (`python -m` puts the
# working directory first on sys.path, and the folder castray/ there lacks the package-dir mapping).
ARG BASE_IMAGE=python:3.11-slim

# Stage 1: the dependencies, into a venv at /opt/castray, from pyproject.toml and empty packages. It changes
# only when pyproject.toml does: a change to the source reuses it, and its copy below (Ray is ~240 MB).
FROM ${BASE_IMAGE} AS deps
ARG EXTRAS=all
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/castray
WORKDIR /src
COPY pyproject.toml ./
# (README.md is the package's readme: an empty one here, so that an edit to it does not rebuild this layer.)
RUN touch README.md \
    && for d in castray castray/client shared services/discovery services/gateway services/gateway/original \
        services/node-registry services/transfer; do \
        mkdir -p "$d" && touch "$d/__init__.py"; \
    done \
    && /opt/castray/bin/pip install ".[${EXTRAS}]" \
    && /opt/castray/bin/pip uninstall -y castray

# Stage 2: CastRay itself, as a wheel.
FROM deps AS wheel
COPY README.md ./
COPY castray ./castray
COPY shared ./shared
COPY services ./services
# The first stage's build/ holds its empty __init__.py files, newer than the sources COPY brings (it keeps
# their times): setuptools would take them as up to date and ship them. Built from nothing instead.
RUN rm -rf build ./*.egg-info && /opt/castray/bin/pip wheel --no-deps --wheel-dir /wheels .

# The image: the venv, then the wheel installed into it (a small layer of its own).
FROM ${BASE_IMAGE}
ENV PATH=/opt/castray/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    CASTRAY_DATA_DIR=/data
RUN useradd --create-home --uid 1000 castray \
    && mkdir -p /data \
    && chown castray:castray /data
COPY --from=deps /opt/castray /opt/castray
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && python -c "import castray.cli"
USER castray
# Not the source (there is none here): the home folder.
WORKDIR /home/castray
VOLUME ["/data"]
EXPOSE 8000

# Without a command: everything in one container (embedded Redis, a local Ray head if none is found).
# Bound to every interface so that a published port reaches it; set CASTRAY_API_TOKEN when it is published
# beyond this machine.
CMD ["castray", "up", "--host", "0.0.0.0"]
