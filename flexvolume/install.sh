#!/bin/sh
# Installs the azure/kv FlexVolume shim into kubelet's volume-plugin directory.
#
# Run by the FlexVolume installer DaemonSet with the plugin directory mounted from the host.
# Environment:
#   TARGET_DIR    kubelet's --volume-plugin-dir
#                 (default /usr/libexec/kubernetes/kubelet-plugins/volume/exec;
#                  AKS/aks-engine: /etc/kubernetes/volumeplugins; GKE: /home/kubernetes/flexvolume)
#   SHIM_SRC      the shim to install (default: azure~kv/kv next to this script)
#   SHIM_PYTHON   optional absolute path of the HOST's python3 (e.g. /usr/bin/python3): the
#                 installed shebang becomes "#!$SHIM_PYTHON -IS" (isolated mode, no site). Unset,
#                 the shim keeps "#!/usr/bin/env python3", which finds python3 on kubelet's PATH.
#                 ("-IS" is one word on purpose: Linux passes a shebang's arguments as one.)
#   KEEP_RUNNING  "true" (default) sleeps afterwards so the DaemonSet pod stays Running;
#                 anything else exits after installing.
#
# The copy is atomic: a temporary file in the same directory, chmod 0755, then rename over
# $TARGET_DIR/azure~kv/kv, so kubelet never executes a half-written shim. Re-running is
# idempotent: an identical installed shim is left in place (only its mode is reasserted).
set -eu

TARGET_DIR="${TARGET_DIR:-/usr/libexec/kubernetes/kubelet-plugins/volume/exec}"
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
SHIM_SRC="${SHIM_SRC:-$here/azure~kv/kv}"
SHIM_PYTHON="${SHIM_PYTHON:-}"
KEEP_RUNNING="${KEEP_RUNNING:-true}"

say() { printf 'kv-flexvolume-installer: %s\n' "$*"; }
die() { say "error: $*" >&2; exit 1; }

[ -f "$SHIM_SRC" ] && [ -r "$SHIM_SRC" ] || die "shim not found or not readable: $SHIM_SRC"
head -n 1 "$SHIM_SRC" | grep -q '^#!' || die "$SHIM_SRC does not start with a #! line"
if [ -n "$SHIM_PYTHON" ]; then
    case "$SHIM_PYTHON" in
        /*) ;;
        *) die "SHIM_PYTHON must be an absolute path, got: $SHIM_PYTHON" ;;
    esac
    case "$SHIM_PYTHON" in
        *[[:space:]]*) die "SHIM_PYTHON must not contain spaces, got: $SHIM_PYTHON" ;;
    esac
fi

driver_dir="$TARGET_DIR/azure~kv"
dest="$driver_dir/kv"
mkdir -p "$driver_dir" || die "cannot create $driver_dir (is the host's plugin dir mounted?)"

# A dot name: kubelet's plugin prober only looks at the executable named after the driver.
tmp=$(mktemp "$driver_dir/.kv.XXXXXX") || die "cannot create a temporary file in $driver_dir"
trap 'rm -f "$tmp"' EXIT
trap 'exit 1' INT TERM HUP

if [ -n "$SHIM_PYTHON" ]; then
    { printf '#!%s -IS\n' "$SHIM_PYTHON"; sed '1d' "$SHIM_SRC"; } >"$tmp"
else
    cat "$SHIM_SRC" >"$tmp"
fi
chmod 0755 "$tmp"

if [ -f "$dest" ] && cmp -s "$tmp" "$dest"; then
    chmod 0755 "$dest"
    rm -f "$tmp"
    say "$dest is already up to date"
else
    mv -f "$tmp" "$dest"
    say "installed $SHIM_SRC as $dest (mode 0755$([ -n "$SHIM_PYTHON" ] && printf ', interpreter %s -IS' "$SHIM_PYTHON"))"
fi
trap - EXIT

case "$KEEP_RUNNING" in
    true | TRUE | True | 1 | yes)
        say "installed; sleeping so the DaemonSet pod stays up"
        # Sleep in the background and wait, so SIGTERM (pod deletion) ends us at once even as PID 1.
        sleeper=''
        trap '[ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null; exit 0' INT TERM
        while :; do
            sleep 3600 &
            sleeper=$!
            wait "$sleeper" || true
        done
        ;;
esac
