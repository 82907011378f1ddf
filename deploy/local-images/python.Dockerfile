# Stand-in for python:3.11-slim: Debian's Python 3.11 with venv, certificate authorities.
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
