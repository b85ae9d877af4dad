//! Images under concurrency (issue 21): clients pulling, removing, looking
//! at and using images that share layers, all at once, against a real
//! criusd and a registry of our own that serves the harness's images (its
//! access log counts the blob GETs). Needs `make test` (CRIUS_E2E_IMAGES,
//! CRIUS_E2E_REGISTRY_STORAGE).

mod common;

use common::Daemon;
use common::pods::Pod;
use common::registry_process::{self, RegistryProcess};
use crius::cri;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::Code;

/// Four images over one busybox base layer; `config` and `httpd` add a
/// layer of their own.
const IMAGES: [&str; 4] = ["busybox", "user-name", "config", "httpd"];

fn summary() -> Value {
    let path =
        std::env::var("CRIUS_E2E_IMAGES").expect("CRIUS_E2E_IMAGES: run through `make test`");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The config and layer digests of the harness image `repo`.
fn blobs_of(summary: &Value, repo: &str) -> BTreeSet<String> {
    let image = summary["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["repository"] == format!("crius-test/{repo}"))
        .unwrap();
    let mut blobs: BTreeSet<String> = image["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    blobs.insert(image["config_digest"].as_str().unwrap().to_string());
    blobs
}

/// A registry of this test's own (so its log counts only our requests).
fn registry(dir: &Path) -> RegistryProcess {
    registry_process::start(dir, "", "")
}

fn name(registry: &RegistryProcess, image: &str) -> String {
    format!("{}/crius-test/{image}:latest", registry.host)
}

/// Blob GETs in the registry's access log from byte `from` on, by digest.
fn blob_gets(registry: &RegistryProcess, from: usize) -> BTreeMap<String, u32> {
    let log = std::fs::read(registry.dir.join("registry.log")).unwrap();
    let mut gets = BTreeMap::new();
    for line in String::from_utf8_lossy(&log[from.min(log.len())..]).lines() {
        if let Some(rest) = line.split("\"GET ").nth(1)
            && let Some(digest) = rest
                .split_whitespace()
                .next()
                .and_then(|path| path.split("/blobs/").nth(1))
        {
            *gets.entry(digest.to_string()).or_insert(0) += 1;
        }
    }
    gets
}

fn log_len(registry: &RegistryProcess) -> usize {
    std::fs::metadata(registry.dir.join("registry.log"))
        .map(|m| m.len() as usize)
        .unwrap_or(0)
}

/// A small xorshift generator: the seed is printed, so a failing run can be
/// replayed with CRIUS_STRESS_SEED.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn seed() -> u64 {
    std::env::var("CRIUS_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

async fn remove_image(daemon: &Daemon, image: &str) -> Result<(), tonic::Status> {
    daemon
        .images()
        .await
        .remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
        })
        .await
        .map(|_| ())
}

async fn image_status(daemon: &Daemon, image: &str) -> Result<Option<Value>, tonic::Status> {
    let resp = daemon
        .images()
        .await
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: true,
        })
        .await?
        .into_inner();
    Ok(resp
        .image
        .map(|_| serde_json::from_str(&resp.info["info"]).unwrap()))
}

/// Every listed image is whole: each of its snapshots is on disk.
async fn assert_listed_images_whole(daemon: &Daemon) {
    let images = daemon
        .images()
        .await
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    for image in images {
        let info = image_status(daemon, &image.id)
            .await
            .unwrap()
            .expect("listed image has a status");
        for snapshot in info["snapshots"].as_array().unwrap() {
            let path = Path::new(snapshot.as_str().unwrap());
            assert!(path.is_dir(), "image {} lacks {}", image.id, path.display());
        }
    }
}

/// Creates a container from `image` in the pod, then removes it. A create
/// may find the image gone (another worker removed it): that is the
/// caller's race, answered NotFound "pull it first"; any other error is a
/// failure.
async fn create_and_remove(pod: &Pod, image: &str, container: &str) -> Result<(), String> {
    match pod
        .create(container, json!({"image": {"image": image}}))
        .await
    {
        Ok(id) => pod
            .remove(&id)
            .await
            .map_err(|e| format!("RemoveContainer {id}: {e:?}")),
        Err(e) if e.code() == Code::NotFound && e.message().contains("pull it first") => Ok(()),
        Err(e) => Err(format!("CreateContainer from {image}: {e:?}")),
    }
}

/// One worker's rounds of random operations; returns what failed.
async fn worker(
    pod: Arc<Pod>,
    names: Arc<Vec<String>>,
    worker: usize,
    rounds: usize,
    seed: u64,
) -> Vec<String> {
    let mut rng = Rng::new(seed ^ (worker as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut failures = Vec::new();
    for round in 0..rounds {
        let image = &names[rng.below(names.len() as u64) as usize];
        let container = format!("w{worker}-r{round}");
        // Removals are frequent, so that the shared base layer often has
        // no image but the one being pulled.
        let outcome = match rng.below(8) {
            0 | 1 => pod
                .daemon
                .pull(image, None)
                .await
                .map(|_| ())
                .map_err(|e| format!("PullImage {image}: {e:?}")),
            2..=4 => remove_image(&pod.daemon, image)
                .await
                .map_err(|e| format!("RemoveImage {image}: {e:?}")),
            5 => image_status(&pod.daemon, image)
                .await
                .map(|_| ())
                .map_err(|e| format!("ImageStatus {image}: {e:?}")),
            6 => create_and_remove(&pod, image, &container).await,
            // What kubelet does: pull, then create at once.
            _ => match pod.daemon.pull(image, None).await {
                Ok(_) => create_and_remove(&pod, image, &container).await,
                Err(e) => Err(format!("PullImage {image}: {e:?}")),
            },
        };
        if let Err(e) = outcome {
            failures.push(format!("worker {worker} round {round}: {e}"));
        }
    }
    failures
}

/// Removes every image, so that the next pull starts from an empty store;
/// checks the store is empty.
async fn remove_all(daemon: &Daemon) {
    let images = daemon
        .images()
        .await
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    for image in images {
        remove_image(daemon, &image.id).await.unwrap();
    }
    let blobs = daemon.dir.join("root/content/blobs/sha256");
    let left: Vec<_> = std::fs::read_dir(&blobs).unwrap().collect();
    assert!(left.is_empty(), "blobs left after removing all: {left:?}");
}

/// A wave: `n` pulls of one image at once, from an empty store. Each blob
/// is fetched from the registry once, and every pull answers the image.
async fn wave(daemon: &Daemon, registry: &RegistryProcess, image: &str, n: usize) {
    let summary = summary();
    let from = log_len(registry);
    let name = name(registry, image);
    let pulls: Vec<_> = (0..n)
        .map(|_| {
            let endpoint = daemon.endpoint();
            let name = name.clone();
            tokio::spawn(async move {
                let channel = crius::client::connect(
                    &endpoint,
                    Duration::from_secs(10),
                    Some(Duration::from_secs(60)),
                )
                .await
                .unwrap();
                crius::client::image_client(channel)
                    .pull_image(cri::PullImageRequest {
                        image: Some(cri::ImageSpec {
                            image: name,
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner().image_ref)
            })
        })
        .collect();
    let mut refs = BTreeSet::new();
    for pull in pulls {
        refs.insert(pull.await.unwrap().expect("a pull of the wave"));
    }
    assert_eq!(refs.len(), 1, "one image: {refs:?}");
    // The access log is written as responses end; give it a moment.
    let expected: BTreeMap<String, u32> = blobs_of(&summary, image)
        .into_iter()
        .map(|b| (b, 1))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut gets = blob_gets(registry, from);
    while gets != expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        gets = blob_gets(registry, from);
    }
    assert_eq!(
        gets, expected,
        "blob GETs of a wave of {n} pulls of {image}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn pulls_removals_and_creates_at_once_never_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = registry(tmp.path());
    let pod = Arc::new(Pod::new(json!({})).await);
    let names: Arc<Vec<String>> = Arc::new(IMAGES.iter().map(|i| name(&registry, i)).collect());
    let seed = seed();
    eprintln!("CRIUS_STRESS_SEED={seed}");
    let started = Instant::now();

    let failures = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (pod, names, failures) = (pod.clone(), names.clone(), failures.clone());
            tokio::spawn(async move {
                let failed = worker(pod, names, w, 50, seed).await;
                failures.lock().unwrap().extend(failed);
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of 200 operations failed (seed {seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_listed_images_whole(&pod.daemon).await;
    eprintln!("200 random operations in {:?}", started.elapsed());

    for image in ["config", "busybox", "httpd"] {
        remove_all(&pod.daemon).await;
        wave(&pod.daemon, &registry, image, 4).await;
    }
    // A pull that is neither first nor concurrent fetches nothing.
    let from = log_len(&registry);
    pod.daemon.pull(&names[3], None).await.unwrap();
    pod.daemon.pull(&names[1], None).await.unwrap();
    assert_eq!(
        blob_gets(&registry, from).len(),
        1,
        "only user-name's config"
    );
    pod.remove_pod().await;
    eprintln!("stress and waves in {:?}", started.elapsed());
}

/// The report: one client pulls and removes an image in a loop while
/// another removes, pulls and at once uses an image sharing its layers. The
/// create right after a successful pull must find the image whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn a_create_right_after_a_pull_finds_the_image_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = registry(tmp.path());
    let pod = Arc::new(Pod::new(json!({})).await);
    remove_all(&pod.daemon).await;
    let churned = name(&registry, "user-name");
    let used = name(&registry, "busybox");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (pod, done, churned) = (pod.clone(), done.clone(), churned.clone());
        tokio::spawn(async move {
            let mut rounds = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                pod.daemon.pull(&churned, None).await.unwrap();
                remove_image(&pod.daemon, &churned).await.unwrap();
                rounds += 1;
            }
            rounds
        })
    };
    let mut failures = Vec::new();
    for round in 0..30 {
        remove_image(&pod.daemon, &used).await.unwrap();
        pod.daemon.pull(&used, None).await.unwrap();
        if let Err(e) = create_and_remove(&pod, &used, &format!("c{round}")).await {
            failures.push(format!("round {round}: {e}"));
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let churned_rounds = churn.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} of 30 creates failed right after their pull ({churned_rounds} pull/remove rounds beside):\n{}",
        failures.len(),
        failures.join("\n")
    );
    pod.remove_pod().await;
}

/// What the image store holds on disk: blob digests, snapshot chain IDs,
/// and leftovers of unfinished work (ingest files, pending snapshots).
struct OnDisk {
    blobs: BTreeSet<String>,
    chains: BTreeSet<String>,
    leftovers: Vec<String>,
}

fn on_disk(root: &Path) -> OnDisk {
    let names = |dir: &str| -> Vec<String> {
        std::fs::read_dir(root.join(dir))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut leftovers = names("content/ingest");
    leftovers.extend(names("snapshots/tmp"));
    OnDisk {
        blobs: names("content/blobs/sha256")
            .into_iter()
            .map(|h| format!("sha256:{h}"))
            .collect(),
        chains: names("snapshots")
            .into_iter()
            .filter(|n| n != "tmp")
            .map(|h| format!("sha256:{h}"))
            .collect(),
        leftovers,
    }
}

/// After a restart: every listed image is whole, and the store holds
/// exactly what the listed images need (no orphaned blob or snapshot, no
/// leftover of a pull, no mount).
async fn assert_store_exact(daemon: &Daemon) -> usize {
    let summary = summary();
    let images = daemon
        .images()
        .await
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    let (mut blobs, mut chains) = (BTreeSet::new(), BTreeSet::new());
    for image in &images {
        let info = image_status(daemon, &image.id).await.unwrap().unwrap();
        let entry = summary["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["config_digest"] == image.id.as_str())
            .expect("a harness image");
        blobs.extend(blobs_of(
            &summary,
            &entry["repository"].as_str().unwrap()["crius-test/".len()..],
        ));
        blobs.insert(info["manifestDigest"].as_str().unwrap().to_string());
        for chain in info["chainIDs"].as_array().unwrap() {
            chains.insert(chain.as_str().unwrap().to_string());
        }
    }
    let found = on_disk(&daemon.dir.join("root"));
    assert!(
        found.leftovers.is_empty(),
        "leftovers: {:?}",
        found.leftovers
    );
    assert_eq!(found.blobs, blobs, "blobs on disk against the images' own");
    assert_eq!(
        found.chains, chains,
        "snapshots on disk against the images' own"
    );
    let prefix = format!("{}/", daemon.dir.display());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.lines().any(|l| l.contains(&prefix)),
        "mounts left under {prefix}"
    );
    images.len()
}

/// SIGKILL of criusd at random moments of concurrent pulls of multi-layer
/// images: after each restart the store holds whole images or nothing of
/// them, and the pulls then complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn a_pull_killed_at_any_moment_leaves_nothing_half_made() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = registry(tmp.path());
    let dir = tmp.path().join("daemon");
    std::fs::create_dir(&dir).unwrap();
    let _cleanup = common::CleanupGuard(dir.clone());
    let names = [name(&registry, "layered"), name(&registry, "config")];
    let pull_both = |daemon: &Daemon| {
        let endpoint = daemon.endpoint();
        let names = names.clone();
        tokio::spawn(async move {
            let channel = crius::client::connect(&endpoint, Duration::from_secs(10), None)
                .await
                .ok()?;
            let client = crius::client::image_client(channel);
            let pulls = names.map(|name| {
                let mut client = client.clone();
                tokio::spawn(async move {
                    client
                        .pull_image(cri::PullImageRequest {
                            image: Some(cri::ImageSpec {
                                image: name,
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .await
                })
            });
            let mut ok = true;
            for pull in pulls {
                ok &= pull.await.is_ok_and(|r| r.is_ok());
            }
            Some(ok)
        })
    };
    // How long both pulls take from cold, to aim the kills inside it.
    let daemon = Daemon::start_in(&dir, &[]);
    let started = Instant::now();
    assert_eq!(pull_both(&daemon).await.unwrap(), Some(true));
    let span = started.elapsed();
    drop(daemon);

    let seed = seed();
    eprintln!("CRIUS_STRESS_SEED={seed}; pulls take {span:?}");
    let mut rng = Rng::new(seed);
    let (mut whole, mut absent) = (0, 0);
    for _ in 0..12 {
        let mut daemon = Daemon::start_in(&dir, &[]);
        match assert_store_exact(&daemon).await {
            0 => absent += 1,
            _ => whole += 1,
        }
        remove_all(&daemon).await;
        let pulls = pull_both(&daemon);
        let delay = span.mul_f64(rng.below(1000) as f64 / 800.0);
        tokio::time::sleep(delay).await;
        daemon.stop_with(nix::sys::signal::Signal::SIGKILL);
        let _ = pulls.await;
    }
    let daemon = Daemon::start_in(&dir, &[]);
    assert_store_exact(&daemon).await;
    assert_eq!(pull_both(&daemon).await.unwrap(), Some(true));
    assert_eq!(assert_store_exact(&daemon).await, 2);
    eprintln!("after kills: {whole} times some image whole, {absent} times nothing");
}
