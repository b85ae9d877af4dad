//! crius's `RuntimeDefault` seccomp profile.
//!
//! It blocks (EPERM) what Docker's default profile blocks, written as a deny
//! list over an allow-by-default filter rather than Docker's ~350-name allow
//! list: the list below is short enough to review, and new harmless syscalls
//! keep working on newer kernels. As in Docker's profile, syscalls that a
//! capability exists for are allowed when the container has that capability.
//! Namespace creation through `clone` is blocked by flag (unless
//! CAP_SYS_ADMIN), and `clone3`, whose flags a filter cannot see, fails with
//! ENOSYS so that libc falls back to `clone`.
//!
//! Not reproduced: Docker's filter on `personality` argument values (a deny
//! filter cannot express "any value except these five").

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};
use std::collections::HashSet;

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// Blocked whatever the capabilities: obsolete, or not namespaced at all
/// (the kernel keyring).
const ALWAYS: &[&str] = &[
    "add_key",
    "keyctl",
    "request_key",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "nfsservctl",
    "sysfs",
    "_sysctl",
    "uselib",
    "ustat",
    "vm86",
    "vm86old",
];

/// Blocked unless the container has the capability.
const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (
        Capability::SysAdmin,
        &[
            "bpf",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "pivot_root",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "swapoff",
            "swapon",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (
        Capability::SysBoot,
        &["kexec_file_load", "kexec_load", "reboot"],
    ),
    (
        Capability::SysModule,
        &["delete_module", "finit_module", "init_module"],
    ),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &["kcmp", "pidfd_getfd", "process_madvise", "userfaultfd"],
    ),
    (Capability::SysRawio, &["ioperm", "iopl"]),
    (
        Capability::SysTime,
        &["clock_adjtime", "clock_settime", "settimeofday", "stime"],
    ),
    (
        Capability::SysNice,
        &[
            "get_mempolicy",
            "mbind",
            "move_pages",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (Capability::Syslog, &["syslog"]),
    (Capability::SysTtyConfig, &["vhangup"]),
    (Capability::DacReadSearch, &["open_by_handle_at"]),
];

/// clone(2) flags that create namespaces.
const NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

fn rule(names: &[&str], errno: u32, args: Option<Vec<LinuxSeccompArg>>) -> LinuxSyscall {
    let mut syscall = LinuxSyscall::default();
    syscall.set_names(names.iter().map(|n| n.to_string()).collect());
    syscall.set_action(LinuxSeccompAction::ScmpActErrno);
    syscall.set_errno_ret(Some(errno));
    syscall.set_args(args);
    syscall
}

/// The profile for a container with capabilities `caps`.
pub fn default_profile(caps: &HashSet<Capability>) -> LinuxSeccomp {
    let mut syscalls = vec![rule(ALWAYS, EPERM, None)];
    for (cap, names) in BY_CAPABILITY {
        if !caps.contains(cap) {
            syscalls.push(rule(names, EPERM, None));
        }
    }
    if !caps.contains(&Capability::SysAdmin) {
        syscalls.push(rule(&["clone3"], ENOSYS, None));
        for &flag in NAMESPACE_FLAGS {
            let arg = LinuxSeccompArgBuilder::default()
                .index(0usize)
                .value(flag)
                .value_two(flag)
                .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                .build()
                .expect("all fields set");
            syscalls.push(rule(&["clone"], EPERM, Some(vec![arg])));
        }
    }
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActAllow);
    profile.set_architectures(Some(architectures()));
    profile.set_syscalls(Some(syscalls));
    profile
}

/// The host's architectures, including the 32-bit ABIs it can run, so that
/// the rules cannot be bypassed through them.
fn architectures() -> Vec<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        "riscv64" => vec![Arch::ScmpArchRiscv64],
        "s390x" => vec![Arch::ScmpArchS390x, Arch::ScmpArchS390],
        "powerpc64" => vec![Arch::ScmpArchPpc64le],
        _ => vec![Arch::ScmpArchNative],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(profile: &LinuxSeccomp) -> Vec<String> {
        profile
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|s| s.args().is_none())
            .flat_map(|s| s.names().clone())
            .collect()
    }

    #[test]
    fn capabilities_unlock_their_syscalls() {
        let none = default_profile(&HashSet::new());
        let names = blocked(&none);
        for name in ["unshare", "mount", "keyctl", "reboot", "clone3", "bpf"] {
            assert!(names.iter().any(|n| n == name), "{name} not blocked");
        }
        let admin = default_profile(&[Capability::SysAdmin].into_iter().collect());
        let names = blocked(&admin);
        assert!(!names.iter().any(|n| n == "mount" || n == "clone3"));
        assert!(names.iter().any(|n| n == "keyctl"));
        let json = serde_json::to_value(&none).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ALLOW");
        let clone_rules = json["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["names"][0] == "clone")
            .count();
        assert_eq!(clone_rules, NAMESPACE_FLAGS.len());
    }
}
