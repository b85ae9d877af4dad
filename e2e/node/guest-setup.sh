#!/bin/bash
# Runs inside the guest's rootfs (an mmdebstrap customize hook), never on the
# host: makes the Debian tree boot as a node would, with systemd, cgroup v2,
# AppArmor, a DHCP'd NIC, root's ssh key, and the host's crius tree on 9p.
set -euo pipefail
echo crius-node > /etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 crius-node\n::1 localhost ip6-localhost ip6-loopback\n' > /etc/hosts
# The host's crius tree arrives on 9p (tag "repo"); node.sh mounts it at the
# host's path after boot, so the image does not depend on where the tree is.
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' > /etc/fstab
install -d -m 700 /root/.ssh
install -m 600 /root/id_ed25519.pub /root/.ssh/authorized_keys
mkdir -p /etc/systemd/network
cat > /etc/systemd/network/10-en.network <<N
[Match]
Name=en*
[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no
[DHCPv4]
UseHostname=false
N
# qemu's user-mode network answers DNS at 10.0.2.3; nothing here resolves names.
rm -f /etc/resolv.conf; echo 'nameserver 10.0.2.3' > /etc/resolv.conf
systemctl enable systemd-networkd ssh
systemctl disable systemd-networkd-wait-online 2>/dev/null || true
systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer 2>/dev/null || true
printf '9p\n9pnet_virtio\noverlay\nbr_netfilter\n' > /etc/modules-load.d/crius-node.conf
printf 'net.ipv4.ip_forward=1\nnet.bridge.bridge-nf-call-iptables=1\nnet.bridge.bridge-nf-call-ip6tables=1\n' \
    > /etc/sysctl.d/90-k8s.conf
sed -i 's/^#\?UseDNS.*/UseDNS no/' /etc/ssh/sshd_config
echo 'LANG=C.UTF-8' > /etc/default/locale
apt-get clean
rm -rf /var/lib/apt/lists/*
