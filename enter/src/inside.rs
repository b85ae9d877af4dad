//! What the helper reads inside the container, after joining its mount
//! namespace and cgroups: HOME from /etc/passwd (as runc does) and the
//! command's path. A container controls these files, so they are opened
//! without blocking and read only if regular, and a file that still stalls
//! (a FUSE mount) stalls this helper alone, which criusd kills at the
//! deadline.

use crate::sys;
use std::ffi::{CStr, CString};
use std::os::fd::AsRawFd;

/// Where runc looks when the environment has no PATH.
const DEFAULT_PATH: &[u8] = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// More of /etc/passwd than this is not read.
const MAX_PASSWD: usize = 4 << 20;

/// The home of `uid` in the container's /etc/passwd, or "/" (as runc).
pub fn home_of(uid: u32) -> Vec<u8> {
    read_regular(c"/etc/passwd")
        .and_then(|text| home_in(&text, uid))
        .unwrap_or_else(|| b"/".to_vec())
}

fn home_in(passwd: &[u8], uid: u32) -> Option<Vec<u8>> {
    let wanted = uid.to_string();
    passwd.split(|b| *b == b'\n').find_map(|line| {
        let fields: Vec<&[u8]> = line.split(|b| *b == b':').collect();
        (fields.len() >= 6 && fields[2] == wanted.as_bytes()).then(|| fields[5].to_vec())
    })
}

/// A regular file's contents: never a FIFO, device or directory, nor
/// anything reached through a /proc magic link.
fn read_regular(path: &CStr) -> Option<Vec<u8>> {
    let fd = sys::open_resolved(
        libc::AT_FDCWD,
        path,
        libc::O_RDONLY | libc::O_NONBLOCK,
        libc::RESOLVE_NO_MAGICLINKS,
    )
    .ok()?;
    // SAFETY: a plain struct filled by the kernel for a descriptor we hold.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0
        || st.st_mode & libc::S_IFMT != libc::S_IFREG
    {
        return None;
    }
    let mut out = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    while out.len() < MAX_PASSWD {
        // SAFETY: a buffer of the length given.
        let n = unsafe { libc::read(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
        match n {
            0 => break,
            n if n > 0 => out.extend_from_slice(&buffer[..n as usize]),
            _ if sys::errno() == libc::EINTR => {}
            _ => return None,
        }
    }
    Some(out)
}

/// The command's path as `exec.LookPath` finds it for runc: a name with a
/// slash as it is, else the first executable regular file of that name in
/// the environment's PATH. Looked up as the user, as runc does.
pub fn find_command(program: &[u8], env: &[Vec<u8>]) -> Result<CString, String> {
    let not_found = || {
        format!(
            "exec: {:?}: executable file not found in $PATH",
            String::from_utf8_lossy(program)
        )
    };
    if program.is_empty() {
        return Err(not_found());
    }
    if program.contains(&b'/') {
        return CString::new(program).map_err(|_| not_found());
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix(b"PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(|b| *b == b':') {
        let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
        let mut candidate = dir.to_vec();
        candidate.push(b'/');
        candidate.extend_from_slice(program);
        let Ok(candidate) = CString::new(candidate) else {
            continue;
        };
        if is_executable_file(&candidate) {
            return Ok(candidate);
        }
    }
    Err(not_found())
}

fn is_executable_file(path: &CStr) -> bool {
    // SAFETY: a plain struct filled by the kernel; NUL-terminated path.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        libc::stat(path.as_ptr(), &mut st) == 0
            && st.st_mode & libc::S_IFMT == libc::S_IFREG
            && st.st_mode & 0o111 != 0
            && libc::faccessat(libc::AT_FDCWD, path.as_ptr(), libc::X_OK, libc::AT_EACCESS) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_is_the_sixth_field_of_the_uids_line() {
        let passwd = b"root:x:0:0:root:/root:/bin/sh\nweb:x:1000:100::/srv/web:/bin/false\nbad\n";
        assert_eq!(home_in(passwd, 1000).unwrap(), b"/srv/web");
        assert_eq!(home_in(passwd, 0).unwrap(), b"/root");
        assert_eq!(home_in(passwd, 7), None);
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = std::env::temp_dir().join(format!("crius-enter-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = |p: &std::path::Path| CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c(&fifo).as_ptr(), 0o600) }, 0);
        // A FIFO without a writer neither blocks nor is read.
        assert_eq!(read_regular(&c(&fifo)), None);
        assert_eq!(read_regular(c"/dev/zero"), None);
        let file = dir.join("passwd");
        std::fs::write(&file, "a:x:5:5::/home/a:/bin/sh\n").unwrap();
        assert_eq!(
            home_in(&read_regular(&c(&file)).unwrap(), 5).unwrap(),
            b"/home/a"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn commands_are_found_in_the_environments_path() {
        let env = vec![b"PATH=/nonexistent:/bin".to_vec()];
        assert_eq!(find_command(b"sh", &env).unwrap().as_bytes(), b"/bin/sh");
        assert_eq!(find_command(b"/x/y", &env).unwrap().as_bytes(), b"/x/y");
        let err = find_command(b"no-such-command", &env).unwrap_err();
        assert_eq!(
            err,
            "exec: \"no-such-command\": executable file not found in $PATH"
        );
    }
}
