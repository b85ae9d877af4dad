//! Containers. So far: who a container runs as (`user`); the OCI bundle,
//! the shim and the lifecycle RPCs arrive with the rest of the runtime issue.

pub mod user;
