//! Image references, normalised as Docker does: `busybox` is
//! `docker.io/library/busybox:latest`; `host:port/repo:tag`, `repo@sha256:...`
//! and `repo:tag@sha256:...` are taken as written.

use std::fmt;

pub const DEFAULT_DOMAIN: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with port if any ("docker.io", "127.0.0.1:5000").
    pub domain: String,
    /// Repository path within the registry ("library/busybox").
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image reference {reference:?} is invalid: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: String,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(err("it is empty"));
        }
        if text.len() > 4096 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("it has whitespace or is too long"));
        }
        let (name_tag, digest) = match text.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (text, None),
        };
        if let Some(d) = digest {
            validate_digest(d).map_err(|r| err(&r))?;
        }
        // A ':' after the last '/' starts the tag; earlier ones are a port.
        let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(&name_tag[last_slash + i + 1..]),
            ),
            None => (name_tag, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                return Err(err(
                    "the tag must be 1-128 of [A-Za-z0-9_.-], not starting with . or -",
                ));
            }
        }
        let (domain, path) = split_domain(name);
        if !valid_domain(&domain) {
            return Err(err("the registry host is not a valid host[:port]"));
        }
        if path.is_empty() || !path.split('/').all(valid_path_component) {
            return Err(err(
                "the repository must be lowercase [a-z0-9] components separated by '/', with '.', '_', '__' or '-' inside",
            ));
        }
        if domain.len() + 1 + path.len() > 255 {
            return Err(err("the repository name is longer than 255 characters"));
        }
        let tag = match (tag, digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest: digest.map(str::to_string),
        })
    }

    /// "docker.io/library/busybox".
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// "docker.io/library/busybox:latest", when there is a tag.
    pub fn repo_tag(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|t| format!("{}:{t}", self.repository()))
    }

    /// "docker.io/library/busybox@sha256:...".
    pub fn repo_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.repository())
    }

    /// What to ask the registry's manifest endpoint for: the digest if pinned.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn split_domain(name: &str) -> (String, String) {
    let (first, rest) = match name.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (name, None),
    };
    let is_domain = |c: &str| {
        c.contains('.')
            || c.contains(':')
            || c == "localhost"
            || c.chars().any(|ch| ch.is_ascii_uppercase())
    };
    let (domain, path) = match rest {
        Some(rest) if is_domain(first) => (first.to_string(), rest.to_string()),
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        DEFAULT_DOMAIN.to_string()
    } else {
        domain
    };
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    (domain, path)
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || domain.starts_with('[') => (h, Some(p)),
        _ => (domain, None),
    };
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return false;
    }
    if host.starts_with('[') && host.ends_with(']') {
        return host[1..host.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `sha256:<64 lowercase hex>` (the only algorithm crius stores).
pub fn validate_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!("digest {digest:?} is not algorithm:hex"));
    };
    if algorithm != "sha256" {
        return Err(format!(
            "digest algorithm {algorithm:?} is not supported (only sha256)"
        ));
    }
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!("digest {digest:?} needs 64 lowercase hex digits"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn norm(text: &str) -> String {
        Reference::parse(text).unwrap().to_string()
    }

    #[test]
    fn docker_style_normalisation() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("someone/app"), "docker.io/someone/app:latest");
        assert_eq!(
            norm("index.docker.io/someone/app"),
            "docker.io/someone/app:latest"
        );
        assert_eq!(
            norm("127.0.0.1:5000/crius-test/busybox"),
            "127.0.0.1:5000/crius-test/busybox:latest"
        );
        assert_eq!(norm("localhost/app:v1"), "localhost/app:v1");
        assert_eq!(
            norm("registry.k8s.io/pause:3.9"),
            "registry.k8s.io/pause:3.9"
        );
        assert_eq!(
            norm(&format!("busybox@{D}")),
            format!("docker.io/library/busybox@{D}")
        );
        assert_eq!(
            norm(&format!("busybox:1@{D}")),
            format!("docker.io/library/busybox:1@{D}")
        );
        assert_eq!(norm("[::1]:5000/app"), "[::1]:5000/app:latest");
    }

    #[test]
    fn parts() {
        let r = Reference::parse(&format!("127.0.0.1:5000/a/b:v2@{D}")).unwrap();
        assert_eq!(
            (r.domain.as_str(), r.path.as_str()),
            ("127.0.0.1:5000", "a/b")
        );
        assert_eq!(r.repo_tag().unwrap(), "127.0.0.1:5000/a/b:v2");
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(
            Reference::parse("x").unwrap().manifest_reference(),
            "latest"
        );
    }

    #[test]
    fn invalid_references_say_why() {
        for bad in [
            "",
            "busybox/UPPER",
            "busybox:",
            "busybox:-x",
            "a//b",
            "busybox@sha256:abc",
            "busybox@md5:0",
            "host:99999/a",
            "a b",
            "-lead",
            "a..b",
            "trail.",
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert!(e.to_string().contains("is invalid"), "{bad}: {e}");
        }
        assert!(
            Reference::parse("Host.com/a").is_ok(),
            "uppercase is allowed in hosts"
        );
        assert_eq!(
            Reference::parse("UPPER/case").unwrap().domain,
            "UPPER",
            "as distribution: uppercase means a host"
        );
        assert!(Reference::parse("a__b/c-d/e--f").is_ok());
    }
}
