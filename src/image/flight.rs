//! Single flight: work on one key (a blob's digest, a snapshot's chain ID)
//! runs once however many pulls want it at the same time; the others wait
//! and share its result, success or error.
//!
//! The work runs as a task of its own, so a puller that goes away (its
//! task aborted) strands nobody who waits on the same key. A key is free
//! again once its result is out: a later caller starts afresh (and, for
//! pulls, usually finds the object made).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

pub struct Flights<T> {
    under_way: Arc<Mutex<HashMap<String, watch::Receiver<Option<T>>>>>,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Flights {
            under_way: Default::default(),
        }
    }
}

/// The work's task ended without a result (it panicked).
#[derive(Debug, thiserror::Error)]
#[error("the task doing this work for all its waiters failed")]
pub struct Lost;

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    /// `work`'s result, or that of the flight already under way for `key`
    /// (`work` is then dropped unrun).
    pub async fn run<F>(&self, key: &str, work: F) -> Result<T, Lost>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let mut result = {
            let mut under_way = self.under_way.lock().expect("flights");
            match under_way.get(key) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    under_way.insert(key.to_string(), rx.clone());
                    let landing = Landing {
                        under_way: self.under_way.clone(),
                        key: key.to_string(),
                        tx: Some(tx),
                    };
                    tokio::spawn(async move {
                        let out = work.await;
                        landing.land(out);
                    });
                    rx
                }
            }
        };
        let landed = result.wait_for(Option::is_some).await.map_err(|_| Lost)?;
        Ok(landed.clone().expect("landed"))
    }
}

/// Frees the key and hands out the result; freeing happens even if the
/// work panics (its waiters then see `Lost`).
struct Landing<T> {
    under_way: Arc<Mutex<HashMap<String, watch::Receiver<Option<T>>>>>,
    key: String,
    tx: Option<watch::Sender<Option<T>>>,
}

impl<T> Landing<T> {
    fn land(mut self, out: T) {
        let mut under_way = self.under_way.lock().expect("flights");
        under_way.remove(&self.key);
        // Sent under the map's lock: a caller either joins this flight and
        // sees the result, or finds the key free.
        let _ = self.tx.take().expect("lands once").send(Some(out));
    }
}

impl<T> Drop for Landing<T> {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.under_way.lock().expect("flights").remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_run_and_its_error() {
        let flights: Arc<Flights<Result<u32, String>>> = Default::default();
        let runs = Arc::new(AtomicU32::new(0));
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let (flights, runs) = (flights.clone(), runs.clone());
                tokio::spawn(async move {
                    flights
                        .run("k", async move {
                            runs.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Err::<u32, _>("registry said no".to_string())
                        })
                        .await
                })
            })
            .collect();
        for caller in callers {
            assert_eq!(
                caller.await.unwrap().unwrap(),
                Err("registry said no".into())
            );
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // The key is free again: the next caller runs its own work.
        assert_eq!(flights.run("k", async { Ok(7) }).await.unwrap(), Ok(7));
    }

    #[tokio::test]
    async fn a_panicking_flight_frees_its_key() {
        let flights: Flights<u32> = Default::default();
        let lost = flights
            .run("k", async {
                panic!("boom");
            })
            .await;
        assert!(lost.is_err());
        assert_eq!(flights.run("k", async { 3 }).await.unwrap(), 3);
    }
}
