//! The `-ENOSYS` prefix runc puts before a seccomp filter that denies by
//! default. A syscall numbered above every syscall the profile names (on
//! its architecture) is newer than the profile; it gets ENOSYS instead of
//! the default action, as from an older kernel, so programs take their
//! fallbacks (glibc's `clone3` and `fchmodat2` callers fall back only on
//! ENOSYS; EPERM makes them fail). A process started in a container must be
//! filtered exactly as its init was, so the same prefix goes before its
//! program here.
//!
//! The prefix checks the architecture, then the syscall number, and jumps
//! either to `ret ERRNO(ENOSYS)` or into the untouched libseccomp program.
//! It is a few instructions per architecture, so every jump fits BPF's
//! 8-bit conditional offsets.

use super::plan::NotHere;
use super::seccomp_bpf::Profile;
use libseccomp::{ScmpArch, ScmpSyscall};

// Classic BPF opcodes (linux/filter.h) and the seccomp_data offsets.
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
const RET_ERRNO_ENOSYS: u32 = 0x0005_0000 | libc::ENOSYS as u32;
/// Set in the number of an x32 syscall, whose arch is x86_64's.
const X32_BIT: u32 = 1 << 30;
/// s390's setup(2), the number an unknown syscall keeps there.
const S390_MULTIPLEX: u32 = 0;

/// Whether a profile gets the prefix: its default action is not a
/// permissive one (allow, log, or trace, whose tracer handles new syscalls
/// itself), and is not already ENOSYS.
pub fn wanted(profile: &Profile) -> bool {
    let permissive = matches!(
        profile.default_action.as_str(),
        "SCMP_ACT_ALLOW" | "SCMP_ACT_LOG" | "SCMP_ACT_TRACE"
    );
    !permissive && profile.default_errno_ret != Some(libc::ENOSYS as u32)
}

/// The highest syscall the profile names, for one kernel architecture: one
/// limit, or on x86_64 one per mode (x86_64 and x32 share the arch value).
#[derive(Debug, Default, PartialEq, Eq)]
struct Limits {
    audit_arch: u32,
    native: Option<u32>,
    x32: Option<u32>,
    s390: bool,
}

/// `program` behind the prefix for `profile`. The inner error sends the
/// exec to the runtime: an architecture whose kernel value is not known
/// here.
pub fn prefixed(
    profile: &Profile,
    program: Vec<libc::sock_filter>,
) -> Result<Result<Vec<libc::sock_filter>, NotHere>, String> {
    let limits = match limits(profile) {
        Ok(limits) => limits,
        Err(why) => return Ok(Err(why)),
    };
    let mut stub = stub(&limits)?;
    stub.extend(program);
    Ok(Ok(stub))
}

fn limits(profile: &Profile) -> Result<Vec<Limits>, NotHere> {
    // The native architecture always counts, listed or not, as in runc.
    let mut archs = vec![ScmpArch::native()];
    for name in &profile.architectures {
        // An unknown name fails the compile before this.
        if let Ok(arch) = name.parse::<ScmpArch>()
            && !archs.contains(&arch)
        {
            archs.push(arch);
        }
    }
    let mut all: Vec<Limits> = Vec::new();
    for arch in archs {
        let Some(audit_arch) = audit_arch(arch) else {
            return Err(NotHere(format!(
                "seccomp architecture {arch:?} has no ENOSYS prefix here"
            )));
        };
        let highest = profile
            .syscalls
            .iter()
            .flat_map(|rule| &rule.names)
            .filter_map(|name| ScmpSyscall::from_name_by_arch(name, arch).ok())
            // Syscalls an architecture lacks resolve to negative numbers.
            .filter_map(|syscall| u32::try_from(i32::from(syscall)).ok())
            .max();
        let Some(highest) = highest else {
            continue;
        };
        let at = match all.iter().position(|l| l.audit_arch == audit_arch) {
            Some(at) => at,
            None => {
                all.push(Limits {
                    audit_arch,
                    s390: matches!(arch, ScmpArch::S390 | ScmpArch::S390X),
                    ..Default::default()
                });
                all.len() - 1
            }
        };
        if arch == ScmpArch::X32 {
            all[at].x32 = Some(highest);
        } else {
            all[at].native = Some(highest);
        }
    }
    Ok(all)
}

/// The kernel's AUDIT_ARCH_* value of an architecture (linux/audit.h).
fn audit_arch(arch: ScmpArch) -> Option<u32> {
    const BITS64: u32 = 0x8000_0000;
    const LE: u32 = 0x4000_0000;
    Some(match arch {
        ScmpArch::X86 => 3 | LE,
        ScmpArch::X8664 | ScmpArch::X32 => 62 | BITS64 | LE,
        ScmpArch::Arm => 40 | LE,
        ScmpArch::Aarch64 => 183 | BITS64 | LE,
        ScmpArch::Ppc => 20,
        ScmpArch::Ppc64 => 21 | BITS64,
        ScmpArch::Ppc64Le => 21 | BITS64 | LE,
        ScmpArch::S390 => 22,
        ScmpArch::S390X => 22 | BITS64,
        ScmpArch::Riscv64 => 243 | BITS64 | LE,
        _ => return None,
    })
}

/// Where a jump goes, resolved once the stub is laid out.
#[derive(Clone, Copy)]
enum To {
    Next,
    /// Over this many instructions.
    Skip(u8),
    Section(usize),
    Enosys,
    Program,
}

struct Insn {
    code: u16,
    k: u32,
    jt: To,
    jf: To,
}

fn op(code: u16, k: u32) -> Insn {
    Insn {
        code,
        k,
        jt: To::Next,
        jf: To::Next,
    }
}

fn jump(code: u16, k: u32, jt: To, jf: To) -> Insn {
    Insn { code, k, jt, jf }
}

/// A jump taken either way, so that every target is resolved the same way.
fn always(to: To) -> Insn {
    jump(JEQ_K, 0, to, to)
}

/// Lays out: load the arch; one `jeq` per architecture to its section;
/// anything else into the program; the sections; `ret ENOSYS`.
fn stub(limits: &[Limits]) -> Result<Vec<libc::sock_filter>, String> {
    let mut insns = vec![op(LD_W_ABS, ARCH_OFFSET)];
    for (i, l) in limits.iter().enumerate() {
        insns.push(jump(JEQ_K, l.audit_arch, To::Section(i), To::Next));
    }
    insns.push(always(To::Program));
    let mut sections = Vec::new();
    for l in limits {
        sections.push(insns.len());
        insns.push(op(LD_W_ABS, NR_OFFSET));
        if l.s390 {
            insns.push(jump(JEQ_K, S390_MULTIPLEX, To::Enosys, To::Next));
        }
        let above = |highest| jump(JGT_K, highest, To::Enosys, To::Program);
        let x86_64 = l.audit_arch == audit_arch(ScmpArch::X8664).unwrap_or_default();
        match (l.native, l.x32) {
            (Some(native), Some(x32)) => {
                insns.push(jump(JSET_K, X32_BIT, To::Skip(1), To::Next));
                insns.push(above(native));
                insns.push(above(x32));
            }
            (Some(native), None) if x86_64 => {
                insns.push(jump(JSET_K, X32_BIT, To::Program, To::Next));
                insns.push(above(native));
            }
            (None, Some(x32)) => {
                insns.push(jump(JSET_K, X32_BIT, To::Next, To::Program));
                insns.push(above(x32));
            }
            (Some(native), None) => insns.push(above(native)),
            (None, None) => insns.push(always(To::Program)),
        }
    }
    let enosys = insns.len();
    insns.push(op(RET_K, RET_ERRNO_ENOSYS));
    let program = insns.len();
    let resolve = |pc: usize, to: To| -> Result<u8, String> {
        let target = match to {
            To::Next => return Ok(0),
            To::Skip(n) => return Ok(n),
            To::Section(i) => sections[i],
            To::Enosys => enosys,
            To::Program => program,
        };
        u8::try_from(target - pc - 1)
            .map_err(|_| format!("seccomp: an ENOSYS prefix of {program} instructions"))
    };
    insns
        .iter()
        .enumerate()
        .map(|(pc, insn)| {
            Ok(libc::sock_filter {
                code: insn.code,
                jt: resolve(pc, insn.jt)?,
                jf: resolve(pc, insn.jf)?,
                k: insn.k,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RET_ALLOW: u32 = 0x7fff_0000;
    const I386: u32 = 0x4000_0003;
    const X86_64: u32 = 0xc000_003e;

    fn profile(json: serde_json::Value) -> Profile {
        serde_json::from_value(json).unwrap()
    }

    /// Docker's default shape: deny by default, three x86 architectures.
    fn denying(names: &[&str]) -> Profile {
        profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
        }))
    }

    /// Runs a program of the loads, jumps and returns the stub uses.
    fn run(program: &[libc::sock_filter], arch: u32, nr: u32) -> u32 {
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let insn = program[pc];
            pc += 1;
            let taken = match insn.code {
                LD_W_ABS => {
                    a = if insn.k == ARCH_OFFSET { arch } else { nr };
                    continue;
                }
                RET_K => return insn.k,
                JEQ_K => a == insn.k,
                JGT_K => a > insn.k,
                JSET_K => a & insn.k != 0,
                other => panic!("opcode {other:#x}"),
            };
            pc += usize::from(if taken { insn.jt } else { insn.jf });
        }
    }

    fn verdict(p: &Profile, arch: u32, nr: u32) -> &'static str {
        let mut program = stub(&limits(p).unwrap()).unwrap();
        program.push(libc::sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: RET_ALLOW,
        });
        match run(&program, arch, nr) {
            RET_ALLOW => "filter",
            RET_ERRNO_ENOSYS => "ENOSYS",
            other => panic!("returned {other:#x}"),
        }
    }

    #[test]
    fn only_denying_profiles_get_the_prefix() {
        assert!(wanted(&denying(&["read"])));
        for (action, errno) in [
            ("SCMP_ACT_ALLOW", None),
            ("SCMP_ACT_LOG", None),
            ("SCMP_ACT_TRACE", None),
            ("SCMP_ACT_ERRNO", Some(libc::ENOSYS)),
        ] {
            let p = profile(serde_json::json!({
                "defaultAction": action, "defaultErrnoRet": errno, "syscalls": []
            }));
            assert!(!wanted(&p), "{action} {errno:?}");
        }
        let kill = profile(serde_json::json!({"defaultAction": "SCMP_ACT_KILL_PROCESS"}));
        assert!(wanted(&kill));
    }

    #[test]
    fn syscalls_above_the_highest_named_get_enosys_per_architecture_and_mode() {
        // x86_64: read 0, exit_group 231; i386: read 3, exit_group 252;
        // x32: the same numbers as x86_64 with bit 30 set.
        let p = denying(&["read", "exit_group"]);
        assert_eq!(verdict(&p, X86_64, 0), "filter");
        assert_eq!(verdict(&p, X86_64, 231), "filter");
        assert_eq!(verdict(&p, X86_64, 232), "ENOSYS");
        assert_eq!(verdict(&p, X86_64, 435), "ENOSYS");
        assert_eq!(verdict(&p, X86_64, X32_BIT | 231), "filter");
        assert_eq!(verdict(&p, X86_64, X32_BIT | 232), "ENOSYS");
        assert_eq!(verdict(&p, I386, 252), "filter");
        assert_eq!(verdict(&p, I386, 253), "ENOSYS");
        // An architecture the profile does not name meets the filter's own
        // bad-arch action.
        assert_eq!(verdict(&p, 0xc000_00b7, 9999), "filter");
    }

    #[test]
    fn without_x32_its_syscalls_are_left_to_the_filter() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["read", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
        }));
        assert_eq!(limits(&p).unwrap().len(), 1);
        assert_eq!(verdict(&p, X86_64, 232), "ENOSYS");
        assert_eq!(verdict(&p, X86_64, X32_BIT | 500), "filter");
    }

    #[test]
    fn an_architecture_without_a_known_value_goes_to_the_runtime() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_MIPS"],
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]
        }));
        assert!(limits(&p).unwrap_err().0.contains("Mips"));
    }

    /// The whole compiled program, loaded in a child: what the kernel
    /// answers for a named, an unnamed lower and a newer syscall.
    #[test]
    fn the_kernel_answers_enosys_for_newer_syscalls_and_the_default_for_others() {
        let p = denying(&["exit_group", "exit", "getpid", "read"]);
        let bpf = super::super::seccomp_bpf::compile(&p).unwrap().unwrap();
        let prog = libc::sock_fprog {
            len: bpf.program.len() as u16,
            filter: bpf.program.as_ptr() as *mut _,
        };
        // getppid (110) is below exit_group (231), clone3 (435) above it.
        // SAFETY: the child makes only raw system calls before _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe {
                let errno_of = |nr: libc::c_long| {
                    if libc::syscall(nr, 0, 0) == -1 {
                        *libc::__errno_location()
                    } else {
                        0
                    }
                };
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::syscall(libc::SYS_seccomp, 1, 0, &prog) != 0
                {
                    libc::_exit(100);
                }
                let code = match (
                    errno_of(libc::SYS_getpid),
                    errno_of(libc::SYS_getppid),
                    errno_of(libc::SYS_clone3),
                    errno_of(1000),
                ) {
                    (0, libc::EPERM, libc::ENOSYS, libc::ENOSYS) => 0,
                    (0, _, _, _) => 2,
                    _ => 1,
                };
                libc::_exit(code);
            }
        }
        let mut status = 0;
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "{status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0);
    }
}
