#!/usr/bin/env bash
# Renders an HTML quantization report (vit-quantize --html-report DIR) to a PNG with headless
# Chromium, to look at it where no browser is at hand. Installs Debian's chromium if missing
# (apt-get update first; sudo when not root). Not part of CI: the report's structure is tested by
# tests/quant/report_html_test.cpp and tests/tools/tools_test.cpp.
# Usage: bash scripts/render-report.sh DIR/index.html [OUT.png] [WIDTH] [HEIGHT]
set -euo pipefail
page=${1:?usage: render-report.sh DIR/index.html [OUT.png] [WIDTH] [HEIGHT]}
out=${2:-${page%.html}.png}
width=${3:-1160}
height=${4:-3700}  # --screenshot captures the window: tall enough for a report (about 3500 px)
[ -f "$page" ] || { echo "render-report: no such file: $page" >&2; exit 1; }

if ! command -v chromium >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  echo "render-report: installing chromium"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium \
    fonts-dejavu-core >/dev/null
fi

flags=(--headless --disable-gpu --hide-scrollbars --force-device-scale-factor=1
       --no-first-run --no-default-browser-check --disable-extensions
       "--window-size=$width,$height" "--screenshot=$(realpath -m "$out")")
# Chromium's sandbox refuses to start as root (containers, CI); the page is our own file.
[ "$(id -u)" -eq 0 ] && flags+=(--no-sandbox)
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium "${flags[@]}" "--user-data-dir=$profile" "file://$(realpath "$page")" 2>/dev/null
echo "render-report: $out (${width}x${height})"
