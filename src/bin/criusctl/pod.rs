//! Pod sandbox commands: runp, stopp, rmp, pods, inspectp.

use crate::endpoint::Settings;
use crate::output::{Format, print_structured, print_table};
use anyhow::{Context, bail};
use crius::cri;
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct RunpArgs {
    /// crictl-format pod sandbox config (JSON or YAML)
    #[arg(value_name = "POD_CONFIG")]
    pod_config: String,
    /// Runtime handler (RuntimeClass handler); long form only, as -r is the
    /// runtime endpoint
    #[arg(long, default_value = "")]
    runtime: String,
}

#[derive(clap::Args)]
pub struct IdsArgs {
    /// Pod sandbox ids (or unique prefixes)
    ids: Vec<String>,
    /// All pod sandboxes
    #[arg(short, long)]
    all: bool,
    /// rmp: remove even if running (crius always stops a removed pod's
    /// containers; accepted for crictl compatibility)
    #[arg(short, long)]
    force: bool,
}

#[derive(clap::Args)]
pub struct PodsArgs {
    /// Only sandboxes whose id starts with this
    #[arg(long, default_value = "")]
    id: String,
    /// Only sandboxes with this pod name
    #[arg(long)]
    name: Option<String>,
    /// Only sandboxes in this Kubernetes namespace
    #[arg(long)]
    namespace: Option<String>,
    /// Only ready or notready sandboxes
    #[arg(short, long)]
    state: Option<String>,
    /// Only sandboxes with this label (key=value), repeatable
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
pub struct InspectpArgs {
    /// Pod sandbox ids (or unique prefixes)
    #[arg(required = true)]
    ids: Vec<String>,
    /// Output format
    #[arg(short, long, value_enum, default_value = "json")]
    output: Format,
}

pub async fn runp(settings: &Settings, args: RunpArgs) -> anyhow::Result<()> {
    let config: cri::PodSandboxConfig = crate::config_file::load(&args.pod_config)?;
    let mut client = settings.runtime().await?;
    let request = cri::RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: args.runtime,
    };
    let id = client
        .run_pod_sandbox(request)
        .await
        .context("running the pod sandbox")?
        .into_inner()
        .pod_sandbox_id;
    println!("{id}");
    Ok(())
}

async fn targets(settings: &Settings, args: &IdsArgs) -> anyhow::Result<Vec<String>> {
    let mut ids = args.ids.clone();
    if args.all {
        let mut client = settings.runtime().await?;
        let items = client
            .list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await?
            .into_inner()
            .items;
        ids.extend(items.into_iter().map(|p| p.id));
    }
    if ids.is_empty() {
        bail!("name at least one pod sandbox id, or use --all");
    }
    Ok(ids)
}

pub async fn stopp(settings: &Settings, args: IdsArgs) -> anyhow::Result<()> {
    let mut client = settings.runtime().await?;
    for id in targets(settings, &args).await? {
        client
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .with_context(|| format!("stopping pod sandbox {id}"))?;
        println!("Stopped sandbox {id}");
    }
    Ok(())
}

pub async fn rmp(settings: &Settings, args: IdsArgs) -> anyhow::Result<()> {
    let mut client = settings.runtime().await?;
    for id in targets(settings, &args).await? {
        if args.force {
            client
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await
                .with_context(|| format!("stopping pod sandbox {id}"))?;
        }
        client
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .with_context(|| format!("removing pod sandbox {id}"))?;
        println!("Removed sandbox {id}");
    }
    Ok(())
}

pub async fn pods(settings: &Settings, args: PodsArgs) -> anyhow::Result<()> {
    let state = match args
        .state
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => None,
        Some("ready") => Some(cri::PodSandboxState::SandboxReady),
        Some("notready") => Some(cri::PodSandboxState::SandboxNotready),
        Some(other) => bail!("--state {other:?}: use ready or notready"),
    };
    let label_selector = crate::label_selector(&args.label)?;
    let filter = cri::PodSandboxFilter {
        id: args.id.clone(),
        state: state.map(|s| cri::PodSandboxStateValue { state: s as i32 }),
        label_selector,
    };
    let mut client = settings.runtime().await?;
    let mut items = client
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(filter),
        })
        .await
        .context("listing pod sandboxes")?
        .into_inner()
        .items;
    items.retain(|p| {
        let meta = p.metadata.clone().unwrap_or_default();
        args.name
            .as_ref()
            .is_none_or(|n| meta.name.contains(n.as_str()))
            && args.namespace.as_ref().is_none_or(|n| &meta.namespace == n)
    });
    items.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    if args.quiet {
        items.iter().for_each(|p| println!("{}", p.id));
        return Ok(());
    }
    if args.output != Format::Table {
        return print_structured(&json!({ "items": items }), args.output);
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|p| {
            let meta = p.metadata.clone().unwrap_or_default();
            let id = if args.no_trunc {
                p.id.clone()
            } else {
                p.id.chars().take(13).collect()
            };
            // As crictl shows it.
            let state = if p.state == cri::PodSandboxState::SandboxReady as i32 {
                "Ready"
            } else {
                "NotReady"
            };
            vec![
                id,
                crate::output::ago(p.created_at),
                state.to_string(),
                meta.name,
                meta.namespace,
                meta.attempt.to_string(),
                p.runtime_handler.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "POD ID",
            "CREATED",
            "STATE",
            "NAME",
            "NAMESPACE",
            "ATTEMPT",
            "RUNTIME",
        ],
        &rows,
    );
    Ok(())
}

pub async fn inspectp(settings: &Settings, args: InspectpArgs) -> anyhow::Result<()> {
    let mut client = settings.runtime().await?;
    let mut docs = Vec::new();
    for id in &args.ids {
        let resp = client
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: true,
            })
            .await
            .with_context(|| format!("getting the status of pod sandbox {id}"))?
            .into_inner();
        let mut doc = serde_json::Map::new();
        doc.insert("status".into(), serde_json::to_value(resp.status)?);
        crate::output::splice_info(&mut doc, resp.info);
        docs.push(Value::Object(doc));
    }
    crate::output::print_documents(docs, args.output)
}
