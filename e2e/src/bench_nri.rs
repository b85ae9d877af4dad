//! What one NRI plugin costs a pod start: RunPodSandbox + CreateContainer +
//! StartContainer against one criusd, in blocks without a plugin and with
//! one that subscribes to every event and adjusts nothing (the tests' NRI
//! plugin, in this process, on the daemon's NRI socket), alternating so
//! that drift falls on both sides.

use crate::bench::{client, remove_pods, start_pod};
use crate::nri_plugin::{Script, TestPlugin};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Blocks each side gets; runs are split among them.
const BLOCKS: usize = 3;

pub struct Options {
    pub endpoint: String,
    pub image: String,
    pub socket: PathBuf,
    pub runs: usize,
    pub log_dir: PathBuf,
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let mut rt = client(&options.endpoint).await?;
    let per_block = options.runs.div_ceil(BLOCKS).max(1);
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for block in 0..2 * BLOCKS {
        let plugin = if block % 2 == 1 {
            Some(TestPlugin::connect(&options.socket, Script::new("50", "bench")).await)
        } else {
            None
        };
        let mut ids = Vec::new();
        for i in 0..per_block {
            let started = Instant::now();
            let name = format!("nri-{block}-{i}");
            ids.push(start_pod(&mut rt, &name, &options.image, &options.log_dir).await?);
            let ms = started.elapsed().as_secs_f64() * 1e3;
            if plugin.is_some() {
                with.push(ms)
            } else {
                without.push(ms)
            }
        }
        remove_pods(&mut rt, &ids).await?;
        if let Some(plugin) = plugin {
            let events = plugin.events().len();
            anyhow::ensure!(
                events > per_block * 3,
                "the plugin saw only {events} events"
            );
        }
        // The runtime notices a gone plugin on its next send; let it.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (without, with) = (median(without), median(with));
    println!("nri.pod_start_without_plugin_median_ms={without:.2}");
    println!("nri.pod_start_with_plugin_median_ms={with:.2}");
    println!("nri.plugin_cost_ms={:.2}", with - without);
    Ok(())
}
