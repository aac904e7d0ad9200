# Stand-in for python:3.11-slim: Debian bookworm's Python 3.11, with `python` and `pip` on PATH from a
# venv at /usr/local (as in the official image), and the host's CA bundle so pip reaches PyPI through it.
ARG ROOTFS
FROM ${ROOTFS}
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV LANG=C.UTF-8 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
RUN python3 -m venv /usr/local && /usr/local/bin/python --version
CMD ["python3"]
