#!/bin/bash
# Installs the bot from this checkout, as root, without questions:
#   deploy/install.sh               build a release, install it, the config, the unit; enable it
#   deploy/install.sh --uninstall   remove the unit and the releases; keep data, logs and config
#   deploy/install.sh --bin-dir DIR install the binaries already built in DIR (no build here)
#   deploy/install.sh --check       run this checkout's test suite first (make check-release);
#                                   a failing suite stops the install before anything changes
#
# Layout: /opt/bot/releases/<version>/{bin,docs,VERSION}, /opt/bot/current -> the running release,
# /etc/bot/config.json (0640 root:bot), /etc/bot/bot.env (0600: DISCORD_TOKEN=...),
# /var/lib/bot (data), /var/log/bot (logs), /run/bot (sockets), a system user "bot".
# Run again after `git pull` to install the new version: when the service runs, the new release
# goes in through `bot-supervisor deploy` (checks, pre-deploy backup, automatic rollback).
set -euo pipefail

PREFIX=/opt/bot
CONF=/etc/bot
UNIT=/etc/systemd/system/bot-supervisor.service
CHECKOUT="$(cd "$(dirname "$0")/.." && pwd)"

die() { echo "install.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (sudo deploy/install.sh)"

if [ "${1:-}" = "--uninstall" ]; then
    systemctl disable --now bot-supervisor 2>/dev/null || true
    rm -f "$UNIT"
    systemctl daemon-reload 2>/dev/null || true
    rm -rf "$PREFIX"
    echo "uninstalled: the unit and $PREFIX are gone; kept: /var/lib/bot (data and backups), /var/log/bot, $CONF and the user bot"
    exit 0
fi
BIN=""
CHECK=""
if [ "${1:-}" = "--check" ]; then
    CHECK=1
    shift
fi
if [ "${1:-}" = "--bin-dir" ]; then
    [ -n "${2:-}" ] || die "--bin-dir needs a directory"
    BIN="$(cd "$2" && pwd)"
    shift 2
fi
[ $# -eq 0 ] || die "unknown argument $1 (use no argument to install, --check to test first, --uninstall to remove, --bin-dir DIR to install prebuilt binaries)"

cd "$CHECKOUT"
if [ -n "$CHECK" ]; then
    echo "running the release's test suite (make check-release) before installing anything"
    make --no-print-directory check-release || die "the test suite failed: nothing was installed"
fi
make --no-print-directory install-deps
if [ -z "$BIN" ]; then
    make --no-print-directory build-release
    BIN="$(swift build -c release --show-bin-path)"
fi
for binary in bot-supervisor bot-worker discord-sandbox; do
    [ -x "$BIN/$binary" ] || die "$BIN/$binary is missing: build first (make build-release)"
done
# The version names the code and the very binaries: the same build installs as the same release.
BUILD="$(cat "$BIN/bot-supervisor" "$BIN/bot-worker" "$BIN/discord-sandbox" | sha256sum | cut -c1-8)"
VERSION="$(grep -o '"[0-9][^"]*"' Sources/IPC/Messages/BotVersion.swift | tr -d '"')-$(git rev-parse --short HEAD 2>/dev/null || echo local)-$BUILD"

getent group bot >/dev/null || groupadd --system bot
getent passwd bot >/dev/null || useradd --system --gid bot --home-dir /var/lib/bot --no-create-home --shell /usr/sbin/nologin bot
install -d -m 0755 "$PREFIX" "$PREFIX/releases"
install -d -m 0750 -o bot -g bot /var/lib/bot /var/log/bot
install -d -m 0750 -o root -g bot "$CONF"

# The release: binaries, docs, version. An existing release of the same version is kept as it is.
STAGE="$PREFIX/releases/.staging-$VERSION"
RELEASE="$PREFIX/releases/$VERSION"
if [ ! -d "$RELEASE" ]; then
    rm -rf "$STAGE"
    install -d -m 0755 "$STAGE/bin" "$STAGE/docs"
    for binary in bot-supervisor bot-worker discord-sandbox; do install -m 0755 "$BIN/$binary" "$STAGE/bin/$binary"; done
    # The crash backtracer of statically linked binaries (make build-release puts it beside them).
    if [ -x "$BIN/swift-backtrace" ]; then install -m 0755 "$BIN/swift-backtrace" "$STAGE/bin/swift-backtrace"; fi
    install -m 0644 docs/*.md README.md "$STAGE/docs/"
    echo "$VERSION" > "$STAGE/VERSION"
    mv "$STAGE" "$RELEASE"
fi
# The supervisor writes current/previous when it deploys.
chown bot:bot "$PREFIX"

[ -f "$CONF/config.json" ] || install -m 0640 -o root -g bot deploy/config.example.json "$CONF/config.json"
if [ ! -f "$CONF/bot.env" ]; then
    umask 077
    printf '# The Discord bot token (Developer Portal -> Bot -> Reset Token). Keep this file 0600.\nDISCORD_TOKEN=\n' > "$CONF/bot.env"
    chmod 0600 "$CONF/bot.env"
fi
install -m 0644 deploy/bot-supervisor.service "$UNIT"
systemctl daemon-reload
systemctl enable bot-supervisor >/dev/null

if [ ! -e "$PREFIX/current" ]; then
    ln -sfn "$RELEASE" "$PREFIX/current"
    echo "installed $VERSION. Next: put the token in $CONF/bot.env, check $CONF/config.json, then: systemctl start bot-supervisor"
elif [ "$(readlink -f "$PREFIX/current")" = "$(readlink -f "$RELEASE")" ]; then
    echo "$VERSION is already the current release; nothing to switch"
elif systemctl is-active --quiet bot-supervisor; then
    echo "deploying $VERSION through the running supervisor (checks, backup, probation, automatic rollback)"
    "$PREFIX/current/bin/bot-supervisor" deploy "$RELEASE" --config "$CONF/config.json"
else
    ln -sfn "$(readlink -f "$PREFIX/current")" "$PREFIX/previous"
    ln -sfn "$RELEASE" "$PREFIX/current"
    echo "installed $VERSION as the current release (the service is not running: systemctl start bot-supervisor)"
fi
