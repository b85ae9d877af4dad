//! What one NRI plugin costs a pod start: RunPodSandbox + CreateContainer +
//! StartContainer against one criusd, in blocks without a plugin and with
//! one that subscribes to every event and adjusts nothing (the tests' NRI
//! plugin, in this process, on the daemon's NRI socket), alternating so
//! that drift falls on both sides. Each call's share is shown too.

use crate::bench::{client, container_config, pod_config, remove_pods, run_pod_timed};
use crate::nri_plugin::{Script, TestPlugin};
use std::path::PathBuf;
use std::time::Duration;

/// Blocks each side gets; runs are split among them.
const BLOCKS: usize = 5;
const CALLS: [&str; 3] = ["run_pod_sandbox", "create_container", "start_container"];

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
    // [without, with] × [total, each call]
    let mut times: [[Vec<f64>; 4]; 2] = Default::default();
    for block in 0..2 * BLOCKS {
        let with = block % 2;
        let plugin = if with == 1 {
            Some(TestPlugin::connect(&options.socket, Script::new("50", "bench")).await)
        } else {
            None
        };
        let mut ids = Vec::new();
        for i in 0..per_block {
            let pod = pod_config(&format!("nri-{block}-{i}"), &options.log_dir);
            let (id, calls) = run_pod_timed(&mut rt, pod, container_config(&options.image)).await?;
            ids.push(id);
            times[with][0].push(calls.iter().sum());
            for (c, t) in calls.iter().enumerate() {
                times[with][c + 1].push(*t);
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
    let [without, with] = times.map(|sides| sides.map(median));
    println!("nri.pod_start_without_plugin_median_ms={:.2}", without[0]);
    println!("nri.pod_start_with_plugin_median_ms={:.2}", with[0]);
    println!("nri.plugin_cost_ms={:.2}", with[0] - without[0]);
    for (c, call) in CALLS.iter().enumerate() {
        println!("nri.{call}_cost_ms={:.2}", with[c + 1] - without[c + 1]);
    }
    Ok(())
}
