#!/usr/bin/env bash
# `make docker-check`: build the CPU image, run it, use it as a device and as a QQ bot would, check
# that it runs as the non-root user with /data written and /models read-only, then remove what it
# started. Container traffic stays on loopback: host network, the service bound to 127.0.0.1.
#
# No registry but PyPI and Debian is needed: the base image is Debian 12 made locally with
# mmdebstrap and `docker import` (cached as xiaoyou-base:bookworm). The check image is built
# without torch (TORCH_REQUIREMENT= XIAOYOU_EXTRAS=): the embedded voice and chat models need none.
# Needs root (dockerd, mmdebstrap). Environment knobs: DOCKER_CHECK_IMAGE, DOCKER_CHECK_PORT,
# DOCKER_CHECK_KEEP_IMAGE=0 removes the image afterwards, DOCKER_CHECK_NO_CACHE=1 builds from zero.
set -euo pipefail
cd "$(dirname "$0")/.."

image="${DOCKER_CHECK_IMAGE:-xiaoyou:cpu-check}"
base="xiaoyou-base:bookworm"
port="${DOCKER_CHECK_PORT:-18080}"
name="xiaoyou-docker-check-$$"
onebot_token="docker-check-onebot-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
admin_token="docker-check-admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
work="$(mktemp -d "${TMPDIR:-/tmp}/xiaoyou-docker-check.XXXXXX")"
dockerd_pid=""

say() { printf '[docker-check %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
ca_copied=()
cleanup() {
    rm -f "${ca_copied[@]}"
    docker rm -f "$name" >/dev/null 2>&1 || true
    if [[ "${DOCKER_CHECK_KEEP_IMAGE:-1}" == 0 ]]; then docker rmi "$image" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
    if [[ -n "$dockerd_pid" ]]; then kill "$dockerd_pid" 2>/dev/null || true; wait "$dockerd_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

# --- the daemon: use a running one, else start one for this check and stop it afterwards --------
if ! docker info >/dev/null 2>&1; then
    say "starting dockerd (log: $work/dockerd.log)"
    dockerd >"$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { say "dockerd did not start"; tail -20 "$work/dockerd.log"; exit 1; }
fi

# --- a Debian 12 base image from Debian's packages ----------------------------------------------
if ! docker image inspect "$base" >/dev/null 2>&1; then
    command -v mmdebstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq mmdebstrap >/dev/null; }
    say "making $base with mmdebstrap (Debian 12 minbase)"
    mirror="http://deb.debian.org/debian"
    mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm "$work/base.tar" \
        "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
        "deb ${mirror}-security bookworm-security main"
    docker import --change 'CMD ["/bin/bash"]' "$work/base.tar" "$base" >/dev/null
    rm -f "$work/base.tar"
fi

# --- build ---------------------------------------------------------------------------------------
build_args=(
    --network host
    --build-arg "BASE_IMAGE=$base" --build-arg "BUILD_IMAGE=$base"
    --build-arg "LLAMA_CMAKE_ARGS=-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
    --build-arg TORCH_REQUIREMENT= --build-arg XIAOYOU_EXTRAS=
)
[[ "${DOCKER_CHECK_NO_CACHE:-0}" == 1 ]] && build_args+=(--no-cache)
# this machine's extra CAs (a TLS-inspecting proxy) go into the build, then out of the tree
for crt in /usr/local/share/ca-certificates/*.crt; do
    [[ -e "$crt" ]] || continue
    target="docker/ca-certificates/$(basename "$crt")"
    [[ -e "$target" ]] && continue
    cp "$crt" "$target" && ca_copied+=("$target")
done
say "building $image (the llama-cpp-python compile takes ~7 minutes on 2 cores when not cached)"
build_start=$(date +%s)
docker build "${build_args[@]}" -t "$image" . >"$work/build.log" 2>&1 || { tail -40 "$work/build.log"; exit 1; }
build_s=$(($(date +%s) - build_start))
size_mb=$(($(docker image inspect -f '{{.Size}}' "$image") / 1000000))
say "built in ${build_s} s, image size ${size_mb} MB"

# --- run: data on a temp folder owned by the image's user, models read-only ---------------------
mkdir -p "$work/data" "$work/models"
chown 10001:10001 "$work/data"
run_start=$(date +%s)
docker run -d --name "$name" --network host \
    --health-interval 2s --health-start-period 300s \
    -e XIAOYOU_SERVER__HOST=127.0.0.1 -e XIAOYOU_SERVER__PORT="$port" \
    -e XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN="$onebot_token" -e XIAOYOU_ADMIN__TOKEN="$admin_token" \
    -v "$work/data:/data" -v "$work/models:/models:ro" \
    "$image" >/dev/null
status=starting
for _ in $(seq 300); do
    status=$(docker inspect -f '{{.State.Health.Status}}' "$name" 2>/dev/null || echo gone)
    [[ "$status" == healthy || "$status" == unhealthy || "$status" == gone ]] && break
    sleep 1
done
healthy_s=$(($(date +%s) - run_start))
if [[ "$status" != healthy ]]; then say "container is $status"; docker logs "$name" 2>&1 | tail -40; exit 1; fi
say "HEALTHCHECK healthy after ${healthy_s} s"
ready_code=000
for _ in $(seq 300); do
    ready_code=$(curl -s -o "$work/readyz.json" -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true)
    [[ "$ready_code" == 200 ]] && break
    sleep 1
done
ready_s=$(($(date +%s) - run_start))
[[ "$ready_code" == 200 ]] || { say "/readyz answered $ready_code"; cat "$work/readyz.json"; docker logs "$name" 2>&1 | tail -40; exit 1; }
say "/readyz 200 after ${ready_s} s: $(head -c 300 "$work/readyz.json")"

# --- a spoken device turn, with the image's own simulator (real models inside the image) -------
cp "${XIAOYOU_SHARED:-$PWD/../shared}/audio/en01_piper.wav" "$work/question.wav"
chmod a+r "$work/question.wav"
say "device turn: xiaoyou simulate-device (en01_piper.wav)"
docker run --rm --network host -v "$work/question.wav:/tmp/question.wav:ro" "$image" \
    xiaoyou simulate-device --url "ws://127.0.0.1:$port/xiaozhi/v1/" --wav /tmp/question.wav \
    --json --timeout 120 | tee "$work/turn.txt"
grep -q '"packets": [1-9]' "$work/turn.txt" || { say "the device turn got no audio"; docker logs "$name" 2>&1 | tail -40; exit 1; }

# --- a QQ group message through a OneBot v11 reverse-WebSocket client --------------------------
say "QQ chat: OneBot v11 client (scripts/onebot_probe.py)"
docker run --rm --network host -v "$PWD/scripts/onebot_probe.py:/tmp/onebot_probe.py:ro" "$image" \
    python /tmp/onebot_probe.py --url "ws://127.0.0.1:$port/onebot/v11/ws" --token "$onebot_token" \
    --timeout 120 "你好，请用一句话介绍你自己" | tee "$work/chat.txt"

# --- who runs it, what it may write ------------------------------------------------------------
uid=$(docker exec "$name" stat -c %u /proc/1)
[[ "$uid" == 10001 ]] || { say "PID 1 runs as uid $uid, not 10001"; exit 1; }
[[ -n "$(ls -A "$work/data")" ]] || { say "/data was not written"; exit 1; }
if docker exec "$name" sh -c 'touch /models/probe' 2>/dev/null; then say "/models is writable"; exit 1; fi
say "PID 1 runs as uid $uid (xiaoyou); /data holds: $(ls "$work/data" | tr '\n' ' '); /models is read-only"

docker stop -t 30 "$name" >/dev/null
say "stopped: $(docker inspect -f 'exit {{.State.ExitCode}}' "$name")"

# --- docker-compose: config validates, `up xiaoyou` on the CPU image turns healthy -------------
if command -v docker-compose >/dev/null; then
    project="$work/compose"
    mkdir -p "$project/models" "$project/config"
    cp docker-compose.yml docker-compose.gpu.yml "$project/"
    cp -r bots "$project/"
    compose_port=$((port + 1))
    cat >"$project/.env" <<ENV
COMPOSE_FILE=docker-compose.yml
COMPOSE_PROFILES=
XIAOYOU_IMAGE=$image
XIAOYOU_PUBLISH_ADDR=127.0.0.1
XIAOYOU_PUBLISH_PORT=$compose_port
XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN=$onebot_token
XIAOYOU_ADMIN__TOKEN=$admin_token
ENV
    chmod 644 "$project/.env"
    compose=(docker-compose --project-directory "$project" -p "xiaoyoucheck$$")
    compose_down() { "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true; }
    (cd "$project" && docker-compose config -q) || { say "docker-compose config failed"; exit 1; }
    (cd "$project" && "${compose[@]}" up -d --no-build xiaoyou) >"$work/compose.log" 2>&1 \
        || { cat "$work/compose.log"; compose_down; exit 1; }
    cid=$(cd "$project" && "${compose[@]}" ps -q xiaoyou)
    compose_start=$(date +%s)
    for _ in $(seq 300); do
        status=$(docker inspect -f '{{.State.Health.Status}}' "$cid" 2>/dev/null || echo gone)
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$compose_port/readyz" || true)
        [[ "$code" == 200 && "$status" == healthy ]] && break
        [[ "$status" == unhealthy || "$status" == gone ]] && break
        sleep 1
    done
    compose_s=$(($(date +%s) - compose_start))
    if [[ "$code" != 200 || "$status" != healthy ]]; then
        say "docker-compose up xiaoyou: /readyz $code, container $status"
        docker logs "$cid" 2>&1 | tail -30; (cd "$project" && compose_down); exit 1
    fi
    say "docker-compose up xiaoyou: healthy and /readyz 200 on 127.0.0.1:$compose_port" \
        "after ${compose_s} s (the image's HEALTHCHECK runs every 30 s)"
    (cd "$project" && compose_down)
else
    say "docker-compose not installed: compose phase skipped"
fi
say "summary: image ${size_mb} MB, build ${build_s} s, healthy ${healthy_s} s, ready ${ready_s} s," \
    "turn $(grep -o '"first_audio_after_speech_s": [0-9.]*' "$work/turn.txt" | head -1)"
