//! Whether checkpoints can be taken here: criu installed, recent enough, and
//! able to run on this kernel (`criu check`), as containerd asks before its
//! first checkpoint.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The oldest criu runc's checkpoint works with for containers of a pod
/// (3.16, as containerd requires).
const MIN_VERSION: (u32, u32) = (3, 16);

/// How long `criu check` may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// criu's path when it passed the check. Only a pass is remembered: an
/// operator who installs or fixes criu needs no restart.
static READY: OnceLock<PathBuf> = OnceLock::new();

/// criu's path, or why checkpoints cannot be taken on this node.
pub fn ready() -> Result<PathBuf, String> {
    if let Some(path) = READY.get() {
        return Ok(path.clone());
    }
    let path = find().ok_or("criu is not installed (no criu in PATH); checkpoints need it")?;
    let version = Command::new(&path)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&version.stdout);
    let found =
        parse_version(&text).ok_or_else(|| format!("criu --version said {:?}", text.trim()))?;
    if found < MIN_VERSION {
        return Err(format!(
            "criu {}.{} is too old for checkpoints (at least {}.{} is needed)",
            found.0, found.1, MIN_VERSION.0, MIN_VERSION.1
        ));
    }
    check(&path)?;
    Ok(READY.get_or_init(|| path).clone())
}

fn find() -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&paths)
        .map(|dir| dir.join("criu"))
        .find(|path| {
            use std::os::unix::fs::PermissionsExt;
            path.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// "Version: 3.17.1" and the like.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))?;
    let mut parts = line.trim().split('.');
    let major = parts.next()?.trim().parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.trim().parse().ok())?;
    Some((major, minor))
}

/// `criu check`: it says "Looks good." where criu can dump and restore;
/// otherwise its first error is the cause.
fn check(path: &PathBuf) -> Result<(), String> {
    let mut command = Command::new(path);
    command.arg("check");
    let output = super::run_until(command, std::time::Instant::now() + CHECK_TIMEOUT)
        .map_err(|e| format!("criu check: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    let cause = text
        .lines()
        .find(|l| l.contains("Error"))
        .or_else(|| text.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("no output")
        .trim()
        .to_string();
    Err(format!(
        "criu cannot checkpoint on this node: `criu check` failed ({}): {cause}",
        output.status
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_criu_prints_them() {
        assert_eq!(parse_version("Version: 3.17.1\n"), Some((3, 17)));
        assert_eq!(parse_version("Version: 4.0\nGitID: v4.0\n"), Some((4, 0)));
        assert_eq!(parse_version("Version: 3\n"), Some((3, 0)));
        assert_eq!(parse_version("criu 3.17"), None);
    }
}
