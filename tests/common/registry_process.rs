//! Extra instances of Debian's docker-registry for tests: serving the
//! harness's storage read-only on a free loopback port, with the TLS or auth
//! settings a test needs. Stopped on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

pub struct RegistryProcess {
    child: Child,
    pub host: String,
    pub dir: PathBuf,
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts docker-registry with `http_extra` under `http:` (indented 2) and
/// `auth` as the top-level auth section (YAML, or empty).
pub fn start(dir: &Path, http_extra: &str, auth: &str) -> RegistryProcess {
    let storage = std::env::var("CRIUS_E2E_REGISTRY_STORAGE")
        .expect("CRIUS_E2E_REGISTRY_STORAGE: run through `make test`");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n  maintenance:\n    readonly:\n      enabled: true\nhttp:\n  addr: {host}\n{http_extra}{auth}"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("registry.log")).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let registry = RegistryProcess {
        child,
        host: host.clone(),
        dir: dir.to_path_buf(),
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(&host).is_ok() {
            return registry;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "registry did not start: {}",
        std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
    );
}

/// Runs openssl in `dir`, failing the test with its stderr.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A self-signed CA (`ca.pem`, `ca.key`) and a certificate for 127.0.0.1
/// signed by it (`server.pem`, `server.key`).
pub fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=crius test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}
