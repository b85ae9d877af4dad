//! The request cache behind streaming URLs: Exec, Attach and PortForward
//! answer a URL whose last part is a token naming the request they checked.
//! Tokens are unguessable (256 random bits), single-use, expire after
//! [`TOKEN_TTL`] and are bounded in number, so a client cannot fill memory
//! by asking for URLs it never uses.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a URL stays usable, as in kubelet's streaming server.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);

/// Tokens held at once.
pub const MAX_TOKENS: usize = 1000;

/// What a token stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Exec(crate::cri::ExecRequest),
    Attach(crate::cri::AttachRequest),
    PortForward(crate::cri::PortForwardRequest),
}

impl Request {
    /// The URL path's first part for this kind of request.
    pub fn route(&self) -> &'static str {
        match self {
            Request::Exec(_) => "exec",
            Request::Attach(_) => "attach",
            Request::PortForward(_) => "portforward",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{MAX_TOKENS} streaming requests are already waiting for their clients; try again later")]
pub struct Full;

pub struct Tokens {
    entries: Mutex<HashMap<String, (Request, Instant)>>,
    ttl: Duration,
}

impl Default for Tokens {
    fn default() -> Self {
        Tokens::with_ttl(TOKEN_TTL)
    }
}

impl Tokens {
    pub fn with_ttl(ttl: Duration) -> Tokens {
        Tokens {
            entries: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// Stores `request` and returns its new token.
    pub fn insert(&self, request: Request) -> Result<String, Full> {
        self.insert_at(request, Instant::now())
    }

    fn insert_at(&self, request: Request, now: Instant) -> Result<String, Full> {
        let mut entries = self.entries.lock().expect("tokens");
        if entries.len() >= MAX_TOKENS {
            entries.retain(|_, (_, made)| now.duration_since(*made) < self.ttl);
        }
        if entries.len() >= MAX_TOKENS {
            return Err(Full);
        }
        let token = crate::ids::new_id();
        entries.insert(token.clone(), (request, now));
        Ok(token)
    }

    /// Takes the request `token` stands for, if it exists, has not expired
    /// and is for `route`; a token is good for one try either way.
    pub fn take(&self, route: &str, token: &str) -> Option<Request> {
        let (request, made) = self.entries.lock().expect("tokens").remove(token)?;
        (made.elapsed() < self.ttl && request.route() == route).then_some(request)
    }

    pub fn len(&self) -> usize {
        self.entries.lock().expect("tokens").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec() -> Request {
        Request::Exec(crate::cri::ExecRequest {
            container_id: "c".into(),
            cmd: vec!["sh".into()],
            ..Default::default()
        })
    }

    #[test]
    fn tokens_are_single_use_unguessable_and_routed() {
        let tokens = Tokens::default();
        let a = tokens.insert(exec()).unwrap();
        let b = tokens.insert(exec()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(tokens.take("attach", &a).is_none(), "wrong route");
        assert!(tokens.take("exec", &a).is_none(), "gone after one try");
        assert_eq!(tokens.take("exec", &b), Some(exec()));
        assert!(tokens.take("exec", &b).is_none(), "single use");
        assert!(tokens.take("exec", "nonsense").is_none());
    }

    #[test]
    fn tokens_expire_and_are_bounded() {
        let tokens = Tokens::with_ttl(Duration::from_millis(20));
        let old = tokens.insert(exec()).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert!(tokens.take("exec", &old).is_none(), "expired");
        // The bound, with time given rather than waited for.
        let ttl = Duration::from_secs(60);
        let tokens = Tokens::with_ttl(ttl);
        let start = Instant::now();
        for _ in 0..MAX_TOKENS {
            tokens.insert_at(exec(), start).unwrap();
        }
        assert!(tokens.insert_at(exec(), start).is_err(), "full");
        let later = start + ttl + Duration::from_millis(1);
        tokens
            .insert_at(exec(), later)
            .expect("expired ones make room");
        assert_eq!(tokens.len(), 1);
    }
}
