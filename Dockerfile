# syntax=docker/dockerfile:1
# The flowpin operator image: `docker build -t flowpin:0.1.0 .`
# Stage 1 builds wheels for flowpin and its dependencies; stage 2 installs them into a slim
# runtime that runs as an unprivileged user with a read-only root filesystem.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# Everything comes from the locks in requirements/ (pinned, with hashes; `make lock`): the
# build backend, then the runtime dependencies as wheels, then flowpin's own wheel.
COPY requirements ./requirements
RUN pip install --no-cache-dir --no-deps --require-hashes -r requirements/build.txt
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN pip download --no-cache-dir --only-binary :all: --no-deps --require-hashes \
        -r requirements/runtime.txt -d /wheels \
    && pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels/flowpin . \
    && cp requirements/runtime.txt /wheels/runtime.txt

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FLOWPIN_CACHE=/var/cache/flowpin
# The wheels are bind-mounted from the build stage for this one RUN: they never land in a
# layer of the image (a COPY followed by `rm` would still ship them in the COPY's layer).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels --no-deps --require-hashes \
        -r /wheels/runtime.txt \
    && pip install --no-cache-dir --no-index --no-deps /wheels/flowpin/*.whl \
    && mkdir -p /var/cache/flowpin \
    && chown 65532:65532 /var/cache/flowpin
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["flowpin"]
CMD ["operator", "--log-format=json"]
