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
COPY pyproject.toml ./
RUN mkdir contracts services \
    && touch contracts/__init__.py services/__init__.py \
    && pip install . \
    && pip uninstall -y engram \
    && rm -rf contracts services build *.egg-info

COPY contracts ./contracts
COPY services ./services
COPY sql ./sql
RUN pip install --no-deps .

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
