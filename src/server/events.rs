//! GetContainerEvents: a stream of lifecycle events from the moment the
//! client subscribes, each with the statuses kubelet's evented PLEG caches.

use super::{BoxStream, CriService};
use crate::cri;
use tokio::sync::broadcast::error::RecvError;
use tonic::Status;

/// Events in flight to one client before it is waited for.
const CLIENT_BUFFER: usize = 64;

pub fn follow(service: &CriService) -> BoxStream<cri::ContainerEventResponse> {
    let mut events = service.runtime.events.subscribe();
    let closed = service.runtime.events.closed();
    let runtime = service.runtime.clone();
    let (tx, rx) = tokio::sync::mpsc::channel(CLIENT_BUFFER);
    tokio::spawn(async move {
        tokio::pin!(closed);
        loop {
            let received = tokio::select! {
                received = events.recv() => received,
                _ = tx.closed() => return, // the client went away
                _ = &mut closed => return, // the daemon is stopping
            };
            let event = match received {
                Ok(event) => event,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "an event subscriber fell behind; it lost events");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let runtime = runtime.clone();
            // Statuses read the shims' files: off the async workers.
            let Ok(response) =
                tokio::task::spawn_blocking(move || runtime.container_event(&event)).await
            else {
                return;
            };
            if tx.send(Ok::<_, Status>(response)).await.is_err() {
                return; // the client went away
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
