//! A client for the OCI distribution API (v2): manifests and blobs, with the
//! token (bearer) and basic challenge flows.
//!
//! The HTTP/TLS stack is reqwest with rustls; the distribution protocol is
//! ours, because mirrors, per-scope token caching and streaming verification
//! need control over every request. Registries on loopback speak plain HTTP,
//! as Docker allows; others HTTPS. Redirects (to blob storage) are followed and
//! reqwest drops the Authorization header when they leave the registry's host.

use super::auth::{Challenge, Credentials, parse_challenge};
use super::hosts::{self, Endpoint, TlsOptions};
use super::manifest::{ACCEPT, MAX_MANIFEST_BYTES};
use reqwest::{Response, StatusCode, header};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts per request for transient failures (connect errors, 5xx, 429).
const ATTEMPTS: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{what} not found at {url}")]
    NotFound { what: String, url: String },
    #[error("registry {host} refused the credentials for {what}: {detail}")]
    Unauthorized {
        host: String,
        what: String,
        detail: String,
    },
    #[error("registry {host} denied access to {what}: {detail}")]
    Denied {
        host: String,
        what: String,
        detail: String,
    },
    #[error("{what}: {url} answered {status}: {body}")]
    Status {
        what: String,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("{what}: cannot reach {url}: {detail}")]
    Transport {
        what: String,
        url: String,
        detail: String,
    },
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("token service {realm}: {detail}")]
    Token { realm: String, detail: String },
    #[error("TLS setup: {detail}")]
    Tls { detail: String },
}

/// A repository and the endpoints it can be fetched from, in order
/// (mirrors, then the registry itself).
#[derive(Debug, Clone)]
pub struct Repository {
    /// Registry host as in references ("docker.io", "127.0.0.1:5000").
    pub host: String,
    pub path: String,
    pub endpoints: Vec<Endpoint>,
    /// The host a pull's credentials were issued for (the CRI's
    /// `server_address`, else `host`): only endpoints on it get them.
    pub credentials_host: String,
    /// Where endpoints on other hosts (mirrors) find credentials of their
    /// own (Docker config.json format); empty: they get none.
    pub other_credentials: std::path::PathBuf,
}

impl Repository {
    /// The registry's default endpoint only.
    pub fn new(host: &str, path: &str) -> Repository {
        Repository::with_endpoints(host, path, vec![hosts::default_endpoint(host)])
    }

    pub fn with_endpoints(host: &str, path: &str, endpoints: Vec<Endpoint>) -> Repository {
        Repository {
            host: host.to_string(),
            path: path.to_string(),
            endpoints,
            credentials_host: host.to_string(),
            other_credentials: Default::default(),
        }
    }

    /// The credentials `endpoint` may see: a pull's own only on the host
    /// they were issued for (a user's password never reaches a mirror's
    /// operator), elsewhere the endpoint's own from the credentials file.
    fn credentials_for(&self, endpoint: &Endpoint, given: &Credentials) -> Credentials {
        let issued = &self.credentials_host;
        let same = endpoint.host == *issued
            || (issued == "docker.io" && endpoint.host == "registry-1.docker.io");
        if same {
            return given.clone();
        }
        if self.other_credentials.as_os_str().is_empty() {
            return Credentials::Anonymous;
        }
        super::auth::from_docker_config(&self.other_credentials, &endpoint.host)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn scope(&self) -> String {
        format!("repository:{}:pull", self.path)
    }
}

/// 127.0.0.0/8, ::1 and localhost, with or without a port.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

struct Token {
    value: String,
    expires: Instant,
}

pub struct RegistryClient {
    /// One HTTP client per distinct TLS setup (most endpoints share one).
    clients: Mutex<HashMap<TlsOptions, reqwest::Client>>,
    /// Bearer tokens by "endpoint-host scope".
    tokens: Mutex<HashMap<String, Token>>,
}

impl RegistryClient {
    pub fn new() -> Result<RegistryClient, String> {
        // One process-wide TLS provider; a second install is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = RegistryClient {
            clients: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        };
        client
            .http(&TlsOptions::default())
            .map_err(|e| e.to_string())?;
        Ok(client)
    }

    /// The HTTP client for an endpoint's TLS settings.
    fn http(&self, tls: &TlsOptions) -> Result<reqwest::Client, RegistryError> {
        if let Some(client) = self.clients.lock().expect("clients").get(tls) {
            return Ok(client.clone());
        }
        let tls_err = |detail: String| RegistryError::Tls { detail };
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("crius/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .tls_danger_accept_invalid_certs(tls.skip_verify);
        for ca in &tls.ca {
            let pem =
                std::fs::read(ca).map_err(|e| tls_err(format!("CA {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| tls_err(format!("CA {}: {e}", ca.display())))?;
            builder = builder.tls_certs_merge(certs);
        }
        for (cert, key) in &tls.client {
            let mut pem = std::fs::read(cert)
                .map_err(|e| tls_err(format!("client certificate {}: {e}", cert.display())))?;
            if let Some(key) = key {
                pem.push(b'\n');
                pem.extend(
                    std::fs::read(key)
                        .map_err(|e| tls_err(format!("client key {}: {e}", key.display())))?,
                );
            }
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| tls_err(format!("client certificate {}: {e}", cert.display())))?;
            builder = builder.identity(identity);
        }
        let client = builder.build().map_err(|e| tls_err(e.to_string()))?;
        self.clients
            .lock()
            .expect("clients")
            .insert(tls.clone(), client.clone());
        Ok(client)
    }

    /// Fetches a manifest or index by tag or digest: (body, content type).
    /// Endpoints are tried in order: tags only where `resolve` is allowed.
    pub async fn manifest(
        &self,
        repo: &Repository,
        reference: &str,
        creds: &Credentials,
    ) -> Result<(Vec<u8>, String), RegistryError> {
        let by_digest = reference.contains(':');
        let mut last = None;
        for endpoint in repo
            .endpoints
            .iter()
            .filter(|e| if by_digest { e.pull } else { e.resolve })
        {
            match self.manifest_from(repo, endpoint, reference, creds).await {
                Ok(found) => return Ok(found),
                Err(e) => {
                    tracing::debug!(endpoint = %endpoint.prefix, error = %e, "trying the next endpoint");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| no_endpoint(repo, if by_digest { "pull" } else { "resolve" })))
    }

    async fn manifest_from(
        &self,
        repo: &Repository,
        endpoint: &Endpoint,
        reference: &str,
        creds: &Credentials,
    ) -> Result<(Vec<u8>, String), RegistryError> {
        let url = format!("{}/{}/manifests/{reference}", endpoint.prefix, repo.path);
        let separator = if reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        let what = format!("manifest {}/{}{separator}{reference}", repo.host, repo.path);
        let mut resp = self
            .get(repo, endpoint, &url, Some(ACCEPT), creds, &what)
            .await?;
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST_BYTES)
        {
            return Err(RegistryError::TooLarge {
                what,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport(&what, &url, e))? {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > MAX_MANIFEST_BYTES {
                return Err(RegistryError::TooLarge {
                    what,
                    limit: MAX_MANIFEST_BYTES,
                });
            }
        }
        Ok((body, content_type))
    }

    /// Starts a blob download from the first endpoint that has it; the
    /// caller streams the body.
    pub async fn blob(
        &self,
        repo: &Repository,
        digest: &str,
        creds: &Credentials,
    ) -> Result<Response, RegistryError> {
        let what = format!("blob {digest} of {}/{}", repo.host, repo.path);
        let mut last = None;
        for endpoint in repo.endpoints.iter().filter(|e| e.pull) {
            let url = format!("{}/{}/blobs/{digest}", endpoint.prefix, repo.path);
            match self.get(repo, endpoint, &url, None, creds, &what).await {
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    tracing::debug!(endpoint = %endpoint.prefix, error = %e, "trying the next endpoint");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| no_endpoint(repo, "pull")))
    }

    /// GET with auth and retries; returns only 2xx responses.
    async fn get(
        &self,
        repo: &Repository,
        endpoint: &Endpoint,
        url: &str,
        accept: Option<&str>,
        creds: &Credentials,
        what: &str,
    ) -> Result<Response, RegistryError> {
        let http = self.http(&endpoint.tls)?;
        let creds = &repo.credentials_for(endpoint, creds);
        let mut authorization = self.cached_authorization(repo, endpoint, creds);
        let mut challenged = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = http.get(url);
            for (name, value) in &endpoint.headers {
                request = request.header(name.as_str(), value.as_str());
            }
            if let Some(accept) = accept {
                request = request.header(header::ACCEPT, accept);
            }
            if let Some(value) = &authorization {
                request = request.header(header::AUTHORIZATION, value);
            }
            let resp = match request.send().await {
                Ok(resp) => resp,
                Err(e) if attempt < ATTEMPTS && (e.is_connect() || e.is_timeout()) => {
                    backoff(attempt).await;
                    continue;
                }
                Err(e) => return Err(transport(what, url, e)),
            };
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            if status == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                let challenge = resp
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                authorization = Some(match challenge {
                    Some(Challenge::Bearer {
                        realm,
                        service,
                        scope,
                    }) => {
                        let scope = scope.unwrap_or_else(|| repo.scope());
                        let token = self
                            .fetch_token(
                                &http,
                                repo,
                                endpoint,
                                &realm,
                                service.as_deref(),
                                &scope,
                                creds,
                            )
                            .await?;
                        format!("Bearer {token}")
                    }
                    Some(Challenge::Basic) => {
                        creds
                            .basic_header()
                            .ok_or_else(|| RegistryError::Unauthorized {
                                host: repo.host.clone(),
                                what: what.to_string(),
                                detail: "it asks for a username and password and none were given"
                                    .into(),
                            })?
                    }
                    None => {
                        return Err(unauthorized(
                            repo,
                            what,
                            "no usable WWW-Authenticate challenge",
                        ));
                    }
                });
                continue;
            }
            if (status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS)
                && attempt < ATTEMPTS
            {
                backoff(attempt).await;
                continue;
            }
            let body: String = resp
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            return Err(match status {
                StatusCode::NOT_FOUND => RegistryError::NotFound {
                    what: what.to_string(),
                    url: url.to_string(),
                },
                StatusCode::UNAUTHORIZED => unauthorized(repo, what, &body),
                StatusCode::FORBIDDEN => RegistryError::Denied {
                    host: repo.host.clone(),
                    what: what.to_string(),
                    detail: body,
                },
                _ => RegistryError::Status {
                    what: what.to_string(),
                    url: url.to_string(),
                    status,
                    body,
                },
            });
        }
    }

    fn cached_authorization(
        &self,
        repo: &Repository,
        endpoint: &Endpoint,
        creds: &Credentials,
    ) -> Option<String> {
        if let Credentials::RegistryToken(token) = creds {
            return Some(format!("Bearer {token}"));
        }
        let tokens = self.tokens.lock().expect("token cache");
        tokens
            .get(&token_key(endpoint, &repo.scope()))
            .filter(|t| t.expires > Instant::now())
            .map(|t| format!("Bearer {}", t.value))
    }

    /// Gets a bearer token for `scope` from the realm: GET with basic auth (or
    /// anonymously), or the OAuth2 refresh-token POST for identity tokens.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_token(
        &self,
        http: &reqwest::Client,
        repo: &Repository,
        endpoint: &Endpoint,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: &Credentials,
    ) -> Result<String, RegistryError> {
        if let Credentials::RegistryToken(token) = creds {
            return Ok(token.clone());
        }
        let token_err = |detail: String| RegistryError::Token {
            realm: realm.to_string(),
            detail,
        };
        let mut params: Vec<(&str, &str)> = vec![("scope", scope)];
        if let Some(service) = service {
            params.push(("service", service));
        }
        let request = match creds {
            Credentials::IdentityToken { token, .. } => {
                params.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token),
                    ("client_id", "crius"),
                ]);
                let body: String = params
                    .iter()
                    .map(|(k, v)| format!("{k}={}", urlencode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                http.post(realm)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            }
            _ => {
                let query: String = params
                    .iter()
                    .map(|(k, v)| format!("{k}={}", urlencode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                let sep = if realm.contains('?') { '&' } else { '?' };
                let mut request = http.get(format!("{realm}{sep}{query}"));
                if let Some(basic) = creds.basic_header() {
                    request = request.header(header::AUTHORIZATION, basic);
                }
                request
            }
        };
        let resp = request.send().await.map_err(|e| token_err(e.to_string()))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(unauthorized(
                repo,
                scope,
                &format!("token service {realm} answered {status}"),
            ));
        }
        if !status.is_success() {
            return Err(token_err(format!("answered {status}")));
        }
        let bytes = resp.bytes().await.map_err(|e| token_err(e.to_string()))?;
        let doc: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| token_err(format!("not JSON: {e}")))?;
        let value = doc
            .get("token")
            .or_else(|| doc.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_err("no token in the answer".into()))?
            .to_string();
        // Tokens live 60 s unless the service says otherwise; renew 10 s early.
        let lifetime = doc
            .get("expires_in")
            .and_then(|v| v.as_u64())
            .unwrap_or(60)
            .max(20);
        self.tokens.lock().expect("token cache").insert(
            token_key(endpoint, scope),
            Token {
                value: value.clone(),
                expires: Instant::now() + Duration::from_secs(lifetime - 10),
            },
        );
        Ok(value)
    }
}

fn token_key(endpoint: &Endpoint, scope: &str) -> String {
    format!("{} {scope}", endpoint.host)
}

fn no_endpoint(repo: &Repository, capability: &str) -> RegistryError {
    RegistryError::NotFound {
        what: format!("an endpoint of {} allowed to {capability}", repo.host),
        url: "hosts.toml".into(),
    }
}

fn unauthorized(repo: &Repository, what: &str, detail: &str) -> RegistryError {
    RegistryError::Unauthorized {
        host: repo.host.clone(),
        what: what.to_string(),
        detail: detail.to_string(),
    }
}

fn transport(what: &str, url: &str, e: reqwest::Error) -> RegistryError {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(&format!(": {s}"));
        source = s.source();
    }
    RegistryError::Transport {
        what: what.to_string(),
        url: url.to_string(),
        detail,
    }
}

async fn backoff(attempt: u32) {
    tokio::time::sleep(BACKOFF * 4u32.pow(attempt - 1)).await;
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_endpoints() {
        let prefix = |host: &str| Repository::new(host, "a").endpoints[0].prefix.clone();
        assert_eq!(prefix("docker.io"), "https://registry-1.docker.io/v2");
        assert_eq!(prefix("127.0.0.1:5000"), "http://127.0.0.1:5000/v2");
        assert_eq!(prefix("localhost"), "http://localhost/v2");
        assert_eq!(prefix("[::1]:5000"), "http://[::1]:5000/v2");
        assert_eq!(prefix("quay.io"), "https://quay.io/v2");
        assert!(!is_loopback("10.0.0.1:5000"));
    }

    #[test]
    fn urlencoding() {
        assert_eq!(
            urlencode("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }
}
