#!/usr/bin/env bash
# NapCat entrypoint wrapper (docker-compose.yml, profile "napcat"): writes the OneBot 11 config
# for $ACCOUNT from onebot11.json, putting in the access token from the environment (JSON has
# no variable expansion and the token must not be committed), then starts the image's own
# entrypoint, which keeps an existing config.
set -euo pipefail
template="${NAPCAT_TEMPLATE:-/xiaoyou/onebot11.json}"
config_dir="${NAPCAT_CONFIG_DIR:-/app/napcat/config}"
entrypoint="${NAPCAT_ENTRYPOINT:-/app/entrypoint.sh}"
: "${ACCOUNT:?set NAPCAT_QQ in .env}"
token="${XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN:?set XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN in .env}"
case "$token" in
  *[!A-Za-z0-9._~-]*) echo "render-config: use a token of letters, digits and ._~- only" >&2; exit 2 ;;
esac
placeholder='${XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN}'
text="$(cat "$template")"
mkdir -p "$config_dir"
printf '%s\n' "${text//"$placeholder"/$token}" > "$config_dir/onebot11_${ACCOUNT}.json"
cd "$(dirname "$entrypoint")"
exec bash "$entrypoint"
