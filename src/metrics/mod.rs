//! Metrics: criusd's own, served on a Prometheus text endpoint.
//!
//! - `daemon`: what criusd measures about its own work (RPCs, pulls, pod
//!   start phases, CNI plugins, the exit watcher, live objects, build info)
//!   and the text encoding of it all.
//! - `endpoint`: the HTTP/1.1 listener serving `/metrics`, and a small client
//!   that fetches it (criusctl, tests).

pub mod daemon;
pub mod endpoint;
