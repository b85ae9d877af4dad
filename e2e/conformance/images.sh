#!/usr/bin/env bash
# Builds stand-ins for every image critest (cri-tools v1.36.0) pulls and
# pushes them to a plain-HTTP registry, so the conformance run needs no
# network beyond loopback:
#
#   e2e/conformance/images.sh REGISTRY OUTDIR     # REGISTRY is host:port
#
# The registry's namespace is flat: run.sh points every public registry name
# critest uses at it with hosts.toml files, so the repository path is the
# public reference minus its registry host:
#   registry.k8s.io/e2e-test-images/busybox:1.29-2 -> e2e-test-images/busybox:1.29-2
#   gcr.io/k8s-staging-cri-tools/test-image-1      -> k8s-staging-cri-tools/test-image-1
#   public.ecr.aws/docker/library/busybox:1        -> docker/library/busybox:1
#   registry.k8s.io/pause:3.9, k8s.gcr.io/pause:3.9 -> pause:3.9
#
# What the images are made of:
# - a base root filesystem around Debian's glibc-linked busybox (the "busybox"
#   .deb, cached in OUTDIR/cache) and the libraries it links. Its ash has no
#   "standalone" mode, so `sh -c ls` executes /bin/ls like upstream busybox
#   images (critest's MaskedPaths spec masks /bin/ls); applets are hard links,
#   so masking one never masks busybox itself;
# - two static C programs built here: a pause process and a no_new_privs
#   probe installed setuid root;
# - small shell scripts standing in for nginx, apache httpd, pgrep and ipcs.
# Every layer is written by `umoci insert`: its tar stream starts with an entry
# for "/" and ends right after the last file's data (no padding, no
# end-of-archive blocks); crius must keep pulling and running those.
#
# Installs umoci, skopeo and gcc with apt-get when they are missing. Prints
# one line per pushed image; tool output goes to OUTDIR/images.log, whose tail
# is shown when a step fails.
set -Eeuo pipefail

registry=${1:?usage: images.sh REGISTRY OUTDIR}
outdir=${2:?usage: images.sh REGISTRY OUTDIR}
mkdir -p "$outdir"
outdir=$(realpath "$outdir")
cache=$outdir/cache   # kept between runs: the busybox .deb
build=$outdir/build   # scratch, rebuilt every run
oci=$outdir/oci       # the OCI layout the images are built in
log=$outdir/images.log

# fd 3 is the terminal for progress lines; everything else goes to the log.
exec 3>&1 4>&2 >"$log" 2>&1
failed() {
    local rc=$? line=$1 cmd=$2
    if [ "$BASHPID" = "$$" ]; then
        {
            echo "images.sh: failed (exit $rc) at line $line: $cmd"
            echo "--- last lines of $log"
            tail -n 25 "$log"
        } >&4
    fi
    exit "$rc"
}
trap 'failed $LINENO "$BASH_COMMAND"' ERR

# ------------------------------------------------------------------ tools
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "$@" ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@"; }
}
missing=()
command -v umoci >/dev/null || missing+=(umoci)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v gcc >/dev/null || missing+=(gcc)
dpkg-query -W -f='${Status}' libc6-dev 2>/dev/null | grep -q 'install ok installed' || missing+=(libc6-dev)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&3
    apt_install "${missing[@]}"
fi

rm -rf "$build" "$oci"
mkdir -p "$build" "$cache"

# ------------------------------------------------------------------ helpers
# Static C programs from source on stdin: cbuild NAME
cbuild() {
    cat >"$build/$1.c"
    gcc -static -Os -s -o "$build/$1" "$build/$1.c"
}

# A directory to be laid over "/" by `umoci insert`: overlay NAME -> path
overlay() {
    local dir=$build/overlay-$1
    mkdir -p "$dir"
    echo "$dir"
}

# Local image TAG holding the files of DIR, on top of BASE (or on nothing).
#   layer TAG DIR [BASE]
layer() {
    local tag=$1 dir=$2 base=${3:-}
    if [ -z "$base" ]; then
        umoci new --image "$oci:$tag"
        umoci insert --image "$oci:$tag" "$dir" /
    else
        umoci insert --image "$oci:$base" --tag "$tag" "$dir" /
    fi
}

# Local image TAG: BASE plus one empty file /NAME, so that it differs from
# every other image (like cri-tools' images/image-test).
#   marked TAG BASE NAME
marked() {
    local dir
    dir=$(overlay "mark-$1")
    : >"$dir/$3"
    layer "$1" "$dir" "$2"
}

# A copy of image FROM under TAG (same layers; the config may then differ).
copy() { umoci tag --image "$oci:$1" "$2"; }

# Changes the config of local image TAG: config TAG umoci-config-args...
config() {
    local tag=$1
    shift
    umoci config --no-history --image "$oci:$tag" "$@"
}

# ------------------------------------------------------------------ programs
cbuild pause <<'C'
/* The sandbox's (infra container's) process: waits for a signal. SIGINT and
 * SIGTERM end it with status 0; children it inherits are reaped. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = reap;
    sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    for (;;)
        pause();
}
C

cbuild nnp <<'C'
/* Installed setuid root: reports the effective uid it runs with, in the words
 * of the Kubernetes e2e "nonewprivs" image. With no_new_privs set, the setuid
 * bit is ignored and the caller's uid is printed. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    printf("Effective uid: %d\n", (int)geteuid());
    return 0;
}
C

# ------------------------------------------------------------------ base root filesystem
root=$build/rootfs
mkdir -p "$root"/{bin,sbin,etc,root,home,tmp,proc,sys,dev,lib64}
mkdir -p "$root"/usr/{bin,sbin,local/bin,local/sbin} "$root"/var/{run,www,spool/mail}
mkdir -p "$root/lib/x86_64-linux-gnu"
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"

deb=$(find "$cache" -maxdepth 1 -name 'busybox_*.deb' | sort | tail -n 1)
if [ -z "$deb" ]; then
    pushd "$cache" >/dev/null
    # (as root into a directory the _apt user may not be able to write)
    apt-get -o APT::Sandbox::User=root download busybox ||
        { apt-get update -qq && apt-get -o APT::Sandbox::User=root download busybox; }
    popd >/dev/null
    deb=$(find "$cache" -maxdepth 1 -name 'busybox_*.deb' | sort | tail -n 1)
fi
[ -n "$deb" ] || { echo "no busybox .deb in $cache" >&2; false; }
dpkg-deb -x "$deb" "$build/busybox-deb"
busybox=$build/busybox-deb/bin/busybox
install -m 0755 "$busybox" "$root/bin/busybox"
# The libraries it links, and the dynamic loader at its usual two paths.
for lib in $(ldd "$busybox" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'); do
    cp -L "$lib" "$root/lib/x86_64-linux-gnu/"
done
cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib/x86_64-linux-gnu/"
ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$root/lib64/ld-linux-x86-64.so.2"
applets=$("$busybox" --list)
for applet in $applets; do
    [ "$applet" = busybox ] || ln "$root/bin/busybox" "$root/bin/$applet"
done

# critest runs `pgrep` and `ipcs`, which Debian's busybox leaves out.
if ! grep -qx pgrep <<<"$applets"; then
    cat >"$root/bin/pgrep" <<'SH'
#!/bin/sh
# pgrep PATTERN: the PIDs of processes whose name matches PATTERN (an ERE).
[ $# -eq 1 ] || { echo "usage: pgrep PATTERN" >&2; exit 2; }
status=1
for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [ "$pid" = $$ ] && continue
    read -r name <"$dir/comm" 2>/dev/null || continue
    if echo "$name" | grep -Eq -- "$1"; then
        echo "$pid"
        status=0
    fi
done
exit $status
SH
    chmod 0755 "$root/bin/pgrep"
fi
if ! grep -qx ipcs <<<"$applets"; then
    cat >"$root/bin/ipcs" <<'SH'
#!/bin/sh
# ipcs [-m]: the System V shared memory segments of this IPC namespace.
printf '\n------ Shared Memory Segments --------\n'
printf '%-10s %-10s %-10s %-10s %-10s %-10s\n' key shmid owner perms bytes nattch
if [ -r /proc/sysvipc/shm ]; then
    # key shmid perms size cpid lpid nattch uid ...
    awk 'NR > 1 { printf "%-10s %-10s %-10s %-10s %-10s %-10s\n", $1, $2, $8, $3, $4, $7 }' /proc/sysvipc/shm
fi
echo
SH
    chmod 0755 "$root/bin/ipcs"
fi

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
floppy:x:19:
audio:x:29:
www-data:x:33:
operator:x:37:
staff:x:50:
users:x:100:
nogroup:x:65534:
EOF
install -m 0600 /dev/null "$root/etc/shadow"
echo 'root:*:10933:0:99999:7:::' >"$root/etc/shadow"
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"

# ------------------------------------------------------------------ local images
umoci init --layout "$oci"

layer busybox "$root"
config busybox --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --config.cmd sh

# Distinct images: the base plus a marker file named after each.
#   local tag               marker file
while read -r tag name; do
    marked "$tag" busybox "$name"
done <<'EOF'
bb-1.35.0-glibc         busybox-1.35.0-glibc
bb-1-uclibc             busybox-1-uclibc
bb-1                    busybox-1
bb-1-glibc              busybox-1-glibc
bb-1-musl               busybox-1-musl
test-image-1            test-image-1
test-image-2            test-image-2
test-image-3            test-image-3
test-image-latest       test-image-latest
test-image-digest       test-image-digest
test-image-tags         same-image
test-image-tag-test     test
test-image-tag-all      all
EOF

# Images whose user is set in the config (uid, name, uid:gid, name:gid).
#   local tag                        user
while read -r tag user; do
    copy busybox "$tag"
    config "$tag" --config.user "$user"
done <<'EOF'
test-image-user-uid              1002
test-image-user-username         www-data
test-image-user-uid-group        1003:1004
test-image-user-username-group   www-data:1004
EOF

# User 1000 whose only supplementary group (50000) comes from /etc/group.
dir=$(overlay predefined-group)
mkdir -p "$dir/etc" "$dir/home/default-user"
cp "$root/etc/passwd" "$root/etc/group" "$dir/etc/"
echo 'default-user:x:1000:1000:Default User:/home/default-user:/bin/sh' >>"$dir/etc/passwd"
printf 'default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n' >>"$dir/etc/group"
chown 1000:1000 "$dir/home/default-user"
layer test-image-predefined-group "$dir" busybox
config test-image-predefined-group --config.user 1000

# The pod sandbox image: only the pause program.
dir=$(overlay pause)
mkdir -p "$dir/etc"
install -m 0755 "$build/pause" "$dir/pause"
echo 'nobody:x:65534:65534:nobody:/:/sbin/nologin' >"$dir/etc/passwd"
echo 'nogroup:x:65534:' >"$dir/etc/group"
layer pause "$dir"
config pause --config.entrypoint /pause --config.user 65535:65535
# pause:3.9 is pulled, listed and removed by image specs under two registry
# names; a config of its own keeps it apart from the sandbox image tags.
copy pause pause-3.9
config pause-3.9 --config.label crius.conformance/role=removable

# nginx: busybox httpd behind a script that looks like nginx where critest
# looks: the process is called "nginx", its command line says "master
# process", its PID is in /var/run/nginx.pid.
dir=$(overlay nginx)
mkdir -p "$dir/usr/sbin" "$dir/usr/share/nginx/html" "$dir/var/run" "$dir/etc/nginx"
cat >"$dir/usr/sbin/nginx" <<'SH'
#!/bin/sh
# nginx stand-in: busybox httpd on $NGINX_PORT (80) serving /usr/share/nginx/html.
if [ "$1" != "master process" ]; then
    exec /usr/sbin/nginx "master process" "$@"
fi
server=
trap '[ -z "$server" ] || kill "$server" 2>/dev/null; rm -f /var/run/nginx.pid; exit 0' INT TERM QUIT
echo $$ >/var/run/nginx.pid
echo "nginx stand-in: busybox httpd on port ${NGINX_PORT:-80}" >&2
httpd -f -p "${NGINX_PORT:-80}" -h /usr/share/nginx/html &
server=$!
wait "$server"
SH
chmod 0755 "$dir/usr/sbin/nginx"
echo '<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head><body><h1>Welcome to nginx!</h1></body></html>' \
    >"$dir/usr/share/nginx/html/index.html"
layer nginx "$dir" busybox
config nginx --config.cmd nginx --config.cmd -g --config.cmd 'daemon off;' \
    --config.exposedports 80/tcp --config.stopsignal SIGTERM
# The host-network variant listens on 12003 (cri-tools' images/hostnet-nginx).
copy nginx hostnet-nginx
config hostnet-nginx --clear config.exposedports --config.exposedports 12003/tcp \
    --config.env NGINX_PORT=12003

# apache httpd: busybox httpd on :80, saying "httpd" in its log.
dir=$(overlay httpd)
mkdir -p "$dir/usr/local/bin" "$dir/usr/local/apache2/htdocs"
cat >"$dir/usr/local/bin/httpd-foreground" <<'SH'
#!/bin/sh
# apache httpd stand-in: busybox httpd on port 80 serving /usr/local/apache2/htdocs.
server=
trap '[ -z "$server" ] || kill "$server" 2>/dev/null; exit 0' INT TERM WINCH
echo "httpd stand-in: busybox httpd on port 80" >&2
httpd -f -p 80 -h /usr/local/apache2/htdocs &
server=$!
wait "$server"
SH
chmod 0755 "$dir/usr/local/bin/httpd-foreground"
echo '<html><body><h1>It works!</h1></body></html>' >"$dir/usr/local/apache2/htdocs/index.html"
layer httpd "$dir" busybox
config httpd --config.cmd httpd-foreground --config.exposedports 80/tcp \
    --config.workingdir /usr/local/apache2

# nonewprivs: the setuid-root probe as the command.
dir=$(overlay nonewprivs)
mkdir -p "$dir/usr/local/bin"
install -m 4755 -o root -g root "$build/nnp" "$dir/usr/local/bin/nnp"
layer nonewprivs "$dir" busybox
config nonewprivs --config.cmd /usr/local/bin/nnp

# ------------------------------------------------------------------ push
# local tag                     repository:tag on REGISTRY
while read -r tag target; do
    skopeo copy --quiet --insecure-policy --dest-tls-verify=false \
        --digestfile "$build/digest" "oci:$oci:$tag" "docker://$registry/$target"
    printf '  %-60s %.19s\n' "$target" "$(cat "$build/digest")" >&3
done <<'EOF'
busybox                         e2e-test-images/busybox:1.29-2
busybox                         library/busybox:latest
bb-1.35.0-glibc                 docker/library/busybox:1.35.0-glibc
bb-1-uclibc                     docker/library/busybox:1-uclibc
bb-1                            docker/library/busybox:1
bb-1-glibc                      docker/library/busybox:1-glibc
bb-1-musl                       docker/library/busybox:1-musl
pause                           pause:3.6
pause                           pause:3.7
pause                           pause:3.8
pause                           pause:3.10
pause-3.9                       pause:3.9
nginx                           e2e-test-images/nginx:1.14-2
hostnet-nginx                   k8s-staging-cri-tools/hostnet-nginx-amd64:latest
httpd                           e2e-test-images/httpd:2.4.39-4
nonewprivs                      e2e-test-images/nonewprivs:1.3
test-image-user-uid             k8s-staging-cri-tools/test-image-user-uid:latest
test-image-user-username        k8s-staging-cri-tools/test-image-user-username:latest
test-image-user-uid-group       k8s-staging-cri-tools/test-image-user-uid-group:latest
test-image-user-username-group  k8s-staging-cri-tools/test-image-user-username-group:latest
test-image-predefined-group     k8s-staging-cri-tools/test-image-predefined-group:latest
test-image-1                    k8s-staging-cri-tools/test-image-1:latest
test-image-2                    k8s-staging-cri-tools/test-image-2:latest
test-image-3                    k8s-staging-cri-tools/test-image-3:latest
test-image-latest               k8s-staging-cri-tools/test-image-latest:latest
test-image-digest               k8s-staging-cri-tools/test-image-digest:latest
test-image-tags                 k8s-staging-cri-tools/test-image-tags:1
test-image-tags                 k8s-staging-cri-tools/test-image-tags:2
test-image-tags                 k8s-staging-cri-tools/test-image-tags:3
test-image-tag-test             k8s-staging-cri-tools/test-image-tag:test
test-image-tag-all              k8s-staging-cri-tools/test-image-tag:all
EOF
# critest pulls test-image-digest by upstream's digest (sha256:9700f9a2...),
# which no local build reproduces: that one spec cannot pass here.

rm -rf "$build"
