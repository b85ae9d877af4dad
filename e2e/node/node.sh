#!/usr/bin/env bash
# A node as users run them, in a VM: a Debian guest built from Debian's
# packages with mmdebstrap (systemd, cgroup v2, AppArmor, runc, crun, criu,
# CNI plugins), booted with qemu-system-x86.
#
#   e2e/node/node.sh GUEST build      the guest's disk, cached in $CRIUS_NODE_DIR/GUEST
#                                     (rebuilt only when its package list or set-up changes)
#   e2e/node/node.sh GUEST boot       start it detached, wait for ssh, mount the crius tree
#   e2e/node/node.sh GUEST ssh [CMD]  run CMD in the guest as root (its exit status)
#   e2e/node/node.sh GUEST stop       power off; then only the recorded qemu PID is signalled
#   e2e/node/node.sh GUEST can-run    exit 0 when this host can build and boot guests
#                                     (installing qemu and mmdebstrap); else says why
#
# GUEST: debian12 (kernel 6.1, systemd 252) or kernel510 (Debian 12's userland
# on Debian 11's kernel 5.10). Packages come from the mirrors in the host's own
# apt sources. /dev/kvm is used when ACCEL=kvm (some hosts have a paravirtual
# KVM that cannot boot Debian's kernel); TCG otherwise, with CPU=model (qemu's
# -cpu; default max).
set -euo pipefail

guest=${1:?guest: debian12 or kernel510}; cmd=${2:?command}; shift 2
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=${CRIUS_NODE_DIR:-/var/tmp/crius-node}/$guest
mkdir -p "$dir"

case $guest in
debian12) ssh_port=${SSH_PORT:-2231}; kernel_pkg=linux-image-amd64 ;;
kernel510) ssh_port=${SSH_PORT:-2232}; kernel_pkg=linux-image-amd64/bullseye ;;
*) echo "node.sh: unknown guest $guest (debian12, kernel510)" >&2; exit 2 ;;
esac

packages=(systemd systemd-sysv udev dbus libpam-systemd initramfs-tools "$kernel_pkg"
    apparmor openssh-server runc crun containernetworking-plugins criu
    iptables iproute2 procps util-linux kmod ca-certificates curl jq e2fsprogs
    sudo socat strace less netbase busybox-static docker-registry python3 umoci)

log() { echo "[node $guest $(date +%T)] $*"; }

# The host's Debian mirrors, as "deb URI SUITE main" lines for `suite`.
mirrors() {
    local suite=$1 main security
    main=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null ||
        awk '/^deb / && !/security/ {print $2; exit}' /etc/apt/sources.list)
    security=$(awk '/^URIs:/ && /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
    echo "deb $main $suite main"
    echo "deb $main $suite-updates main"
    [ -z "$security" ] || echo "deb $security $suite-security main"
}

ssh_guest() {
    local opts=()
    while [ "${1:-}" = -o ]; do opts+=("$1" "$2"); shift 2; done
    ssh -i "$dir/id_ed25519" -p "$ssh_port" -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes \
        -o ServerAliveInterval=15 "${opts[@]}" root@127.0.0.1 "$@"
}

running() {
    [ -s "$dir/vm.pid" ] && kill -0 "$(cat "$dir/vm.pid")" 2>/dev/null &&
        grep -q qemu "/proc/$(cat "$dir/vm.pid")/cmdline" 2>/dev/null
}

build() {
    install_tools
    [ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C crius-node -f "$dir/id_ed25519"
    local stamp
    stamp=$( (printf '%s\n' "${packages[@]}"; cat "$here/guest-setup.sh") | sha256sum | cut -c1-16)
    if [ "$(cat "$dir/disk.stamp" 2>/dev/null)" = "$stamp" ] && [ -f "$dir/disk.img" ]; then
        log "cached guest $stamp"
        return
    fi
    if running; then echo "node.sh: $guest is running; stop it first" >&2; exit 1; fi
    log "mmdebstrap bookworm (${#packages[@]} packages)"
    local sources=() t0=$SECONDS
    mapfile -t sources < <(mirrors bookworm; [ "$guest" != kernel510 ] || mirrors bullseye | head -2)
    rm -rf "$dir/rootfs" "$dir/disk.img" "$dir/disk.stamp"
    mmdebstrap --quiet --mode=root --variant=minbase --format=directory \
        --include="$(IFS=,; echo "${packages[*]}")" \
        --aptopt='APT::Install-Recommends "false"' \
        --customize-hook="copy-in $here/guest-setup.sh $dir/id_ed25519.pub /root/" \
        --customize-hook='chroot "$1" /bin/bash /root/guest-setup.sh' \
        --customize-hook='rm -f "$1"/root/guest-setup.sh "$1"/root/id_ed25519.pub' \
        bookworm "$dir/rootfs" "${sources[@]}"
    install -m 0644 "$(ls "$dir"/rootfs/boot/vmlinuz-* | sort -V | tail -1)" "$dir/vmlinuz"
    install -m 0644 "$(ls "$dir"/rootfs/boot/initrd.img-* | sort -V | tail -1)" "$dir/initrd.img"
    truncate -s 16G "$dir/disk.img.tmp"
    mkfs.ext4 -q -F -L crius-node -d "$dir/rootfs" "$dir/disk.img.tmp"
    mv "$dir/disk.img.tmp" "$dir/disk.img"
    rm -rf "$dir/rootfs"
    echo "$stamp" > "$dir/disk.stamp"
    log "built in $((SECONDS - t0)) s: $(basename "$(ls "$dir"/vmlinuz)") $(file -b "$dir/vmlinuz" | grep -o 'version [^ ]*')"
}

install_tools() {
    local need=()
    for p in qemu-system-x86 qemu-utils mmdebstrap e2fsprogs openssh-client; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
    done
    [ ${#need[@]} -gt 0 ] || return 0
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

can_run() {
    [ "${CRIUS_NODE_LANE:-1}" != 0 ] || { echo "CRIUS_NODE_LANE=0"; return 1; }
    [ "$(uname -m)" = x86_64 ] || { echo "the guests are x86_64; this host is $(uname -m)"; return 1; }
    install_tools >/dev/null 2>&1 || { echo "qemu-system-x86 and mmdebstrap cannot be installed"; return 1; }
    [ -f /etc/debian_version ] || { echo "guests are built from the host's Debian mirrors; this host is not Debian"; return 1; }
    qemu-system-x86_64 -accel help 2>/dev/null | grep -qx tcg ||
        { echo "this qemu has no TCG accelerator"; return 1; }
}

can_boot() {
    command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 is not installed"; return 1; }
    [ -f "$dir/disk.img" ] || { echo "the $guest guest is not built"; return 1; }
}

boot() {
    if running; then log "already running (pid $(cat "$dir/vm.pid"))"; return; fi
    can_boot >&2 || exit 1
    local accel=()
    case ${ACCEL:-tcg} in
    kvm) accel=(-accel kvm -cpu host,-arch-capabilities) ;;
    tcg) accel=(-accel tcg,thread=multi,tb-size=1024 -cpu "${CPU:-max}") ;;
    esac
    # A copy-on-write overlay per boot: every run starts from the built guest.
    rm -f "$dir/run.qcow2"
    qemu-img create -q -f qcow2 -F raw -b "$dir/disk.img" "$dir/run.qcow2"
    mkdir -p "$dir/share"
    : > "$dir/console.log"
    # hugepages: critest and the hugetlb tests need a few free 2 MiB pages.
    setsid qemu-system-x86_64 "${accel[@]}" -machine q35 -m "${MEM:-6G}" -smp "${CPUS:-2}" \
        -kernel "$dir/vmlinuz" -initrd "$dir/initrd.img" \
        -append "root=/dev/vda rw console=ttyS0 apparmor=1 security=apparmor systemd.unified_cgroup_hierarchy=1 hugepages=64 ${EXTRA_APPEND:-}" \
        -drive "file=$dir/run.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap" \
        -netdev "user,id=n0,hostname=crius-node,hostfwd=tcp:127.0.0.1:$ssh_port-:22" \
        -device virtio-net-pci,netdev=n0 \
        -virtfs "local,path=$repo,mount_tag=repo,security_model=none,id=repo" \
        -virtfs "local,path=$dir/share,mount_tag=share,security_model=none,id=share" \
        -device virtio-rng-pci -serial "file:$dir/console.log" -display none -vga none \
        -monitor none -pidfile "$dir/vm.pid" -name "crius-node-$guest" \
        </dev/null >"$dir/qemu.log" 2>&1 &
    local t0=$SECONDS
    until ssh_guest -o ConnectTimeout=5 true 2>/dev/null; do
        if ! running && [ $((SECONDS - t0)) -gt 5 ]; then
            echo "node.sh: qemu exited; $dir/qemu.log:" >&2; cat "$dir/qemu.log" >&2; exit 1
        fi
        if [ $((SECONDS - t0)) -gt "${BOOT_TIMEOUT:-600}" ]; then
            echo "node.sh: no ssh after ${BOOT_TIMEOUT:-600} s; see $dir/console.log" >&2; exit 1
        fi
        sleep 2
    done
    ssh_guest "mkdir -p '$repo' /share && mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 repo '$repo' &&
        mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 share /share"
    log "ssh after $((SECONDS - t0)) s: $(ssh_guest 'uname -r; systemctl --version | head -1' | tr '\n' ' ')"
}

stop() {
    running || { rm -f "$dir/vm.pid"; return 0; }
    local pid; pid=$(cat "$dir/vm.pid")
    ssh_guest -o ConnectTimeout=5 'systemctl poweroff' >/dev/null 2>&1 || true
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; sleep 2; kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"; fi
    rm -f "$dir/vm.pid" "$dir/run.qcow2"
    log stopped
}

case $cmd in
build) build ;;
boot) boot ;;
stop) stop ;;
ssh) ssh_guest "$@" ;;
can-run) can_run ;;
dir) echo "$dir" ;;
*) echo "node.sh: unknown command $cmd" >&2; exit 2 ;;
esac
