# The nsinspect agent image.  Build from the repository root:
#   docker build -t ghcr.io/nsinspect/nsinspect-agent:0.1.0 .
# or without a Docker engine (buildah; an OCI archive for ctr/skopeo):
#   sudo python3 scripts/agent_image.py build --out nsinspect-agent.tar
# The release workflow (.github/workflows/release.yml) publishes it for amd64 and arm64.
# Stage 1 builds wheels as an unprivileged user (ours with the scan's C speed-up, so gcc is there);
# stage 2 installs them with no compiler, no pip cache and no build tools, and runs
# `nsinspect --proc /host/proc agent` (daemonset/).

# Any Python 3.11 image with pip and its headers will do; the tests build on one made with debootstrap.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS build
# gcc for nsinspect/node/_scan.c only (setup.py); the image's Python headers are already there.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 build
USER build
WORKDIR /home/build/src
COPY --chown=build:build pyproject.toml setup.py README.md ./
COPY --chown=build:build nsinspect ./nsinspect
# nsinspect/manifests is a link to ../daemonset (shipped for `nsinspect deploy`)
COPY --chown=build:build daemonset ./daemonset
# grpcio, protobuf and psutil come as manylinux wheels: --only-binary makes a dependency that would
# need building fail the build instead of slipping in (it does not apply to this project itself).
RUN python -m pip wheel --no-cache-dir --only-binary=:all: --wheel-dir /home/build/wheels .

FROM ${PYTHON_IMAGE}
COPY --from=build /home/build/wheels /tmp/wheels
RUN python -m pip install --no-cache-dir --no-index --find-links /tmp/wheels nsinspect \
    && rm -rf /tmp/wheels
# Runs as uid 0 with every capability dropped but SYS_PTRACE (see daemonset/daemonset.yaml):
# the runtime socket belongs to root, and Linux grants added capabilities to uid 0 only.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
EXPOSE 9870
ENTRYPOINT ["nsinspect"]
CMD ["--proc", "/host/proc", "agent", "--listen", "127.0.0.1:9870"]
