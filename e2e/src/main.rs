//! crius-e2e: the test harness's image builder. Builds the test images from
//! busybox and pushes them to a registry over HTTP, then writes a JSON summary
//! (references and digests) that the tests read.

mod bench;
mod bench_metrics;
mod bench_nri;
mod bench_streams;
mod big;
mod catalog;
mod image;
mod layer;
// The tests' NRI plugin, shared rather than copied.
#[path = "../../tests/common/nri_plugin.rs"]
mod nri_plugin;
mod registry;

use anyhow::{Context, bail};
use catalog::Content;
use clap::{Parser, Subcommand};
use serde_json::json;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "crius-e2e", about = "crius end-to-end harness tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the test images and push them to a registry
    PushImages {
        /// Registry host:port (plain HTTP)
        #[arg(long, env = "CRIUS_E2E_REGISTRY")]
        registry: String,
        /// The static busybox binary the images are made of
        #[arg(long, default_value = "/bin/busybox")]
        busybox: PathBuf,
        /// Where to write the JSON summary of what was pushed
        #[arg(long)]
        out: PathBuf,
    },
    /// Build and push the large benchmark image (busybox plus data layers)
    PushBig {
        /// Data layers only, without the busybox base layer
        #[arg(long)]
        no_base: bool,
        #[arg(long, env = "CRIUS_E2E_REGISTRY")]
        registry: String,
        #[arg(long, default_value = "/bin/busybox")]
        busybox: PathBuf,
        #[arg(long, default_value = "crius-test/big")]
        repo: String,
        /// Data layers
        #[arg(long, default_value_t = 6)]
        layers: usize,
        /// Uncompressed MiB per data layer
        #[arg(long, default_value_t = 40)]
        layer_mb: usize,
    },
    /// RunPodSandbox latency with the pod's own network or the node's
    BenchSandboxes {
        #[arg(long)]
        endpoint: String,
        #[arg(long, default_value_t = 30)]
        runs: usize,
        /// Give pods their own network (else the node's)
        #[arg(long)]
        pod_network: bool,
        #[arg(long)]
        label: String,
    },
    /// Remove a built-in network bridge and its iptables rules (after tests)
    RemoveBridge { name: String },
    /// Pod start latency, concurrent starts and per-pod memory of a CRI runtime
    BenchPods {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        image: String,
        #[arg(long, default_value_t = 30)]
        runs: usize,
        #[arg(long, default_value_t = 50)]
        concurrent: usize,
        /// PID of the runtime's daemon (its RSS is reported)
        #[arg(long)]
        daemon_pid: u32,
        /// Name of the runtime's shim binary
        #[arg(long)]
        shim: String,
        /// Prefix of the printed figures
        #[arg(long)]
        label: String,
        #[arg(long)]
        log_dir: PathBuf,
    },
    /// What one NRI plugin that subscribes to every event costs a pod
    /// start, against a criusd with NRI on
    BenchNri {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        image: String,
        /// The daemon's NRI socket
        #[arg(long)]
        socket: PathBuf,
        #[arg(long, default_value_t = 30)]
        runs: usize,
        #[arg(long)]
        log_dir: PathBuf,
    },
    /// ListPodSandboxMetrics time and the daemon's CPU per call with many
    /// running pods (each on its own network)
    BenchMetrics {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        image: String,
        #[arg(long, default_value_t = 100)]
        pods: usize,
        #[arg(long, default_value_t = 20)]
        calls: usize,
        #[arg(long)]
        daemon_pid: u32,
        #[arg(long)]
        label: String,
        #[arg(long)]
        log_dir: PathBuf,
    },
    /// Exec round trips, port-forward throughput and memory of a CRI
    /// runtime's streaming server, over SPDY
    BenchStreams {
        #[arg(long)]
        endpoint: String,
        /// A running container with a shell
        #[arg(long)]
        container: String,
        /// Its pod, serving `path` on `port`
        #[arg(long)]
        pod: String,
        /// A running container under the RuntimeDefault seccomp profile
        #[arg(long)]
        confined: String,
        #[arg(long, default_value_t = 80)]
        port: u16,
        #[arg(long, default_value = "/big")]
        path: String,
        #[arg(long, default_value_t = 30)]
        runs: usize,
        #[arg(long)]
        daemon_pid: u32,
        #[arg(long)]
        label: String,
    },
    /// Unpack one gzip layer blob with crius's unpacker (for the benchmark)
    Unpack {
        #[arg(long)]
        blob: PathBuf,
        #[arg(long)]
        dest: PathBuf,
    },
}

/// Test timeouts scaled for slow machines (the shared NRI plugin uses it).
pub fn patience(d: std::time::Duration) -> std::time::Duration {
    d
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::BenchStreams {
            endpoint,
            container,
            pod,
            confined,
            port,
            path,
            runs,
            daemon_pid,
            label,
        } => {
            bench_streams::run(bench_streams::Options {
                endpoint,
                container,
                pod,
                confined,
                port,
                path,
                runs,
                daemon_pid,
                label,
            })
            .await
        }
        Command::PushImages {
            registry,
            busybox,
            out,
        } => push_images(&registry, &busybox, &out).await,
        Command::PushBig {
            no_base,
            registry,
            busybox,
            repo,
            layers,
            layer_mb,
        } => {
            let base = if no_base {
                None
            } else {
                let (binary, applets) = read_busybox(&busybox)?;
                Some(catalog::busybox_layer(&binary, &applets))
            };
            let image = big::build(layers, layer_mb, base.as_ref());
            registry::Registry::new(&registry)?
                .push_image(&repo, Some("latest"), &image)
                .await?;
            let compressed: usize = image.layers.iter().map(|l| l.size()).sum();
            println!(
                "pushed {registry}/{repo}:latest: {} layers, {} MiB compressed, {} MiB of data uncompressed",
                image.layers.len(),
                compressed >> 20,
                layers * layer_mb
            );
            Ok(())
        }
        Command::BenchMetrics {
            endpoint,
            image,
            pods,
            calls,
            daemon_pid,
            label,
            log_dir,
        } => {
            bench_metrics::run(bench_metrics::Options {
                endpoint,
                image,
                pods,
                calls,
                daemon_pid,
                label,
                log_dir,
            })
            .await
        }
        Command::BenchPods {
            endpoint,
            image,
            runs,
            concurrent,
            daemon_pid,
            shim,
            label,
            log_dir,
        } => {
            bench::run(bench::Options {
                endpoint,
                image,
                runs,
                concurrent,
                daemon_pid,
                shim,
                label,
                log_dir,
            })
            .await
        }
        Command::BenchNri {
            endpoint,
            image,
            socket,
            runs,
            log_dir,
        } => {
            bench_nri::run(bench_nri::Options {
                endpoint,
                image,
                socket,
                runs,
                log_dir,
            })
            .await
        }
        Command::BenchSandboxes {
            endpoint,
            runs,
            pod_network,
            label,
        } => bench::sandboxes(&endpoint, runs, pod_network, &label).await,
        Command::RemoveBridge { name } => {
            use crius::network::iptables::{Family, remove_base};
            for family in [Family::V4, Family::V6] {
                remove_base(family, &name);
            }
            crius::network::netlink::Netlink::open()?.delete_link(&name)?;
            Ok(())
        }
        Command::Unpack { blob, dest } => {
            let started = std::time::Instant::now();
            let file = std::fs::File::open(&blob).with_context(|| format!("{}", blob.display()))?;
            let reader = crius::image::unpack::decompress(
                std::io::BufReader::new(file),
                crius::image::manifest::Compression::Gzip,
            )?;
            std::fs::create_dir_all(&dest)?;
            let usage = crius::image::unpack::unpack(reader, &dest)?;
            println!("{:.3} {}", started.elapsed().as_secs_f64(), usage.bytes);
            Ok(())
        }
    }
}

fn read_busybox(busybox: &PathBuf) -> anyhow::Result<(Vec<u8>, Vec<String>)> {
    let binary =
        std::fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    let list = std::process::Command::new(busybox).arg("--list").output()?;
    if !list.status.success() {
        bail!("{} --list failed", busybox.display());
    }
    Ok((
        binary,
        String::from_utf8(list.stdout)?
            .lines()
            .map(str::to_string)
            .collect(),
    ))
}

async fn push_images(host: &str, busybox: &PathBuf, out: &PathBuf) -> anyhow::Result<()> {
    let (binary, applets) = read_busybox(busybox)?;
    let registry = registry::Registry::new(host)?;
    let mut summary = Vec::new();
    for image in catalog::all(&binary, &applets) {
        let mut platforms = Vec::new();
        match &image.content {
            Content::Image(single) => {
                registry
                    .push_image(image.repo, Some(image.tag), single)
                    .await?
            }
            Content::Index(index, children) => {
                for child in children {
                    registry.push_image(image.repo, None, child).await?;
                    platforms.push(json!({
                        "architecture": child.platform.architecture,
                        "variant": child.platform.variant,
                        "digest": child.manifest.digest,
                        "config_digest": child.config.digest,
                    }));
                }
                registry.push_manifest(image.repo, image.tag, index).await?;
            }
        }
        let top = image.top();
        let single = match &image.content {
            Content::Image(i) => Some(i),
            Content::Index(..) => None,
        };
        println!(
            "pushed {host}/{}:{} {} ({})",
            image.repo, image.tag, top.digest, image.what
        );
        summary.push(json!({
            "reference": format!("{host}/{}:{}", image.repo, image.tag),
            "repository": image.repo,
            "tag": image.tag,
            "description": image.what,
            "digest": top.digest,
            "media_type": top.media_type,
            "config_digest": single.map(|i| i.config.digest.clone()),
            "layers": single.map(|i| i.layers.iter().map(layer::Blob::descriptor).collect::<Vec<_>>()),
            "platforms": platforms,
        }));
    }
    let doc = json!({"registry": host, "images": summary});
    std::fs::write(out, serde_json::to_vec_pretty(&doc)?)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
