//! crius-shim: what criusd and the per-container shim agree on.
//!
//! `protocol` names the files in a container's shim dir and their formats;
//! `cri_log` is the CRI log format the shim writes (also read back by tests
//! and by criusctl's `logs`); `attach` is the framing of attached stdio.

pub mod attach;
pub mod cri_log;
pub mod protocol;
