//! Container commands: create, start, stop, rm, ps, inspect, logs, exec,
//! update, run.

use crate::endpoint::Settings;
use crate::output::{Format, print_structured, print_table};
use anyhow::{Context, bail};
use crius::cri;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct CreateArgs {
    /// The pod sandbox to create the container in
    pod_id: String,
    /// crictl-format container config (JSON or YAML)
    container_config: String,
    /// crictl-format pod sandbox config (JSON or YAML)
    pod_config: String,
    /// Do not pull the image when it is missing
    #[arg(long)]
    no_pull: bool,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// crictl-format container config (JSON or YAML)
    container_config: String,
    /// crictl-format pod sandbox config (JSON or YAML)
    pod_config: String,
    /// Runtime handler for the pod
    #[arg(long, default_value = "")]
    runtime: String,
    /// Do not pull the image when it is missing
    #[arg(long)]
    no_pull: bool,
}

#[derive(clap::Args)]
pub struct IdsArgs {
    /// Container ids (or unique prefixes)
    #[arg(required = true)]
    ids: Vec<String>,
}

#[derive(clap::Args)]
pub struct StopArgs {
    /// Container ids (or unique prefixes)
    #[arg(required = true)]
    ids: Vec<String>,
    /// Seconds to wait after the stop signal before killing
    #[arg(short = 't', long, default_value_t = 0)]
    timeout: i64,
}

#[derive(clap::Args)]
pub struct CheckpointArgs {
    /// Container ids (or unique prefixes)
    #[arg(required = true)]
    ids: Vec<String>,
    /// The archive to write (a relative path is taken from here); with
    /// several containers, each gets `<export>.<id>`
    #[arg(short = 'E', long)]
    export: PathBuf,
    /// Seconds the checkpoint may take (0: the runtime's default)
    #[arg(long, default_value_t = 0)]
    timeout: i64,
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// Container ids (or unique prefixes)
    ids: Vec<String>,
    /// Stop running containers first
    #[arg(short, long)]
    force: bool,
    /// All containers
    #[arg(short, long)]
    all: bool,
}

#[derive(clap::Args)]
pub struct PsArgs {
    /// All containers, not only running ones
    #[arg(short, long)]
    all: bool,
    /// Only containers whose id starts with this
    #[arg(long, default_value = "")]
    id: String,
    /// Only containers of this pod sandbox
    #[arg(short, long, default_value = "")]
    pod: String,
    /// Only containers whose name contains this
    #[arg(long)]
    name: Option<String>,
    /// Only containers in this state: created, running, exited, unknown
    #[arg(short, long)]
    state: Option<String>,
    /// Only containers with this label (key=value), repeatable
    #[arg(long)]
    label: Vec<String>,
    /// Show ids only
    #[arg(short, long)]
    quiet: bool,
    /// Show full ids
    #[arg(long)]
    no_trunc: bool,
    /// Output format
    #[arg(short, long, value_enum, default_value = "table")]
    output: Format,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Container ids (or unique prefixes)
    #[arg(required = true)]
    ids: Vec<String>,
    /// Output format
    #[arg(short, long, value_enum, default_value = "json")]
    output: Format,
}

#[derive(clap::Args)]
pub struct LogsArgs {
    /// Container id (or unique prefix)
    id: String,
    /// Keep printing new output
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines
    #[arg(long)]
    tail: Option<usize>,
    /// Show the timestamps
    #[arg(long)]
    timestamps: bool,
}

#[derive(clap::Args)]
pub struct ExecArgs {
    /// Container id (or unique prefix)
    id: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
    /// Run synchronously (ExecSync): output when it has ended
    #[arg(short, long)]
    sync: bool,
    /// Seconds before a synchronous command is killed (0: no limit)
    #[arg(long, default_value_t = 0)]
    timeout: i64,
    /// Stream stdin to the command
    #[arg(short, long)]
    interactive: bool,
    /// Give the command a terminal
    #[arg(short, long)]
    tty: bool,
    /// How to connect to the streaming server
    #[arg(long, value_enum, default_value = "websocket")]
    transport: crate::stream::Transport,
}

#[derive(clap::Args)]
pub struct UpdateArgs {
    /// Container ids (or unique prefixes)
    #[arg(required = true)]
    ids: Vec<String>,
    #[arg(long)]
    cpu_period: Option<i64>,
    #[arg(long)]
    cpu_quota: Option<i64>,
    #[arg(long)]
    cpu_share: Option<i64>,
    #[arg(long)]
    cpuset_cpus: Option<String>,
    #[arg(long)]
    cpuset_mems: Option<String>,
    /// Memory limit in bytes
    #[arg(long)]
    memory: Option<i64>,
}

/// Pulls the config's image unless it is present (or `no_pull`).
async fn ensure_image(
    settings: &Settings,
    config: &cri::ContainerConfig,
    pod: &cri::PodSandboxConfig,
    no_pull: bool,
) -> anyhow::Result<()> {
    let image = config.image.clone().unwrap_or_default();
    let mut client = settings.images_with(None).await?;
    let present = client
        .image_status(cri::ImageStatusRequest {
            image: Some(image.clone()),
            verbose: false,
        })
        .await?
        .into_inner()
        .image
        .is_some();
    if present || no_pull {
        return Ok(());
    }
    client
        .pull_image(cri::PullImageRequest {
            image: Some(image.clone()),
            auth: None,
            sandbox_config: Some(pod.clone()),
        })
        .await
        .with_context(|| format!("pulling {}", image.image))?;
    Ok(())
}

async fn create_in(
    settings: &Settings,
    pod_id: String,
    config: cri::ContainerConfig,
    pod: cri::PodSandboxConfig,
) -> anyhow::Result<String> {
    let mut client = settings.runtime().await?;
    Ok(client
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod_id,
            config: Some(config),
            sandbox_config: Some(pod),
        })
        .await
        .context("creating the container")?
        .into_inner()
        .container_id)
}

pub async fn create(settings: &Settings, args: CreateArgs) -> anyhow::Result<()> {
    let config: cri::ContainerConfig = crate::config_file::load(&args.container_config)?;
    let pod: cri::PodSandboxConfig = crate::config_file::load(&args.pod_config)?;
    ensure_image(settings, &config, &pod, args.no_pull).await?;
    println!("{}", create_in(settings, args.pod_id, config, pod).await?);
    Ok(())
}

/// runp + create + start, as `crictl run`.
pub async fn run(settings: &Settings, args: RunArgs) -> anyhow::Result<()> {
    let config: cri::ContainerConfig = crate::config_file::load(&args.container_config)?;
    let pod: cri::PodSandboxConfig = crate::config_file::load(&args.pod_config)?;
    ensure_image(settings, &config, &pod, args.no_pull).await?;
    let mut client = settings.runtime().await?;
    let pod_id = client
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: args.runtime,
        })
        .await
        .context("running the pod sandbox")?
        .into_inner()
        .pod_sandbox_id;
    let id = create_in(settings, pod_id, config, pod).await?;
    client
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .with_context(|| format!("starting container {id}"))?;
    println!("{id}");
    Ok(())
}

pub async fn start(settings: &Settings, args: IdsArgs) -> anyhow::Result<()> {
    let mut client = settings.runtime().await?;
    for id in args.ids {
        client
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .with_context(|| format!("starting container {id}"))?;
        println!("{id}");
    }
    Ok(())
}

pub async fn stop(settings: &Settings, args: StopArgs) -> anyhow::Result<()> {
    // The call may last the grace period, plus the kill.
    let grace = Duration::from_secs(args.timeout.max(0) as u64 + 15);
    let mut client = settings.runtime_with(Some(grace)).await?;
    for id in args.ids {
        client
            .stop_container(cri::StopContainerRequest {
                container_id: id.clone(),
                timeout: args.timeout,
            })
            .await
            .with_context(|| format!("stopping container {id}"))?;
        println!("{id}");
    }
    Ok(())
}

/// As `crictl checkpoint --export`: a checkpoint archive of each running
/// container, which keeps running.
pub async fn checkpoint(settings: &Settings, args: CheckpointArgs) -> anyhow::Result<()> {
    let seconds = if args.timeout > 0 {
        args.timeout as u64
    } else {
        300
    };
    let mut client = settings
        .runtime_with(Some(Duration::from_secs(seconds + 15)))
        .await?;
    let export = std::path::absolute(&args.export)
        .with_context(|| format!("export path {}", args.export.display()))?;
    let several = args.ids.len() > 1;
    for id in args.ids {
        let location = if several {
            PathBuf::from(format!("{}.{id}", export.display()))
        } else {
            export.clone()
        };
        client
            .checkpoint_container(cri::CheckpointContainerRequest {
                container_id: id.clone(),
                location: location.display().to_string(),
                timeout: args.timeout,
            })
            .await
            .with_context(|| format!("checkpointing container {id}"))?;
        println!("{id}");
    }
    Ok(())
}

pub async fn rm(settings: &Settings, args: RmArgs) -> anyhow::Result<()> {
    let mut client = settings.runtime_with(Some(Duration::from_secs(15))).await?;
    let mut ids = args.ids.clone();
    if args.all {
        let all = client
            .list_containers(cri::ListContainersRequest::default())
            .await?
            .into_inner()
            .containers;
        ids.extend(all.into_iter().map(|c| c.id));
    }
    if ids.is_empty() {
        bail!("name at least one container id, or use --all");
    }
    for id in ids {
        let status = client
            .container_status(cri::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
            .with_context(|| format!("getting the status of container {id}"))?
            .into_inner()
            .status
            .unwrap_or_default();
        if status.state == cri::ContainerState::ContainerRunning as i32 {
            if !args.force {
                bail!("container {id} is running: stop it first, or use --force");
            }
            client
                .stop_container(cri::StopContainerRequest {
                    container_id: id.clone(),
                    timeout: 0,
                })
                .await
                .with_context(|| format!("stopping container {id}"))?;
        }
        client
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
            .with_context(|| format!("removing container {id}"))?;
        println!("{id}");
    }
    Ok(())
}

fn state_name(state: i32) -> &'static str {
    match cri::ContainerState::try_from(state) {
        Ok(cri::ContainerState::ContainerCreated) => "Created",
        Ok(cri::ContainerState::ContainerRunning) => "Running",
        Ok(cri::ContainerState::ContainerExited) => "Exited",
        _ => "Unknown",
    }
}

pub async fn ps(settings: &Settings, args: PsArgs) -> anyhow::Result<()> {
    let state = match args
        .state
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None if args.all => None,
        None => Some(cri::ContainerState::ContainerRunning),
        Some("created") => Some(cri::ContainerState::ContainerCreated),
        Some("running") => Some(cri::ContainerState::ContainerRunning),
        Some("exited") => Some(cri::ContainerState::ContainerExited),
        Some("unknown") => Some(cri::ContainerState::ContainerUnknown),
        Some(other) => bail!("--state {other:?}: use created, running, exited or unknown"),
    };
    let label_selector = crate::label_selector(&args.label)?;
    let filter = cri::ContainerFilter {
        id: args.id.clone(),
        state: state.map(|s| cri::ContainerStateValue { state: s as i32 }),
        pod_sandbox_id: args.pod.clone(),
        label_selector,
    };
    let mut client = settings.runtime().await?;
    let mut items = client
        .list_containers(cri::ListContainersRequest {
            filter: Some(filter),
        })
        .await
        .context("listing containers")?
        .into_inner()
        .containers;
    items.retain(|c| {
        args.name.as_ref().is_none_or(|n| {
            c.metadata
                .as_ref()
                .is_some_and(|m| m.name.contains(n.as_str()))
        })
    });
    items.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    if args.quiet {
        items.iter().for_each(|c| println!("{}", c.id));
        return Ok(());
    }
    if args.output != Format::Table {
        return print_structured(&json!({ "containers": items }), args.output);
    }
    let short = |id: &str| {
        if args.no_trunc {
            id.to_string()
        } else {
            id.chars().take(13).collect()
        }
    };
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|c| {
            let meta = c.metadata.clone().unwrap_or_default();
            vec![
                short(&c.id),
                c.image
                    .as_ref()
                    .map(|i| i.image.clone())
                    .unwrap_or_default(),
                crate::output::ago(c.created_at),
                state_name(c.state).to_string(),
                meta.name,
                meta.attempt.to_string(),
                short(&c.pod_sandbox_id),
            ]
        })
        .collect();
    print_table(
        &[
            "CONTAINER",
            "IMAGE",
            "CREATED",
            "STATE",
            "NAME",
            "ATTEMPT",
            "POD ID",
        ],
        &rows,
    );
    Ok(())
}

async fn status_of(
    settings: &Settings,
    id: &str,
    verbose: bool,
) -> anyhow::Result<cri::ContainerStatusResponse> {
    let mut client = settings.runtime().await?;
    Ok(client
        .container_status(cri::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose,
        })
        .await
        .with_context(|| format!("getting the status of container {id}"))?
        .into_inner())
}

pub async fn inspect(settings: &Settings, args: InspectArgs) -> anyhow::Result<()> {
    let mut docs = Vec::new();
    for id in &args.ids {
        let resp = status_of(settings, id, true).await?;
        let mut doc = serde_json::Map::new();
        doc.insert("status".into(), serde_json::to_value(resp.status)?);
        crate::output::splice_info(&mut doc, resp.info);
        docs.push(Value::Object(doc));
    }
    crate::output::print_documents(docs, args.output)
}

/// Prints a container's CRI log file, joining partial lines.
pub async fn logs(settings: &Settings, args: LogsArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let status = status_of(settings, &args.id, false)
        .await?
        .status
        .unwrap_or_default();
    if status.log_path.is_empty() {
        bail!("container {} has no log file", args.id);
    }
    let mut offset = 0usize;
    let mut first = true;
    loop {
        let bytes = std::fs::read(&status.log_path)
            .with_context(|| format!("reading {}", status.log_path))?;
        let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let mut lines: Vec<&[u8]> = bytes[offset.min(end)..end]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        if first && let Some(n) = args.tail {
            let skip = lines.len().saturating_sub(n);
            lines.drain(..skip);
        }
        first = false;
        offset = end;
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        for line in lines {
            let Some(record) = crius_shim::cri_log::parse(line) else {
                continue;
            };
            let sink: &mut dyn Write = if record.stream == "stderr" {
                &mut err
            } else {
                &mut out
            };
            if args.timestamps {
                write!(sink, "{} ", record.time)?;
            }
            sink.write_all(record.text)?;
            if !record.partial {
                sink.write_all(b"\n")?;
            }
        }
        drop((out, err));
        if !args.follow {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Exec (streamed) or ExecSync (`-s`); exits with the command's exit code.
pub async fn exec(settings: &Settings, args: ExecArgs) -> anyhow::Result<()> {
    use std::io::Write;
    if !args.sync {
        let io = (args.interactive, args.tty);
        return crate::stream::exec(settings, args.id, args.cmd, io, args.transport).await;
    }
    let extra = (args.timeout > 0).then(|| Duration::from_secs(args.timeout as u64 + 5));
    let mut client = settings.runtime_with(extra).await?;
    let resp = client
        .exec_sync(cri::ExecSyncRequest {
            container_id: args.id.clone(),
            cmd: args.cmd,
            timeout: args.timeout,
        })
        .await
        .with_context(|| format!("exec in container {}", args.id))?
        .into_inner();
    std::io::stdout().write_all(&resp.stdout)?;
    std::io::stderr().write_all(&resp.stderr)?;
    std::io::stdout().flush()?;
    if resp.exit_code != 0 {
        std::process::exit(resp.exit_code);
    }
    Ok(())
}

pub async fn update(settings: &Settings, args: UpdateArgs) -> anyhow::Result<()> {
    let mut client = settings.runtime().await?;
    for id in &args.ids {
        // Start from what is in force, so unnamed settings stay.
        let current = status_of(settings, id, false)
            .await?
            .status
            .and_then(|s| s.resources)
            .and_then(|r| r.linux)
            .unwrap_or_default();
        let linux = cri::LinuxContainerResources {
            cpu_period: args.cpu_period.unwrap_or(current.cpu_period),
            cpu_quota: args.cpu_quota.unwrap_or(current.cpu_quota),
            cpu_shares: args.cpu_share.unwrap_or(current.cpu_shares),
            cpuset_cpus: args
                .cpuset_cpus
                .clone()
                .unwrap_or(current.cpuset_cpus.clone()),
            cpuset_mems: args
                .cpuset_mems
                .clone()
                .unwrap_or(current.cpuset_mems.clone()),
            memory_limit_in_bytes: args.memory.unwrap_or(current.memory_limit_in_bytes),
            ..current
        };
        client
            .update_container_resources(cri::UpdateContainerResourcesRequest {
                container_id: id.clone(),
                linux: Some(linux),
                windows: None,
                annotations: Default::default(),
            })
            .await
            .with_context(|| format!("updating container {id}"))?;
        println!("{id}");
    }
    Ok(())
}
