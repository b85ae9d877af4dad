//! Runtime-wide commands: version, info.

use crate::endpoint::Settings;
use crate::output::{Format, print_structured};
use anyhow::Context;
use crius::cri;
use serde_json::{Map, Value};

#[derive(clap::Args)]
pub struct VersionArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value = "table")]
    output: Format,
}

#[derive(clap::Args)]
pub struct InfoArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value = "json")]
    output: Format,
    /// Ask for the runtime's verbose details (config, handlers, ...)
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    verbose: bool,
}

pub async fn version(settings: &Settings, args: VersionArgs) -> anyhow::Result<()> {
    let mut client = settings.runtime().await?;
    let v = client
        .version(cri::VersionRequest {
            version: "v1".into(),
        })
        .await
        .context("getting the runtime version")?
        .into_inner();
    match args.output {
        Format::Table => {
            println!("Version:  {}", v.version);
            println!("RuntimeName:  {}", v.runtime_name);
            println!("RuntimeVersion:  {}", v.runtime_version);
            println!("RuntimeApiVersion:  {}", v.runtime_api_version);
            Ok(())
        }
        format => print_structured(&v, format),
    }
}

/// Like `crictl info`: the status conditions, handlers and features, with the
/// runtime's verbose info entries (JSON strings) spliced in as objects.
pub async fn info(settings: &Settings, args: InfoArgs) -> anyhow::Result<()> {
    let mut client = settings.runtime().await?;
    let status = client
        .status(cri::StatusRequest {
            verbose: args.verbose,
        })
        .await
        .context("getting the runtime status")?
        .into_inner();
    let mut doc = Map::new();
    doc.insert("status".into(), serde_json::to_value(&status.status)?);
    doc.insert(
        "runtimeHandlers".into(),
        serde_json::to_value(&status.runtime_handlers)?,
    );
    doc.insert("features".into(), serde_json::to_value(status.features)?);
    crate::output::splice_info(&mut doc, status.info);
    let format = if args.output == Format::Table {
        Format::Json
    } else {
        args.output
    };
    print_structured(&Value::Object(doc), format)
}

#[derive(clap::Args)]
pub struct EventsArgs {
    /// Output format of each event
    #[arg(short, long, value_enum, default_value = "json")]
    output: Format,
}

/// Follows the runtime's container events until interrupted, one document
/// per event (compact JSON lines, or YAML documents). The stream has no call
/// timeout (`--timeout` bounds connecting only).
pub async fn events(settings: &Settings, args: EventsArgs) -> anyhow::Result<()> {
    let mut client = settings.runtime_with(None).await?;
    let mut events = client
        .get_container_events(cri::GetEventsRequest {})
        .await
        .context("subscribing to container events")?
        .into_inner();
    use std::io::Write;
    while let Some(event) = events.message().await.context("reading container events")? {
        let mut out = std::io::stdout().lock();
        match args.output {
            Format::Yaml => write!(out, "---\n{}", serde_yaml_ng::to_string(&event)?)?,
            _ => writeln!(out, "{}", serde_json::to_string(&event)?)?,
        }
        out.flush()?;
    }
    Ok(())
}
