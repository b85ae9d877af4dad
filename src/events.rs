//! Lifecycle events of containers and pod sandboxes, for GetContainerEvents
//! (kubelet's evented PLEG). The domain modules send an event where a record
//! changes state, so each transition is reported exactly once whichever path
//! caused it (a CRI call, an exit noticed by the exit watcher, recovery).
//! Subscribers that fall behind lose the oldest events; kubelet relists
//! periodically, so a gap heals.

use crate::cri;
use tokio::sync::{broadcast, watch};

/// Events kept for a slow subscriber.
const BACKLOG: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Started,
    Stopped,
    Deleted,
}

impl EventKind {
    pub fn to_cri(self) -> cri::ContainerEventType {
        match self {
            EventKind::Created => cri::ContainerEventType::ContainerCreatedEvent,
            EventKind::Started => cri::ContainerEventType::ContainerStartedEvent,
            EventKind::Stopped => cri::ContainerEventType::ContainerStoppedEvent,
            EventKind::Deleted => cri::ContainerEventType::ContainerDeletedEvent,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    /// The container's id, or the sandbox's for the sandbox's own events.
    pub id: String,
    pub sandbox_id: String,
    /// Nanoseconds since the epoch.
    pub at: i64,
    /// The sandbox's status as it was, for a sandbox's own deletion (there is
    /// no record left to read it from later).
    pub sandbox_status: Option<Box<cri::PodSandboxStatus>>,
}

impl Event {
    pub fn new(kind: EventKind, id: &str, sandbox_id: &str) -> Event {
        Event {
            kind,
            id: id.to_string(),
            sandbox_id: sandbox_id.to_string(),
            at: crate::time::now_nanos(),
            sandbox_status: None,
        }
    }
}

/// The event hub: cheap to clone, one per runtime.
#[derive(Clone)]
pub struct Events {
    sender: broadcast::Sender<Event>,
    /// Set at shutdown, so open streams end instead of holding the server.
    closing: watch::Sender<bool>,
}

impl Default for Events {
    fn default() -> Events {
        Events {
            sender: broadcast::channel(BACKLOG).0,
            closing: watch::channel(false).0,
        }
    }
}

impl Events {
    pub fn send(&self, event: Event) {
        tracing::debug!(kind = ?event.kind, id = %event.id, "event");
        // No subscriber is not an error: nobody is listening.
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }

    /// Ends every subscriber's stream (the daemon is stopping).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once `close` has been called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closing = self.closing.subscribe();
        async move {
            let _ = closing.wait_for(|closed| *closed).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_get_events_sent_after_they_subscribe() {
        let events = Events::default();
        events.send(Event::new(EventKind::Created, "early", "s"));
        let mut receiver = events.subscribe();
        events.send(Event::new(EventKind::Started, "c", "s"));
        let event = receiver.try_recv().unwrap();
        assert_eq!((event.kind, event.id.as_str()), (EventKind::Started, "c"));
        assert!(receiver.try_recv().is_err());
        assert_eq!(
            EventKind::Deleted.to_cri(),
            cri::ContainerEventType::ContainerDeletedEvent
        );
    }

    #[test]
    fn close_ends_waiting_streams() {
        let events = Events::default();
        let closed = events.closed();
        events.close();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime
            .block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(1), closed).await
            })
            .expect("closed resolves");
    }
}
