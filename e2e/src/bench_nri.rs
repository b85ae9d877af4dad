//! What one NRI plugin costs a pod start: RunPodSandbox + CreateContainer +
//! StartContainer against one criusd, in blocks without a plugin and with
//! one that subscribes to every event and adjusts nothing (the tests' NRI
//! plugin, in this process, on the daemon's NRI socket), alternating so
//! that drift falls on both sides. Each call's share is shown too.

use crate::bench::{client, container_config, pod_config, remove_pods};
use crate::nri_plugin::{Script, TestPlugin};
use anyhow::Context;
use crius::cri;
use crius::cri::runtime_service_client::RuntimeServiceClient;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

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

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// One pod started, each call timed; answers the pod id and the times.
async fn timed_pod(
    rt: &mut RuntimeServiceClient<Channel>,
    name: &str,
    options: &Options,
) -> anyhow::Result<(String, [f64; 3])> {
    let pod = pod_config(name, &options.log_dir);
    let started = Instant::now();
    let pod_id = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: String::new(),
        })
        .await
        .context("RunPodSandbox")?
        .into_inner()
        .pod_sandbox_id;
    let run = ms(started);
    let started = Instant::now();
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(container_config(&options.image)),
            sandbox_config: Some(pod),
        })
        .await
        .context("CreateContainer")?
        .into_inner()
        .container_id;
    let create = ms(started);
    let started = Instant::now();
    rt.start_container(cri::StartContainerRequest { container_id: id })
        .await
        .context("StartContainer")?;
    Ok((pod_id, [run, create, ms(started)]))
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
            let (id, calls) = timed_pod(&mut rt, &format!("nri-{block}-{i}"), &options).await?;
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
