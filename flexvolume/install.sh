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
#   HOST_ROOT     where the host's filesystem (at least its /usr) is mounted read-only, e.g.
#                 /host. When set, the installer refuses to install (exit 1, a message naming the
#                 node's missing interpreter) unless the host has the interpreter the shim will
#                 run: $SHIM_PYTHON, or python3 in one of kubelet's usual PATH directories. Without
#                 python3 on the host kubelet could not run the shim at all, and every mount would
#                 fail later with nothing but "executable file not found". Unset: not checked.
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
HOST_ROOT="${HOST_ROOT:-}"

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

# Follows a host path's symlinks inside $HOST_ROOT (an absolute link target is a host path too);
# prints the final host path, or nothing when the chain is broken or too long.
host_resolve() {
    path=$1
    hops=0
    while [ -L "$HOST_ROOT$path" ]; do
        hops=$((hops + 1))
        [ "$hops" -le 16 ] || return 0
        link=$(readlink "$HOST_ROOT$path") || return 0
        case "$link" in
            /*) path=$link ;;
            *) path="$(dirname -- "$path")/$link" ;;
        esac
    done
    [ -e "$HOST_ROOT$path" ] && printf '%s\n' "$path"
    return 0
}

host_python() {
    # What the installed shebang will run: the pinned interpreter, else `env python3` on the PATH
    # kubelet usually has.
    if [ -n "$SHIM_PYTHON" ]; then
        candidates=$SHIM_PYTHON
    else
        candidates="/usr/local/sbin/python3 /usr/local/bin/python3 /usr/sbin/python3 /usr/bin/python3 /sbin/python3 /bin/python3"
    fi
    for candidate in $candidates; do
        found=$(host_resolve "$candidate")
        if [ -n "$found" ] && [ -f "$HOST_ROOT$found" ] && [ -x "$HOST_ROOT$found" ]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

if [ -n "$HOST_ROOT" ]; then
    [ -d "$HOST_ROOT" ] || die "HOST_ROOT=$HOST_ROOT is not a directory (mount the host's filesystem there)"
    if interpreter=$(host_python); then
        say "the node has $interpreter for the shim"
    elif [ -n "$SHIM_PYTHON" ]; then
        die "this node has no executable $SHIM_PYTHON (SHIM_PYTHON; looked under $HOST_ROOT): the azure/kv FlexVolume shim needs Python 3 on the node; install python3 there or fix SHIM_PYTHON. Not installed."
    else
        die "this node has no python3 (looked for python3 in /usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin and /bin under $HOST_ROOT): the azure/kv FlexVolume shim needs Python 3 on the node, where kubelet runs it; install python3 on the node, or set SHIM_PYTHON to its absolute path. Not installed."
    fi
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
