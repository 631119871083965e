# The launch-tui agent image, for deploy/kubernetes (README, "Running the agent in a
# Kubernetes cluster"). Build it from the repository's root:
#
#   docker build -f deploy/agent.Dockerfile -t registry.example.com/team/launch-tui-agent .
#
# It lives here, not as the root Dockerfile, because it is one way to deploy the
# agent, not how the project is built or tested; the root's .dockerignore lets only
# what packaging needs into the context.
#
# BASE: any Debian-like image with Python 3.11+ and its venv module (python3-venv on
# Debian's own python3). The project goes into a virtual environment, so the
# base's Python stays untouched (Debian's refuses system-wide pip installs).
ARG BASE=python:3.11-slim
FROM ${BASE}

# A PyPI mirror or private index to install from, e.g.
# --build-arg PIP_INDEX_URL=https://pypi.example.com/simple/ (default: PyPI).
ARG PIP_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY core/ core/
COPY backends/ backends/
COPY tui/ tui/
# kubernetes: the target's client; postgres: the shared store's driver.
RUN python3 -m venv /opt/launch-tui \
    && /opt/launch-tui/bin/pip install '.[kubernetes,postgres]' \
    && /opt/launch-tui/bin/launch-tui --help >/dev/null \
    && rm -rf /src \
    && mkdir -p /var/lib/launch-tui /home/launch \
    && chown 10001:10001 /var/lib/launch-tui /home/launch

# A numeric non-root user (no passwd entry needed), so Kubernetes can check
# runAsNonRoot; deploy/kubernetes runs it as the same UID.
USER 10001:10001
WORKDIR /home/launch
ENV PATH=/opt/launch-tui/bin:$PATH \
    HOME=/home/launch \
    LAUNCH_TUI_HOME=/var/lib/launch-tui
ENTRYPOINT ["launch-tui"]
CMD ["--help"]
