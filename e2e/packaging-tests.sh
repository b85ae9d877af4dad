#!/usr/bin/env bash
# An operator's first hour, as run-tests.sh checks it after the crictl
# scenarios, from the tests' debug build:
#   1. make install / make uninstall into a staging DESTDIR: the tree, every
#      binary's --version, completions that complete, the config kept when
#      present and when edited, idempotence;
#   2. the .deb (cargo-deb): control fields, dependencies, conffiles, unit;
#      unpacked into a staging root (dpkg -x; the machine's dpkg database is
#      not touched);
#   3. make demo's pod through the package's own criusd (private socket, root,
#      state, bridge and subnet): its page on the pod's address and host
#      port, then Ctrl-C, after which no pod, image or registry is left.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/crius-packaging.XXXXXX)
bridge=cpkg$$
bridge=${bridge:0:15}
daemon= demo=
cleanup() {
    [ -z "$demo" ] || kill -TERM -- "-$demo" 2>/dev/null || true
    if [ -n "$daemon" ]; then
        "$work/root-fs/usr/bin/criusctl" -r "unix://$work/crius.sock" rmp -f -a >/dev/null 2>&1 || true
        kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    fi
    target/debug/crius-e2e remove-bridge "$bridge" 2>/dev/null || true
    grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
binaries=(criusd criusctl crius-shim crius-enter crius-pinns crius-pause)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

# check_versions DIR: every binary in DIR names itself, the version and commit.
check_versions() {
    local b out
    for b in "${binaries[@]}"; do
        [ -x "$1/$b" ] || fail "$1/$b is missing"
        out=$("$1/$b" --version)
        case $out in
        "$b $version (git $revision"*) ;;
        *) fail "$1/$b --version: '$out', expected '$b $version (git $revision...)'" ;;
        esac
    done
}

echo "-- make install / uninstall"
stage=$work/stage
install_to() { make --no-print-directory "$1" DESTDIR="$2" PREFIX=/usr/local BIN_DIR=target/debug >/dev/null; }
install_to install "$stage"
check_versions "$stage/usr/local/bin"
grep -qx 'ExecStart=/usr/local/bin/criusd' "$stage/usr/local/lib/systemd/system/crius.service" ||
    fail "the unit does not start /usr/local/bin/criusd"
cmp -s "$stage/etc/crius/config.toml" manifests/config.toml || fail "the config is not the default"
out=$("$stage/usr/local/bin/criusd" config check "$stage/etc/crius/config.toml") || fail "config check: $out"
[ -f "$stage/usr/local/share/crius/crictl.yaml" ] || fail "no crictl.yaml example"
# The completions complete: bash offers runp for "criusctl ru", fish knows it.
words=$(bash -c '. "$1"; COMP_WORDS=(criusctl ru); COMP_CWORD=1; COMP_LINE="criusctl ru"; COMP_POINT=11
    _criusctl criusctl ru criusctl; echo "${COMPREPLY[*]}"' _ "$stage/usr/local/share/bash-completion/completions/criusctl")
case " $words " in *" runp "*) ;; *) fail "bash completion of 'criusctl ru': '$words'" ;; esac
grep -q '^#compdef criusctl' "$stage/usr/local/share/zsh/vendor-completions/_criusctl" || fail "zsh completion"
grep -q "complete -c criusctl .*runp" "$stage/usr/local/share/fish/vendor_completions.d/criusctl.fish" ||
    fail "fish completion"

# Again, over an operator's edited config: kept, everything else as before.
echo 'log_level = "debug"' >>"$stage/etc/crius/config.toml"
install_to install "$stage"
tail -1 "$stage/etc/crius/config.toml" | grep -q debug || fail "install replaced an existing config"
check_versions "$stage/usr/local/bin"
install_to uninstall "$stage"
install_to uninstall "$stage"
left=$(cd "$stage" && find . -type f)
[ "$left" = "./etc/crius/config.toml" ] || fail "after uninstall, expected only the edited config, found: $left"
# An unedited config goes with the rest.
install_to install "$work/stage2"
install_to uninstall "$work/stage2"
left=$(cd "$work/stage2" && find . -type f)
[ -z "$left" ] || fail "after uninstall, left: $left"
[ ! -e "$work/stage2/etc/crius" ] || fail "/etc/crius left behind"

echo "-- the Debian package"
deb=$(PROFILE=dev packaging/deb.sh | tail -1)
[ -f "$deb" ] || fail "packaging/deb.sh did not name a package: '$deb'"
[ "$(dpkg-deb -f "$deb" Package)" = crius ] || fail "package name"
[ "$(dpkg-deb -f "$deb" Version)" = "$version-1" ] || fail "package version $(dpkg-deb -f "$deb" Version)"
depends=$(dpkg-deb -f "$deb" Depends)
for dep in libc6 libseccomp2 runc containernetworking-plugins iptables iproute2; do
    case ", $depends," in *", $dep"[,\ ]*) ;; *) fail "Depends lacks $dep: $depends" ;; esac
done
dpkg-deb -e "$deb" "$work/control"
grep -qx /etc/crius/config.toml "$work/control/conffiles" || fail "config.toml is not a conffile"
grep -q 'crius.service' "$work/control/postinst" || fail "postinst does not enable crius.service"
root=$work/root-fs
dpkg-deb -x "$deb" "$root"
check_versions "$root/usr/bin"
unit=
for candidate in "$root/usr/lib/systemd/system/crius.service" "$root/lib/systemd/system/crius.service"; do
    [ -f "$candidate" ] && unit=$candidate
done
[ -n "$unit" ] || fail "no crius.service in the package"
grep -qx 'ExecStart=/usr/bin/criusd' "$unit" || fail "the package's unit does not start /usr/bin/criusd"
"$root/usr/bin/criusd" config check "$root/etc/crius/config.toml" >/dev/null || fail "the package's config"
[ -s "$root/usr/share/bash-completion/completions/criusctl" ] || fail "no bash completion in the package"

echo "-- make demo through the package's criusd"
cat >"$work/config.toml" <<TOML
[network]
cni_conf_dir = "$work/net.d"
[network.builtin]
bridge = "$bridge"
subnets = ["10.194.0.0/24"]
TOML
"$root/usr/bin/criusd" --config "$work/config.toml" --listen "$work/crius.sock" --root "$work/root" \
    --state "$work/state" >"$work/criusd.log" 2>&1 </dev/null &
daemon=$!
for _ in $(seq 1 100); do [ -S "$work/crius.sock" ] && break; sleep 0.1; done
[ -S "$work/crius.sock" ] || { cat "$work/criusd.log"; fail "the package's criusd did not start"; }
ctl() { "$root/usr/bin/criusctl" -r "unix://$work/crius.sock" "$@"; }

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Job control gives the demo a process group of its own, as a terminal
# would, and keeps SIGINT (which bash ignores in background jobs) deliverable.
set -m
CRIUS_ENDPOINT=unix://$work/crius.sock CRIUSCTL=$root/usr/bin/criusctl CRIUS_E2E_BIN=target/debug/crius-e2e \
    DEMO_HOST_PORT=$port e2e/demo.sh >"$work/demo.out" 2>&1 &
demo=$!
set +m
for _ in $(seq 1 600); do
    grep -q '^demo: ready' "$work/demo.out" && break
    kill -0 "$demo" 2>/dev/null || { cat "$work/demo.out"; fail "the demo ended early"; }
    sleep 0.2
done
grep -q '^demo: ready' "$work/demo.out" || { cat "$work/demo.out"; fail "the demo did not get ready"; }
ip=$(sed -n 's|^ *curl http://\([0-9.]*\)/ .*|\1|p' "$work/demo.out" | head -1)
registry=$(sed -n 's|^demo: pulling \([^/]*\)/.*|\1|p' "$work/demo.out")
[ -n "$ip" ] && [ -n "$registry" ] || { cat "$work/demo.out"; fail "the demo did not print the pod's address"; }
page=$(curl -fsS --noproxy '*' -m 5 "http://$ip/") || fail "no page at the pod's address $ip"
[ "$page" = "crius test page" ] || fail "the pod's page: $page"
page=$(curl -fsS --noproxy '*' -m 5 "http://127.0.0.1:$port/") || fail "no page on host port $port"
[ "$page" = "crius test page" ] || fail "the host port's page: $page"
[ -n "$(ctl pods -q)" ] || fail "the demo's pod is not listed"

kill -INT -- "-$demo"
code=0
wait "$demo" || code=$?
demo=
[ "$code" = 130 ] || { cat "$work/demo.out"; fail "the demo exited $code after Ctrl-C"; }
[ -z "$(ctl pods -q)" ] || fail "the demo's pod is left after Ctrl-C"
[ -z "$(ctl images -q)" ] || fail "the demo's image is left after Ctrl-C"
if curl -fsS --noproxy '*' -m 2 -o /dev/null "http://$registry/v2/" 2>/dev/null; then
    fail "the demo's registry still answers on $registry"
fi
echo "packaging-tests: ok"
