//! A CRI client over a Unix socket, for criusctl and the tests. It speaks
//! plain CRI, so it drives any runtime (crius, containerd, CRI-O).

use crate::cri::image_service_client::ImageServiceClient;
use crate::cri::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

/// Messages up to 16 MiB, as kubelet allows.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("endpoint {0:?}: only unix:// endpoints (or plain socket paths) are supported")]
    Scheme(String),
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
}

/// `unix:///run/crius/crius.sock` or `/run/crius/crius.sock` -> the path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, ClientError> {
    if let Some(path) = endpoint.strip_prefix("unix://") {
        return Ok(PathBuf::from(path));
    }
    if endpoint.starts_with('/') {
        return Ok(PathBuf::from(endpoint));
    }
    Err(ClientError::Scheme(endpoint.to_string()))
}

/// Connects to a CRI endpoint; `timeout` bounds connecting, `call_timeout`
/// each call (`None`: calls may take as long as they need, as pulls do).
pub async fn connect(
    endpoint: &str,
    timeout: Duration,
    call_timeout: Option<Duration>,
) -> Result<Channel, ClientError> {
    let path = socket_path(endpoint)?;
    // The URI is required by tonic but unused: the connector dials the socket.
    let mut builder = Endpoint::from_static("http://localhost").connect_timeout(timeout);
    if let Some(call_timeout) = call_timeout {
        builder = builder.timeout(call_timeout);
    }
    builder
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .map_err(|source| ClientError::Connect {
            endpoint: endpoint.to_string(),
            source,
        })
}

pub fn runtime_client(channel: Channel) -> RuntimeServiceClient<Channel> {
    RuntimeServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

pub fn image_client(channel: Channel) -> ImageServiceClient<Channel> {
    ImageServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}
