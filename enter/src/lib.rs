//! crius-enter: what criusd and its exec helper agree on.
//!
//! criusd starts `crius-enter` with a Unix socket as its stdin and nothing
//! else, sends it one `protocol::Instructions` (with the descriptors it
//! needs), and reads `protocol::Report`s back until the socket closes: at
//! the command's exec, or when the helper fails.

pub mod protocol;
pub mod scm;
