# One image for every engram process: `engram migrate`, `engram run <service>`, `engram status`.
#
#   docker build -t engram .
#   docker run --rm -e DATABASE_URL=... engram migrate
#   docker run --rm -e NATS_URL=... -e DATABASE_URL=... engram run ingest
#
# Workers read NATS_URL, DATABASE_URL and their own prefixed settings (INGEST_BATCH_SIZE,
# INGEST_MAX_DELIVER, ... see services/<service>/settings.py). Nothing is baked in here.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: a virtualenv holding the project and its dependencies ---------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first, from pyproject.toml alone (stub packages), so a source change does not
# reinstall them; then the real source over it.
# The contracts and the client are their own distribution (client/), which engram requires.
COPY pyproject.toml ./
COPY client/pyproject.toml client/README.md ./client/
RUN mkdir services client/contracts client/engram_client \
    && touch services/__init__.py client/contracts/__init__.py client/engram_client/__init__.py \
    && pip install ./client . \
    && pip uninstall -y engram engram-bus-client \
    && rm -rf services client/contracts client/engram_client build client/build \
       *.egg-info client/*.egg-info

COPY client ./client
COPY services ./services
COPY sql ./sql
RUN pip install --no-deps ./client .

# --- runtime -----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN groupadd --system --gid 10001 engram \
    && useradd --system --uid 10001 --gid engram --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin engram

COPY --from=build /opt/venv /opt/venv
# The wheel carries the migrations (package `sql`); fail the build if they went missing.
RUN python -c "from services.runtime.migrate import SQL_ROOT; \
assert (SQL_ROOT / 'runtime').is_dir(), f'no migrations at {SQL_ROOT}'"

USER 10001:10001

# No port is exposed: workers pull from NATS and write to PostgreSQL; they listen on nothing.
ENTRYPOINT ["engram"]
CMD ["--help"]
