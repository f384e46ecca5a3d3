# Worker Certification: the `certify` command (worker, web front, CLI) in one image.
# Used by docker-compose.yml for the `worker` and `web` services:
#   docker compose build   /   docker build -t worker-certification:local .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CERTIFY_DATA_DIR=/data

WORKDIR /app
# Only what the package needs (no .venv, .cache or .git in the image).
COPY pyproject.toml ./
COPY events/ events/
COPY rules/ rules/
COPY ledger/ ledger/
COPY projections/ projections/
COPY reports/ reports/
COPY streams/ streams/
RUN pip install . \
    && useradd --create-home --uid 1000 certify \
    && mkdir -p /data /duckdb \
    && chown certify:certify /data /duckdb

USER certify
VOLUME ["/data", "/duckdb"]
# 8080: `certify serve`; 6066: the Faust worker's web server (the HTTP API, Faust's pages)
EXPOSE 8080 6066
ENTRYPOINT ["certify"]
CMD ["--help"]
