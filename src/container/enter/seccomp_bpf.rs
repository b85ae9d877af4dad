//! A container's OCI seccomp profile compiled to the BPF program the kernel
//! loads, with libseccomp as runc uses it: the same rule translation (one
//! rule per condition when an argument has several, syscalls this libseccomp
//! does not know skipped, rules equal to the default action dropped, and
//! runc's `-ENOSYS` prefix, `super::enosys`), so a process started here is
//! filtered exactly as the container's init is.

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use std::io::{Read, Seek};
use std::os::fd::FromRawFd;
use std::sync::{Arc, Mutex};

/// `linux.seccomp` of config.json.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: String,
    pub default_errno_ret: Option<u32>,
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub flags: Vec<String>,
    pub listener_path: Option<String>,
    #[serde(default)]
    pub syscalls: Vec<Syscall>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Syscall {
    pub names: Vec<String>,
    pub action: String,
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// A compiled filter and the flags to load it with.
#[derive(Debug)]
pub struct Bpf {
    pub program: Vec<libc::sock_filter>,
    pub flags: libc::c_ulong,
}

const EPERM: u32 = libc::EPERM as u32;

/// How many compiled profiles are remembered.
const REMEMBERED: usize = 8;

/// The last profiles compiled and their programs, most recently used first.
/// Compiling crius's default profile takes ~0.9 ms, a fifth of an exec
/// probe, and the pods of a node share a handful of profiles (most often
/// RuntimeDefault), so each is compiled once, not once per exec. A profile
/// is compared whole, so an entry is never used for a different one.
static RECENT: Mutex<Vec<(Profile, Arc<Bpf>)>> = Mutex::new(Vec::new());

/// `compile`, remembering the last few programs.
pub fn compiled(profile: &Profile) -> Result<Result<Arc<Bpf>, super::plan::NotHere>, String> {
    if let Some(bpf) = remembered(profile) {
        return Ok(Ok(bpf));
    }
    let bpf = match compile(profile)? {
        Ok(bpf) => Arc::new(bpf),
        Err(why) => return Ok(Err(why)),
    };
    let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    if !recent.iter().any(|(known, _)| known == profile) {
        recent.insert(0, (profile.clone(), bpf.clone()));
        recent.truncate(REMEMBERED);
    }
    Ok(Ok(bpf))
}

/// The program of `profile` if it is remembered, which makes it the most
/// recently used.
fn remembered(profile: &Profile) -> Option<Arc<Bpf>> {
    let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    let at = recent.iter().position(|(known, _)| known == profile)?;
    recent[..=at].rotate_right(1);
    Some(recent[0].1.clone())
}

/// Compiles `profile`; the inner error names what this path cannot do (a
/// user-space notifier), the outer one a profile that cannot be compiled.
pub fn compile(profile: &Profile) -> Result<Result<Bpf, super::plan::NotHere>, String> {
    let not_here = |why: &str| Ok(Err(super::plan::NotHere(why.into())));
    if profile.listener_path.is_some() {
        return not_here("seccomp listenerPath is set (a user-space notifier)");
    }
    let uses_notify = |action: &str| action == "SCMP_ACT_NOTIFY";
    if uses_notify(&profile.default_action)
        || profile.syscalls.iter().any(|s| uses_notify(&s.action))
    {
        return not_here("seccomp SCMP_ACT_NOTIFY is used");
    }
    let fail = |what: String| move |e: libseccomp::error::SeccompError| format!("{what}: {e}");
    let default = action(&profile.default_action, profile.default_errno_ret)?;
    let mut filter = ScmpFilterContext::new(default).map_err(fail("seccomp: a filter".into()))?;
    // The child sets no_new_privs itself when the spec asks; the program is
    // exported, not loaded by libseccomp.
    filter
        .set_ctl_nnp(false)
        .map_err(fail("seccomp: the nnp attribute".into()))?;
    for arch in &profile.architectures {
        let arch = arch
            .parse::<ScmpArch>()
            .map_err(|_| format!("seccomp: unknown architecture {arch:?}"))?;
        filter
            .add_arch(arch)
            .map_err(fail(format!("seccomp: architecture {arch:?}")))?;
    }
    for rule in &profile.syscalls {
        let act = action(&rule.action, rule.errno_ret)?;
        if act == default {
            continue;
        }
        let conditions = rule
            .args
            .iter()
            .map(condition)
            .collect::<Result<Vec<_>, _>>()?;
        let repeated = (0..6).any(|i| conditions_on(&rule.args, i) > 1);
        for name in &rule.names {
            // Names this libseccomp does not know (newer syscalls, other
            // architectures') are skipped, as runc skips them.
            let Ok(syscall) = libseccomp::ScmpSyscall::from_name(name) else {
                continue;
            };
            let added = if conditions.is_empty() {
                filter.add_rule(act, syscall).map(|_| ())
            } else if repeated {
                // Several conditions on one argument mean any of them.
                conditions
                    .iter()
                    .try_for_each(|c| filter.add_rule_conditional(act, syscall, &[*c]).map(|_| ()))
            } else {
                filter
                    .add_rule_conditional(act, syscall, &conditions)
                    .map(|_| ())
            };
            added.map_err(fail(format!("seccomp: the rule for {name}")))?;
        }
    }
    let mut flags = 0;
    for flag in &profile.flags {
        flags |= match flag.as_str() {
            "SECCOMP_FILTER_FLAG_TSYNC" => 1,
            "SECCOMP_FILTER_FLAG_LOG" => 2,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => 4,
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => 32,
            other => return Err(format!("seccomp: unknown flag {other:?}")),
        };
    }
    let mut program = export(&filter)?;
    if super::enosys::wanted(profile) {
        program = match super::enosys::prefixed(profile, program)? {
            Ok(program) => program,
            Err(why) => return Ok(Err(why)),
        };
    }
    Ok(Ok(Bpf { program, flags }))
}

fn conditions_on(args: &[Arg], index: u32) -> usize {
    args.iter().filter(|a| a.index == index).count()
}

fn action(name: &str, errno: Option<u32>) -> Result<ScmpAction, String> {
    Ok(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_ERRNO" => ScmpAction::Errno(errno.unwrap_or(EPERM) as i32),
        "SCMP_ACT_TRACE" => ScmpAction::Trace(errno.unwrap_or(EPERM) as u16),
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        "SCMP_ACT_LOG" => ScmpAction::Log,
        other => return Err(format!("seccomp: unknown action {other:?}")),
    })
}

fn condition(arg: &Arg) -> Result<ScmpArgCompare, String> {
    let op = match arg.op.as_str() {
        "SCMP_CMP_NE" => ScmpCompareOp::NotEqual,
        "SCMP_CMP_LT" => ScmpCompareOp::Less,
        "SCMP_CMP_LE" => ScmpCompareOp::LessOrEqual,
        "SCMP_CMP_EQ" => ScmpCompareOp::Equal,
        "SCMP_CMP_GE" => ScmpCompareOp::GreaterEqual,
        "SCMP_CMP_GT" => ScmpCompareOp::Greater,
        // The mask is `value`, the expected result `valueTwo`.
        "SCMP_CMP_MASKED_EQ" => {
            return Ok(ScmpArgCompare::new(
                arg.index,
                ScmpCompareOp::MaskedEqual(arg.value),
                arg.value_two,
            ));
        }
        other => return Err(format!("seccomp: unknown operator {other:?}")),
    };
    Ok(ScmpArgCompare::new(arg.index, op, arg.value))
}

/// The filter's program, through a memfd (libseccomp 2.5 exports to a fd).
fn export(filter: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, String> {
    // SAFETY: memfd_create with a NUL-terminated name; the fd is owned below.
    let fd = unsafe { libc::memfd_create(c"crius-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!(
            "seccomp: memfd: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: a fresh fd nothing else owns.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    filter
        .export_bpf(&file)
        .map_err(|e| format!("seccomp: exporting the filter: {e}"))?;
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| format!("seccomp: reading the filter: {e}"))?;
    let size = std::mem::size_of::<libc::sock_filter>();
    if bytes.is_empty() || bytes.len() % size != 0 {
        return Err(format!("seccomp: a filter of {} bytes", bytes.len()));
    }
    Ok(bytes
        .chunks_exact(size)
        .map(|b| libc::sock_filter {
            code: u16::from_ne_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> Profile {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn crius_default_profile_compiles() {
        let caps = crate::container::security::DEFAULT_CAPABILITIES
            .iter()
            .copied()
            .collect();
        let spec = crate::container::seccomp::default_profile(&caps);
        let json = serde_json::to_value(&spec).unwrap();
        let bpf = compile(&profile(json)).unwrap().unwrap();
        // An architecture check, rules and a return at least.
        assert!(bpf.program.len() > 10, "{}", bpf.program.len());
        assert!(bpf.program.len() <= 4096);
    }

    #[test]
    fn a_profile_is_compiled_once_and_only_its_program_reused() {
        let allow_with = |errno: u32| {
            profile(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno}]
            }))
        };
        let first = compiled(&allow_with(1)).unwrap().unwrap();
        let again = compiled(&allow_with(1)).unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let other = compiled(&allow_with(2)).unwrap().unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        assert_ne!(
            format!("{:?}", first.program),
            format!("{:?}", other.program),
            "the errno is in the program"
        );
        // Past REMEMBERED other profiles, the first is compiled anew.
        for errno in 10..10 + REMEMBERED as u32 {
            compiled(&allow_with(errno)).unwrap().unwrap();
        }
        let anew = compiled(&allow_with(1)).unwrap().unwrap();
        assert!(!Arc::ptr_eq(&first, &anew));
        assert_eq!(
            format!("{:?}", first.program),
            format!("{:?}", anew.program)
        );
    }

    #[test]
    fn unknown_names_are_skipped_and_bad_words_refused() {
        let ok = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["read", "no_such_call"], "action": "SCMP_ACT_ALLOW"},
                         {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                                   {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                         {"names": ["write"], "action": "SCMP_ACT_ERRNO"}]
        }));
        let bpf = compile(&ok).unwrap().unwrap();
        assert_eq!(bpf.flags, 2);
        for (field, bad) in [
            ("defaultAction", "SCMP_ACT_FLY"),
            ("architectures", "SCMP_ARCH_VAX"),
        ] {
            let mut json = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"});
            json[field] = if field == "architectures" {
                serde_json::json!([bad])
            } else {
                serde_json::json!(bad)
            };
            let err = compile(&profile(json)).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn a_notifier_goes_to_the_runtime() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        assert!(compile(&p).unwrap().is_err());
    }
}
