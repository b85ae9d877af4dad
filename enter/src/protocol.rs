//! The helper's instructions and its reports, in a small binary form
//! (lengths and integers in native byte order: both ends are on one host).
//!
//! The descriptors go with the instructions (SCM_RIGHTS), in the order of
//! `Instructions::fd_count`: the process's stdin, stdout and stderr, the
//! container init's pidfd, then the `cgroup.procs` files to join.

/// What the helper must do. criusd has read and checked the container's
/// bundle; nothing here is looked up by the helper but HOME and the
/// command's path, which it reads inside the container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Instructions {
    pub argv: Vec<Vec<u8>>,
    /// `KEY=VALUE` entries, checked by criusd; without a non-empty HOME
    /// when `home_wanted`.
    pub env: Vec<Vec<u8>>,
    /// Add HOME from the container's /etc/passwd (else "/"), as runc does.
    pub home_wanted: bool,
    pub cwd: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub umask: Option<u32>,
    pub caps: CapSets,
    /// The highest capability this kernel knows.
    pub last_cap: u32,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privs: bool,
    /// The AppArmor profile name.
    pub apparmor: Option<Vec<u8>>,
    pub selinux: Option<Vec<u8>>,
    pub oom_score_adj: Option<i32>,
    /// The container's session keyring (`_ses.<id>`, as runc names it).
    pub session_keyring: Option<Vec<u8>>,
    pub seccomp: Option<Seccomp>,
    /// The helper enters the container's PID namespace before forking.
    pub pid_namespace: bool,
    /// The other namespaces to join (`CLONE_NEW*`), with one setns.
    pub namespaces: i32,
    /// A terminal from the container's devpts is the process's stdio.
    pub tty: bool,
    /// How many `cgroup.procs` descriptors follow the pidfd.
    pub cgroups: u32,
}

/// The capability sets as bit masks (bit n = capability n).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub inheritable: u64,
    pub permitted: u64,
    pub ambient: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

/// A compiled seccomp filter: `SECCOMP_SET_MODE_FILTER` flags and the
/// program's instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seccomp {
    pub flags: u32,
    pub program: Vec<Filter>,
}

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const MAGIC: &[u8; 4] = b"CRE1";
/// Instructions larger than this are refused (argv and env together are
/// bounded by the kernel's ARG_MAX well below it).
pub const MAX_INSTRUCTIONS: usize = 16 << 20;
/// Descriptors sent before the cgroup files: stdin, stdout, stderr, pidfd.
pub const FIXED_FDS: usize = 4;

impl Instructions {
    pub fn fd_count(&self) -> usize {
        FIXED_FDS + self.cgroups as usize
    }

    /// The message: magic, body length, body.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(4096));
        w.list(&self.argv);
        w.list(&self.env);
        w.flag(self.home_wanted);
        w.bytes(&self.cwd);
        w.u32(self.uid);
        w.u32(self.gid);
        w.u32(self.groups.len() as u32);
        self.groups.iter().for_each(|g| w.u32(*g));
        w.opt(self.umask, |w, m| w.u32(m));
        let c = self.caps;
        for mask in [
            c.bounding,
            c.effective,
            c.inheritable,
            c.permitted,
            c.ambient,
        ] {
            w.u64(mask);
        }
        w.u32(self.last_cap);
        w.u32(self.rlimits.len() as u32);
        for r in &self.rlimits {
            w.u32(r.resource);
            w.u64(r.soft);
            w.u64(r.hard);
        }
        w.flag(self.no_new_privs);
        w.opt(self.apparmor.as_deref(), Writer::bytes);
        w.opt(self.selinux.as_deref(), Writer::bytes);
        w.opt(self.oom_score_adj, |w, v| w.u32(v as u32));
        w.opt(self.session_keyring.as_deref(), Writer::bytes);
        w.opt(self.seccomp.as_ref(), |w, s| {
            w.u32(s.flags);
            w.u32(s.program.len() as u32);
            for f in &s.program {
                w.0.extend_from_slice(&f.code.to_ne_bytes());
                w.0.extend_from_slice(&[f.jt, f.jf]);
                w.u32(f.k);
            }
        });
        w.flag(self.pid_namespace);
        w.u32(self.namespaces as u32);
        w.flag(self.tty);
        w.u32(self.cgroups);
        let mut message = Vec::with_capacity(w.0.len() + 8);
        message.extend_from_slice(MAGIC);
        message.extend_from_slice(&(w.0.len() as u32).to_ne_bytes());
        message.extend(w.0);
        message
    }

    /// The body's length from the first 8 bytes of a message.
    pub fn body_len(header: &[u8; 8]) -> Result<usize, String> {
        if &header[..4] != MAGIC {
            return Err("not crius-enter instructions".into());
        }
        let len = u32::from_ne_bytes(header[4..].try_into().expect("4 bytes")) as usize;
        if len > MAX_INSTRUCTIONS {
            return Err(format!("instructions of {len} bytes"));
        }
        Ok(len)
    }

    pub fn decode(body: &[u8]) -> Result<Instructions, String> {
        let mut r = Reader(body);
        let argv = r.list()?;
        let env = r.list()?;
        let home_wanted = r.flag()?;
        let cwd = r.bytes()?;
        let (uid, gid) = (r.u32()?, r.u32()?);
        let groups = (0..r.count(4)?)
            .map(|_| r.u32())
            .collect::<Result<_, _>>()?;
        let umask = r.opt(Reader::u32)?;
        let caps = CapSets {
            bounding: r.u64()?,
            effective: r.u64()?,
            inheritable: r.u64()?,
            permitted: r.u64()?,
            ambient: r.u64()?,
        };
        let last_cap = r.u32()?;
        let rlimits = (0..r.count(20)?)
            .map(|_| {
                Ok(Rlimit {
                    resource: r.u32()?,
                    soft: r.u64()?,
                    hard: r.u64()?,
                })
            })
            .collect::<Result<_, String>>()?;
        let no_new_privs = r.flag()?;
        let apparmor = r.opt(Reader::bytes)?;
        let selinux = r.opt(Reader::bytes)?;
        let oom_score_adj = r.opt(|r| r.u32().map(|v| v as i32))?;
        let session_keyring = r.opt(Reader::bytes)?;
        let seccomp = r.opt(|r| {
            let flags = r.u32()?;
            let program = (0..r.count(8)?)
                .map(|_| {
                    let code = u16::from_ne_bytes(r.take(2)?.try_into().expect("2 bytes"));
                    let jumps = r.take(2)?;
                    let (jt, jf) = (jumps[0], jumps[1]);
                    Ok(Filter {
                        code,
                        jt,
                        jf,
                        k: r.u32()?,
                    })
                })
                .collect::<Result<_, String>>()?;
            Ok(Seccomp { flags, program })
        })?;
        let instructions = Instructions {
            argv,
            env,
            home_wanted,
            cwd,
            uid,
            gid,
            groups,
            umask,
            caps,
            last_cap,
            rlimits,
            no_new_privs,
            apparmor,
            selinux,
            oom_score_adj,
            session_keyring,
            seccomp,
            pid_namespace: r.flag()?,
            namespaces: r.u32()? as i32,
            tty: r.flag()?,
            cgroups: r.u32()?,
        };
        if !r.0.is_empty() {
            return Err("trailing bytes after the instructions".into());
        }
        if instructions.argv.is_empty() {
            return Err("no command".into());
        }
        Ok(instructions)
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_ne_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_ne_bytes());
    }
    fn flag(&mut self, v: bool) {
        self.0.push(v as u8);
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn list(&mut self, v: &[Vec<u8>]) {
        self.u32(v.len() as u32);
        v.iter().for_each(|b| self.bytes(b));
    }
    fn opt<T>(&mut self, v: Option<T>, put: impl FnOnce(&mut Writer, T)) {
        self.flag(v.is_some());
        if let Some(v) = v {
            put(self, v);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("instructions cut short".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_ne_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_ne_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn flag(&mut self) -> Result<bool, String> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("flag of {other}")),
        }
    }
    /// A count of items at least `size` bytes each, checked against what
    /// is left so a bad count cannot make a huge allocation.
    fn count(&mut self, size: usize) -> Result<usize, String> {
        let n = self.u32()? as usize;
        if n.saturating_mul(size) > self.0.len() {
            return Err("instructions cut short".into());
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let n = self.count(1)?;
        Ok(self.take(n)?.to_vec())
    }
    fn list(&mut self) -> Result<Vec<Vec<u8>>, String> {
        (0..self.count(4)?).map(|_| self.bytes()).collect()
    }
    fn opt<T>(
        &mut self,
        get: impl FnOnce(&mut Reader<'a>) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        if self.flag()? {
            get(self).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// A step of the helper's work, named when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    Instructions = 1,
    Procfs,
    PidNamespace,
    Fork,
    Undumpable,
    Cgroup,
    OomScoreAdj,
    Namespaces,
    SessionKeyring,
    SelinuxLabel,
    Session,
    Terminal,
    Rlimit,
    NoNewPrivileges,
    Seccomp,
    WorkingDir,
    BoundingSet,
    KeepCapabilities,
    Groups,
    Gid,
    Uid,
    WorkingDirOutside,
    Capabilities,
    AmbientCapabilities,
    AppArmor,
    ParentGone,
    FindCommand,
    CloseFds,
    Exec,
}

impl Step {
    pub const ALL: [Step; 29] = [
        Step::Instructions,
        Step::Procfs,
        Step::PidNamespace,
        Step::Fork,
        Step::Undumpable,
        Step::Cgroup,
        Step::OomScoreAdj,
        Step::Namespaces,
        Step::SessionKeyring,
        Step::SelinuxLabel,
        Step::Session,
        Step::Terminal,
        Step::Rlimit,
        Step::NoNewPrivileges,
        Step::Seccomp,
        Step::WorkingDir,
        Step::BoundingSet,
        Step::KeepCapabilities,
        Step::Groups,
        Step::Gid,
        Step::Uid,
        Step::WorkingDirOutside,
        Step::Capabilities,
        Step::AmbientCapabilities,
        Step::AppArmor,
        Step::ParentGone,
        Step::FindCommand,
        Step::CloseFds,
        Step::Exec,
    ];

    pub fn from_code(code: u32) -> Option<Step> {
        Step::ALL.into_iter().find(|s| *s as u32 == code)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Step::Instructions => "reading its instructions",
            Step::Procfs => "opening the host's procfs",
            Step::PidNamespace => "entering the container's PID namespace",
            Step::Fork => "forking the process",
            Step::Undumpable => "making the process undumpable",
            Step::Cgroup => "joining the container's cgroup",
            Step::OomScoreAdj => "setting oom_score_adj",
            Step::Namespaces => "entering the container's namespaces",
            Step::SessionKeyring => "joining the container's session keyring",
            Step::SelinuxLabel => "setting the SELinux exec label",
            Step::Session => "starting a new session",
            Step::Terminal => "opening a terminal in the container",
            Step::Rlimit => "setting rlimits",
            Step::NoNewPrivileges => "setting no_new_privs",
            Step::Seccomp => "loading the seccomp filter",
            Step::WorkingDir => "changing to the working directory",
            Step::BoundingSet => "dropping capabilities from the bounding set",
            Step::KeepCapabilities => "keeping capabilities across the user change",
            Step::Groups => "setting supplementary groups",
            Step::Gid => "setting the gid",
            Step::Uid => "setting the uid",
            Step::WorkingDirOutside => "checking the working directory is in the container",
            Step::Capabilities => "setting capabilities",
            Step::AmbientCapabilities => "raising ambient capabilities",
            Step::AppArmor => "setting the AppArmor exec profile",
            Step::ParentGone => "its relay exited first",
            Step::FindCommand => "finding the command",
            Step::CloseFds => "closing inherited descriptors",
            Step::Exec => "executing the command",
        }
    }
}

/// What the helper sends back before the socket closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The exec failed at `step`; `detail` says more when errno cannot.
    Failed {
        step: Step,
        errno: i32,
        detail: String,
    },
    /// The terminal's master end rides with this report (SCM_RIGHTS).
    Terminal,
}

const FAILED: u8 = b'F';
const TERMINAL: u8 = b'T';

impl Report {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Report::Terminal => vec![TERMINAL],
            Report::Failed {
                step,
                errno,
                detail,
            } => {
                let mut out = vec![FAILED];
                out.extend_from_slice(&(*step as u32).to_ne_bytes());
                out.extend_from_slice(&errno.to_ne_bytes());
                out.extend_from_slice(&(detail.len() as u32).to_ne_bytes());
                out.extend_from_slice(detail.as_bytes());
                out
            }
        }
    }

    /// The reports in all the bytes read until the socket closed.
    pub fn decode_all(mut bytes: &[u8]) -> Result<Vec<Report>, String> {
        let mut reports = Vec::new();
        while let Some((&tag, rest)) = bytes.split_first() {
            let mut r = Reader(rest);
            match tag {
                TERMINAL => reports.push(Report::Terminal),
                FAILED => {
                    let code = r.u32()?;
                    let step =
                        Step::from_code(code).ok_or_else(|| format!("unknown step {code}"))?;
                    let errno = r.u32()? as i32;
                    let detail = String::from_utf8_lossy(&r.bytes()?).into_owned();
                    reports.push(Report::Failed {
                        step,
                        errno,
                        detail,
                    });
                }
                other => return Err(format!("unknown report {other}")),
            }
            bytes = r.0;
        }
        Ok(reports)
    }

    /// A failure's words for the client: the step, the system's error,
    /// and the detail.
    pub fn message(step: Step, errno: i32, detail: &str) -> String {
        let mut text = step.describe().to_string();
        if errno != 0 {
            text.push_str(&format!(": {}", std::io::Error::from_raw_os_error(errno)));
        }
        if !detail.is_empty() {
            text.push_str(&format!(": {detail}"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Instructions {
        Instructions {
            argv: vec![b"sh".to_vec(), b"-c".to_vec(), b"true".to_vec()],
            env: vec![b"PATH=/bin".to_vec()],
            home_wanted: true,
            cwd: b"/work".to_vec(),
            uid: 1000,
            gid: 100,
            groups: vec![5, 6],
            umask: Some(0o22),
            caps: CapSets {
                bounding: 3,
                effective: 1,
                inheritable: 0,
                permitted: 1,
                ambient: 0,
            },
            last_cap: 40,
            rlimits: vec![Rlimit {
                resource: 7,
                soft: 1024,
                hard: 4096,
            }],
            no_new_privs: true,
            apparmor: Some(b"crius-default".to_vec()),
            selinux: None,
            oom_score_adj: Some(-5),
            session_keyring: Some(b"_ses.abc".to_vec()),
            seccomp: Some(Seccomp {
                flags: 2,
                program: vec![Filter {
                    code: 6,
                    jt: 1,
                    jf: 2,
                    k: 0x7fff_0000,
                }],
            }),
            pid_namespace: true,
            namespaces: 0x2000_0000,
            tty: false,
            cgroups: 3,
        }
    }

    #[test]
    fn instructions_round_trip() {
        let sent = sample();
        let message = sent.encode();
        let header: [u8; 8] = message[..8].try_into().unwrap();
        let len = Instructions::body_len(&header).unwrap();
        assert_eq!(len, message.len() - 8);
        assert_eq!(Instructions::decode(&message[8..]).unwrap(), sent);
        assert_eq!(sent.fd_count(), 7);
    }

    #[test]
    fn damaged_instructions_are_refused() {
        let message = sample().encode();
        for cut in [0, 9, message.len() - 9, message.len() - 1] {
            assert!(
                Instructions::decode(&message[8..cut.max(8)]).is_err(),
                "{cut}"
            );
        }
        let mut header: [u8; 8] = message[..8].try_into().unwrap();
        header[0] = b'X';
        assert!(Instructions::body_len(&header).is_err());
        // A count far beyond what follows is refused before allocating.
        let mut huge = vec![0xff; 4];
        huge.extend_from_slice(&[0; 8]);
        assert!(Instructions::decode(&huge).is_err());
    }

    #[test]
    fn reports_round_trip() {
        let sent = [
            Report::Terminal,
            Report::Failed {
                step: Step::WorkingDirOutside,
                errno: 0,
                detail: "cwd \"(unreachable)/\"".into(),
            },
        ];
        let bytes: Vec<u8> = sent.iter().flat_map(Report::encode).collect();
        assert_eq!(Report::decode_all(&bytes).unwrap(), sent);
        assert!(Report::decode_all(b"Z").is_err());
        assert!(Report::decode_all(b"F\x01").is_err());
    }

    #[test]
    fn steps_round_trip_through_their_codes() {
        for step in Step::ALL {
            assert_eq!(Step::from_code(step as u32), Some(step));
            assert!(!step.describe().is_empty());
        }
        assert_eq!(Step::from_code(0), None);
        assert_eq!(
            Report::message(Step::Exec, libc::ENOENT, "\"x\""),
            format!(
                "executing the command: {}: \"x\"",
                std::io::Error::from_raw_os_error(libc::ENOENT)
            )
        );
    }
}
