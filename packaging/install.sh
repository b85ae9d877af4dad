#!/usr/bin/env bash
# `make install` / `make uninstall`: puts crius's binaries, systemd unit,
# completions and examples under $DESTDIR$PREFIX, and the default config at
# $DESTDIR/etc/crius/config.toml unless a file is there already. Run from the
# repository with the binaries built in $BIN_DIR.
#   PREFIX=/usr/local DESTDIR= BIN_DIR=target/release packaging/install.sh install|uninstall
# Both are idempotent. uninstall keeps a config the operator edited and never
# touches crius's data (/var/lib/crius, /run/crius) or running processes.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=${PREFIX:-/usr/local}
destdir=${DESTDIR:-}
bin_dir=${BIN_DIR:-target/release}
unit_dir=${UNITDIR:-$prefix/lib/systemd/system}
sysconf_dir=${SYSCONFDIR:-/etc}

binaries=(criusd criusctl crius-shim crius-enter crius-pinns crius-pause)
bin=$destdir$prefix/bin
unit=$destdir$unit_dir/crius.service
config=$destdir$sysconf_dir/crius/config.toml
share=$destdir$prefix/share
# Where bash-completion, zsh and fish look for packages' completions.
completions=(
    "bash:$share/bash-completion/completions/criusctl"
    "zsh:$share/zsh/vendor-completions/_criusctl"
    "fish:$share/fish/vendor_completions.d/criusctl.fish"
)

install_all() {
    for b in "${binaries[@]}"; do
        [ -x "$bin_dir/$b" ] || { echo "install.sh: $bin_dir/$b is missing: build first (make build)" >&2; exit 1; }
    done
    install -d -m 0755 "$bin"
    for b in "${binaries[@]}"; do
        # Through a temporary name and a rename, so a running criusd's or
        # shim's binary is replaced, never written in place ("text file busy").
        install -m 0755 "$bin_dir/$b" "$bin/.$b.new"
        mv -f "$bin/.$b.new" "$bin/$b"
    done
    install -d -m 0755 "$(dirname "$unit")"
    sed "s|/usr/local/bin/criusd|$prefix/bin/criusd|" manifests/crius.service >"$unit.new"
    chmod 0644 "$unit.new"
    mv -f "$unit.new" "$unit"
    for entry in "${completions[@]}"; do
        local shell=${entry%%:*} file=${entry#*:}
        install -d -m 0755 "$(dirname "$file")"
        "$bin_dir/criusctl" completion "$shell" >"$file"
        chmod 0644 "$file"
    done
    install -d -m 0755 "$share/crius"
    install -m 0644 packaging/crictl.yaml "$share/crius/crictl.yaml"
    if [ -e "$config" ]; then
        echo "kept $config"
    else
        install -d -m 0755 "$(dirname "$config")"
        install -m 0644 manifests/config.toml "$config"
        echo "installed $config"
    fi
    echo "installed crius $("$bin_dir/criusd" --version | cut -d' ' -f2-) to $bin"
    if [ -z "$destdir" ]; then
        echo "next: systemctl daemon-reload && systemctl enable --now crius (or run $prefix/bin/criusd)"
    fi
}

uninstall_all() {
    # A config that is still the shipped default goes; an edited one stays.
    if [ -f "$config" ]; then
        if cmp -s "$config" manifests/config.toml; then
            rm -f "$config"
        else
            echo "kept $config (edited)"
        fi
    fi
    rmdir "$(dirname "$config")" 2>/dev/null || true
    for b in "${binaries[@]}"; do
        rm -f "$bin/$b"
    done
    rm -f "$unit"
    for entry in "${completions[@]}"; do
        rm -f "${entry#*:}"
    done
    rm -f "$share/crius/crictl.yaml"
    rmdir "$share/crius" 2>/dev/null || true
    echo "removed crius from $destdir$prefix (data in /var/lib/crius and /run/crius left alone)"
}

case ${1:-} in
install) install_all ;;
uninstall) uninstall_all ;;
*)
    echo "usage: install.sh install|uninstall" >&2
    exit 2
    ;;
esac
