# paper digest: `digest serve` (web pages + the daily run) in a slim, non-root image.
#   docker build -t paper-digest .
#   docker run -v digest-data:/data -v $PWD/config.toml:/data/config.toml:ro \
#              -e DIGEST_SECRET_KEY=... -e DIGEST_SMTP_PASSWORD=... -p 127.0.0.1:8000:8000 paper-digest
# The config must listen on all interfaces inside the container: [web] host = "0.0.0.0".

# --- build: install the package and its pinned dependencies into a virtualenv -----------------------
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (cached while only the code changes), with the versions the tests ran against.
COPY pyproject.toml constraints.txt README.md ./
COPY digest ./digest
RUN pip install --constraint constraints.txt .

# --- runtime: the virtualenv only, no compilers, no build files ---------------------------------------
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DIGEST_CONFIG=/data/config.toml
RUN groupadd --system --gid 10001 digest \
    && useradd --system --uid 10001 --gid digest --home-dir /data --shell /usr/sbin/nologin digest \
    && mkdir -p /data \
    && chown digest:digest /data
COPY --from=builder /opt/venv /opt/venv
USER digest
WORKDIR /data
# SQLite database, secret key file (if used), config.toml.
VOLUME ["/data"]
EXPOSE 8000
# /healthz answers 200 while healthy, 503 when the last run failed or the scheduled one has not succeeded
# (its JSON carries the last run's status and any alert; the reason only for this machine's callers).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; url = os.environ.get('DIGEST_HEALTHCHECK_URL', 'http://127.0.0.1:8000/healthz'); sys.exit(0 if urllib.request.urlopen(url, timeout=4).status == 200 else 1)"]
# SIGTERM: the run in progress finishes the messages in flight, releases the rest, and the process exits 0.
STOPSIGNAL SIGTERM
CMD ["digest", "serve"]
