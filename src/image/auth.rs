//! Registry credentials and the `WWW-Authenticate` challenge.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// How to authenticate to a registry, from the CRI's AuthConfig.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token, exchanged at the token realm.
    IdentityToken {
        username: String,
        token: String,
    },
    /// A bearer token sent to the registry as is.
    RegistryToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        let kind = match self {
            Credentials::Anonymous => "anonymous",
            Credentials::Basic { .. } => "basic",
            Credentials::IdentityToken { .. } => "identity-token",
            Credentials::RegistryToken(_) => "registry-token",
        };
        f.write_str(kind)
    }
}

impl Credentials {
    /// From the CRI AuthConfig: registry token, identity token, username and
    /// password, or `auth` (base64 "user:password"), in that order.
    pub fn from_cri(auth: Option<&crate::cri::AuthConfig>) -> Result<Credentials, String> {
        let Some(a) = auth else {
            return Ok(Credentials::Anonymous);
        };
        if !a.registry_token.is_empty() {
            return Ok(Credentials::RegistryToken(a.registry_token.clone()));
        }
        if !a.identity_token.is_empty() {
            return Ok(Credentials::IdentityToken {
                username: a.username.clone(),
                token: a.identity_token.clone(),
            });
        }
        if !a.username.is_empty() || !a.password.is_empty() {
            return Ok(Credentials::Basic {
                username: a.username.clone(),
                password: a.password.clone(),
            });
        }
        if !a.auth.is_empty() {
            return decode_auth(&a.auth).map_err(|e| format!("auth.auth: {e}"));
        }
        Ok(Credentials::Anonymous)
    }

    /// The host the CRI's credentials were issued for: `server_address`
    /// without scheme or path ("https://index.docker.io/v1/" is docker.io),
    /// `None` when it is empty.
    pub fn issued_for(auth: Option<&crate::cri::AuthConfig>) -> Option<String> {
        let address = auth?.server_address.trim();
        if address.is_empty() {
            return None;
        }
        let host = address
            .split_once("://")
            .map_or(address, |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or("");
        Some(match host {
            "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
            h => h.to_string(),
        })
    }

    /// The `Authorization` value for Basic auth, when these are basic creds.
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::Basic { username, password } => Some(format!(
                "Basic {}",
                STANDARD.encode(format!("{username}:{password}"))
            )),
            _ => None,
        }
    }
}

/// base64("user:password"), as in Docker's config.json and CRI's `auth`.
pub fn decode_auth(encoded: &str) -> Result<Credentials, String> {
    let bytes = STANDARD
        .decode(encoded.trim())
        .map_err(|_| "not base64".to_string())?;
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let (username, password) = text.split_once(':').ok_or("not user:password")?;
    Ok(Credentials::Basic {
        username: username.into(),
        password: password.into(),
    })
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

/// Parses `Bearer realm="...",service="...",scope="..."` or `Basic realm=...`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    } else if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else {
        None
    }
}

/// `key=value` or `key="quoted, value"` pairs separated by commas.
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_string();
        }
        out.push((key.trim().to_string(), value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::AuthConfig;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(
            parse_challenge("Bearer service=x"),
            None,
            "realm is required"
        );
    }

    #[test]
    fn cri_auth_config_precedence() {
        let auth = |f: fn(&mut AuthConfig)| {
            let mut a = AuthConfig::default();
            f(&mut a);
            Credentials::from_cri(Some(&a)).unwrap()
        };
        assert_eq!(auth(|_| {}), Credentials::Anonymous);
        assert_eq!(
            auth(|a| a.auth = STANDARD.encode("u:p:w")),
            Credentials::Basic {
                username: "u".into(),
                password: "p:w".into()
            }
        );
        assert_eq!(
            auth(|a| {
                a.username = "u".into();
                a.password = "p".into();
                a.auth = "ignored".into();
            }),
            Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        assert_eq!(
            auth(|a| a.registry_token = "t".into()),
            Credentials::RegistryToken("t".into())
        );
        let bad = AuthConfig {
            auth: "%%%".into(),
            ..Default::default()
        };
        assert!(
            Credentials::from_cri(Some(&bad))
                .unwrap_err()
                .contains("auth.auth")
        );
        assert_eq!(
            format!("{:?}", auth(|a| a.password = "secret".into())),
            "basic"
        );
    }
}

/// Credentials for `registry` from a Docker `config.json`-format file
/// (`{"auths": {"host": {"auth": ..., "username": ..., ...}}}`); `Ok(None)`
/// when the file or the entry is missing. Keys may carry a scheme and path
/// (`https://index.docker.io/v1/`); Docker Hub's aliases all mean docker.io.
pub fn from_docker_config(
    file: &std::path::Path,
    registry: &str,
) -> Result<Option<Credentials>, String> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    let doc: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not JSON: {e}", file.display()))?;
    let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    let wanted = registry_key(registry);
    let Some(entry) = auths
        .iter()
        .find(|(key, _)| registry_key(key) == wanted)
        .map(|(_, v)| v)
    else {
        return Ok(None);
    };
    let field = |name: &str| {
        entry
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let config = crate::cri::AuthConfig {
        username: field("username"),
        password: field("password"),
        auth: field("auth"),
        identity_token: field("identitytoken"),
        registry_token: field("registrytoken"),
        server_address: registry.to_string(),
    };
    Credentials::from_cri(Some(&config))
        .map(Some)
        .map_err(|e| format!("{}: entry for {registry}: {e}", file.display()))
}

fn registry_key(key: &str) -> &str {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        other => other,
    }
}

#[cfg(test)]
mod docker_config_tests {
    use super::*;

    #[test]
    fn entries_are_found_by_normalised_host() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(
            &file,
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnB3"},
                "127.0.0.1:5000": {"username": "u", "password": "p"},
                "https://quay.io": {"identitytoken": "tok"}
            }}"#,
        )
        .unwrap();
        let basic = |u: &str, p: &str| {
            Some(Credentials::Basic {
                username: u.into(),
                password: p.into(),
            })
        };
        assert_eq!(
            from_docker_config(&file, "docker.io").unwrap(),
            basic("hub", "pw")
        );
        assert_eq!(
            from_docker_config(&file, "127.0.0.1:5000").unwrap(),
            basic("u", "p")
        );
        assert!(matches!(
            from_docker_config(&file, "quay.io").unwrap(),
            Some(Credentials::IdentityToken { .. })
        ));
        assert_eq!(from_docker_config(&file, "ghcr.io").unwrap(), None);
        assert_eq!(
            from_docker_config(&dir.path().join("none.json"), "docker.io").unwrap(),
            None
        );
        std::fs::write(&file, "{not json").unwrap();
        assert!(
            from_docker_config(&file, "docker.io")
                .unwrap_err()
                .contains("not JSON")
        );
    }
}
