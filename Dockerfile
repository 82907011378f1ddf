# Ticketera's image: `ticketera` is the entrypoint; its commands `serve` (the default), `worker`,
# `migrate` and `mp-sim` are the stack's services.
#
# BASE_IMAGE: the official Python slim image by default; `make docker-build LOCAL_IMAGES=1` gives a
# stand-in built from Debian's packages for machines that cannot reach Docker Hub (deploy/local-images).
ARG BASE_IMAGE=python:3.11-slim

# -- Build: a virtual environment with the locked production dependencies and Ticketera ------------
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
# The base image's authorities, and those of a TLS-inspecting proxy the build must go through (see
# deploy/docker/extra-ca): pip trusts the two together.
COPY deploy/docker/extra-ca/ /tmp/extra-ca/
RUN { cat /etc/ssl/certs/ca-certificates.crt; find /tmp/extra-ca -name '*.pem' -exec cat {} +; } > /tmp/ca-bundle.pem
ENV PIP_CERT=/tmp/ca-bundle.pem
RUN python3 -m venv /opt/ticketera
# The dependencies first, in a layer of their own: a change to the code does not reinstall them.
COPY requirements-prod.lock /tmp/ticketera/
RUN /opt/ticketera/bin/pip install --require-hashes --only-binary=:all: -r /tmp/ticketera/requirements-prod.lock
COPY pyproject.toml README.md /tmp/ticketera/
COPY src /tmp/ticketera/src
RUN /opt/ticketera/bin/pip install --no-deps /tmp/ticketera

# -- Run: the environment and an unprivileged user, nothing else (no compilers, no pip cache) ---------
FROM ${BASE_IMAGE}
RUN useradd --system --uid 10001 --create-home --home-dir /app ticketera \
    && mkdir -p /app/data /app/logs && chown ticketera:ticketera /app/data /app/logs
COPY --from=build /opt/ticketera /opt/ticketera
ENV PATH=/opt/ticketera/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/app/data \
    LOG_DIR=/app/logs \
    PORT=3000
WORKDIR /app
USER ticketera
EXPOSE 3000
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:%s/health/ready' % os.environ.get('PORT', '3000'); sys.exit(0 if urllib.request.urlopen(url, timeout=2).status == 200 else 1)"]
ENTRYPOINT ["ticketera"]
CMD ["serve", "--host", "0.0.0.0"]
