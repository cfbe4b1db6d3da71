# syntax=docker/dockerfile:1
# Consentinel service image: the gate, the detectors and the operator commands (`audit verify`,
# `lineage`, `recipients`, ...), built from the wheel. Not the `report` commands: their polars
# (the [reports] extra, about 180 MB) stays out; run reports from a `pip install
# 'consentinel[reports]'`. Build (the labels record the commit and the time):
#   docker build --build-arg REVISION="$(git rev-parse HEAD)" \
#                --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
#                -t ghcr.io/consentinel/consentinel:0.1.0 .
# Run:    docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=... -e SCHEMA_REGISTRY_URL=... \
#                -v $PWD/policy.yaml:/etc/consentinel/policy.yaml:ro \
#                -v $PWD/keys:/var/lib/consentinel/keys:ro \
#                -e CONSENTINEL_SIGNING_KEY=/var/lib/consentinel/keys/consentinel-signing.pem \
#                ghcr.io/consentinel/consentinel:0.1.0 gate
# The gate refuses to start without CONSENTINEL_SIGNING_KEY (a 0600 file owned by uid 10001;
# `consentinel audit keygen --out keys` makes one) unless run `gate --unsigned`.
#
# Reproducible inputs:
# - the base image by tag AND digest (of the multi-architecture index; Docker uses the digest).
#   To move to a newer base: `docker buildx imagetools inspect python:3.11.X-slim-bookworm` (or
#   `crane digest python:3.11.X-slim-bookworm`) prints the index digest; put tag and digest here.
#   tests/deploy/test_image.py fails if the digest is missing.
# - every Python package at the version pinned in deploy/image/constraints.txt (PIP_CONSTRAINT,
#   for the wheel's build tools too); `.venv/bin/python deploy/image/lock.py` refreshes it after a
#   dependency change in pyproject.toml.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# ---- build: the wheel, then wheels of every dependency of consentinel[service] ----------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CONSTRAINT=/constraints.txt
WORKDIR /src
COPY deploy/image/constraints.txt /constraints.txt
RUN pip install "build==1.2.2.post1"
# streams/_data holds symlinks into schemas/ and deploy/: copy all three so they resolve.
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY deploy/topics.yaml deploy/policy.example.yaml deploy/acls.yaml deploy/
COPY streams/ streams/
RUN python -m build --wheel --outdir /dist . \
 && pip wheel --wheel-dir /wheels "$(ls /dist/consentinel-*.whl)[service]"

# ---- runtime: no compiler, no sources, not root --------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
# OCI image annotations (https://github.com/opencontainers/image-spec/blob/main/annotations.md)
LABEL org.opencontainers.image.title="consentinel" \
      org.opencontainers.image.description="Streaming data governance: a consent gate and bulk-export detectors on Kafka" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/consentinel/consentinel" \
      org.opencontainers.image.url="https://github.com/consentinel/consentinel" \
      org.opencontainers.image.documentation="https://github.com/consentinel/consentinel/blob/main/docs/deploy.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    CONSENTINEL_LOG_FORMAT=json \
    CONSENTINEL_STATE_STORE=rocksdb \
    CONSENTINEL_STATE_DIR=/var/lib/consentinel/state \
    METRICS_PORT=9464
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,from=build,source=/dist,target=/dist \
    --mount=type=bind,from=build,source=/constraints.txt,target=/constraints.txt \
    PIP_CONSTRAINT=/constraints.txt \
    pip install --no-index --find-links=/wheels "$(ls /dist/consentinel-*.whl)[service]" \
 && groupadd --system --gid 10001 consentinel \
 && useradd --system --uid 10001 --gid consentinel --home-dir /var/lib/consentinel \
    --shell /usr/sbin/nologin consentinel \
 && mkdir -p /var/lib/consentinel/state /var/lib/consentinel/keys /etc/consentinel \
 && chown -R consentinel:consentinel /var/lib/consentinel \
 && chmod 0700 /var/lib/consentinel/keys
WORKDIR /var/lib/consentinel
USER 10001:10001
EXPOSE 9464
# /live answers while the process's loop turns; /ready (used by orchestrators for traffic) is
# stricter. The slim image has no curl: ask with Python's standard library.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os,sys,urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:%s/live' % os.environ.get('METRICS_PORT', '9464'), timeout=2).status == 200 else 1)"]
ENTRYPOINT ["consentinel"]
CMD ["gate"]
