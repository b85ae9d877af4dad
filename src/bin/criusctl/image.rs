//! Image commands: pull, images, inspecti, rmi, imagefsinfo.

use crate::endpoint::Settings;
use crate::output::{Format, human_size, print_structured};
use anyhow::{Context, bail};
use base64::Engine;
use crius::cri;
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct PullArgs {
    /// Image to pull, e.g. busybox or 127.0.0.1:5000/repo:tag
    image: String,
    /// Registry credentials, USERNAME[:PASSWORD]
    #[arg(long)]
    creds: Option<String>,
    /// Base64 of USERNAME:PASSWORD
    #[arg(long)]
    auth: Option<String>,
    /// Username (with --password)
    #[arg(long)]
    username: Option<String>,
    /// Password (with --username)
    #[arg(long)]
    password: Option<String>,
    /// crictl-format pod config (JSON or YAML) to pull in the pod's context
    #[arg(short = 'p', long)]
    pod_config: Option<String>,
}

#[derive(clap::Args)]
pub struct ImagesArgs {
    /// Only images matching this name or id
    image: Option<String>,
    /// Show image ids only
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Show full image ids
    #[arg(long)]
    no_trunc: bool,
    /// Output format
    #[arg(short, long, value_enum, default_value = "table")]
    output: Format,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Images (names or ids)
    #[arg(required = true)]
    images: Vec<String>,
    /// Output format
    #[arg(short, long, value_enum, default_value = "json")]
    output: Format,
}

#[derive(clap::Args)]
pub struct RmiArgs {
    /// Images (names or ids)
    images: Vec<String>,
    /// Remove all images
    #[arg(short, long)]
    all: bool,
    /// Remove images not used by any container
    #[arg(short, long)]
    prune: bool,
}

#[derive(clap::Args)]
pub struct FsInfoArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value = "json")]
    output: Format,
}

pub async fn pull(settings: &Settings, args: PullArgs) -> anyhow::Result<()> {
    let auth = auth_config(&args)?;
    let sandbox_config = match &args.pod_config {
        Some(path) => Some(crate::config_file::load::<cri::PodSandboxConfig>(path)?),
        None => None,
    };
    // Pulls take as long as the image needs.
    let mut client = settings.images_with(None).await?;
    let request = cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: args.image.clone(),
            ..Default::default()
        }),
        auth,
        sandbox_config,
    };
    let started = Instant::now();
    let ticker = std::io::stderr().is_terminal().then(|| {
        let image = args.image.clone();
        tokio::spawn(async move {
            loop {
                eprint!(
                    "\rPulling {image} ... {:.1}s",
                    started.elapsed().as_secs_f64()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let result = client.pull_image(request).await;
    if let Some(ticker) = ticker {
        ticker.abort();
        eprintln!(
            "\rPulled {} in {:.1}s          ",
            args.image,
            started.elapsed().as_secs_f64()
        );
    }
    let image_ref = result
        .with_context(|| format!("pulling image {}", args.image))?
        .into_inner()
        .image_ref;
    println!("Image is up to date for {image_ref}");
    Ok(())
}

fn auth_config(args: &PullArgs) -> anyhow::Result<Option<cri::AuthConfig>> {
    let mut auth = cri::AuthConfig::default();
    if let Some(creds) = &args.creds {
        let (user, pass) = creds.split_once(':').unwrap_or((creds, ""));
        if user.is_empty() {
            bail!("--creds: the username is empty");
        }
        auth.username = user.into();
        auth.password = pass.into();
    } else if let Some(encoded) = &args.auth {
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .context("--auth is not base64")?;
        auth.auth = encoded.clone();
    } else if let Some(user) = &args.username {
        auth.username = user.clone();
        auth.password = args.password.clone().unwrap_or_default();
    } else {
        return Ok(None);
    }
    Ok(Some(auth))
}

pub async fn images(settings: &Settings, args: ImagesArgs) -> anyhow::Result<()> {
    let mut client = settings.images().await?;
    let filter = args.image.as_ref().map(|i| cri::ImageFilter {
        image: Some(cri::ImageSpec {
            image: i.clone(),
            ..Default::default()
        }),
    });
    let mut images = client
        .list_images(cri::ListImagesRequest { filter })
        .await
        .context("listing images")?
        .into_inner()
        .images;
    images.sort_by(|a, b| {
        a.repo_tags
            .first()
            .cmp(&b.repo_tags.first())
            .then(a.id.cmp(&b.id))
    });
    if args.quiet {
        for image in &images {
            println!("{}", image.id);
        }
        return Ok(());
    }
    if args.output != Format::Table {
        return print_structured(&json!({ "images": images }), args.output);
    }
    let mut rows = vec![];
    for image in &images {
        let id = if args.no_trunc {
            image.id.clone()
        } else {
            short_id(&image.id)
        };
        let digest = image
            .repo_digests
            .first()
            .and_then(|d| d.split_once('@'))
            .map(|(_, d)| short_id(d))
            .unwrap_or_default();
        let names: Vec<(String, String)> = if image.repo_tags.is_empty() {
            let repo = image
                .repo_digests
                .first()
                .and_then(|d| d.split_once('@'))
                .map(|(r, _)| r.to_string());
            vec![(repo.unwrap_or_else(|| "<none>".into()), "<none>".into())]
        } else {
            image.repo_tags.iter().map(|t| split_tag(t)).collect()
        };
        for (repo, tag) in names {
            let mut row = vec![repo, tag];
            if args.digests {
                row.push(digest.clone());
            }
            row.extend([id.clone(), human_size(image.size)]);
            rows.push(row);
        }
    }
    let mut header = vec!["IMAGE", "TAG"];
    if args.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "SIZE"]);
    crate::output::print_table(&header, &rows);
    Ok(())
}

pub async fn inspecti(settings: &Settings, args: InspectArgs) -> anyhow::Result<()> {
    let mut client = settings.images().await?;
    let mut docs = Vec::new();
    for name in &args.images {
        let spec = Some(cri::ImageSpec {
            image: name.clone(),
            ..Default::default()
        });
        let resp = client
            .image_status(cri::ImageStatusRequest {
                image: spec,
                verbose: true,
            })
            .await
            .with_context(|| format!("getting the status of image {name}"))?
            .into_inner();
        let Some(image) = resp.image else {
            bail!("no such image {name:?}");
        };
        let mut doc = serde_json::Map::new();
        doc.insert("status".into(), serde_json::to_value(image)?);
        crate::output::splice_info(&mut doc, resp.info);
        docs.push(Value::Object(doc));
    }
    crate::output::print_documents(docs, args.output)
}

pub async fn rmi(settings: &Settings, args: RmiArgs) -> anyhow::Result<()> {
    let mut client = settings.images().await?;
    let mut targets = args.images.clone();
    if args.all || args.prune {
        let images = client
            .list_images(cri::ListImagesRequest::default())
            .await
            .context("listing images")?
            .into_inner()
            .images;
        let used: std::collections::HashSet<String> = if args.prune {
            let mut runtime = settings.runtime().await?;
            match runtime
                .list_containers(cri::ListContainersRequest::default())
                .await
            {
                Ok(resp) => resp
                    .into_inner()
                    .containers
                    .into_iter()
                    .map(|c| c.image_ref)
                    .collect(),
                Err(e) => bail!("--prune needs the container list: {}", e.message()),
            }
        } else {
            Default::default()
        };
        targets.extend(
            images
                .into_iter()
                .map(|i| i.id)
                .filter(|id| !used.contains(id)),
        );
    }
    if targets.is_empty() {
        bail!("name at least one image, or use --all or --prune");
    }
    let mut failed = 0;
    for name in targets {
        let spec = Some(cri::ImageSpec {
            image: name.clone(),
            ..Default::default()
        });
        match client
            .remove_image(cri::RemoveImageRequest { image: spec })
            .await
        {
            Ok(_) => println!("Deleted: {name}"),
            Err(e) => {
                eprintln!("error removing image {name:?}: {}", e.message());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} image(s) not removed");
    }
    Ok(())
}

pub async fn imagefsinfo(settings: &Settings, args: FsInfoArgs) -> anyhow::Result<()> {
    let mut client = settings.images().await?;
    let resp = client
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .context("getting image filesystem info")?
        .into_inner();
    let format = if args.output == Format::Table {
        Format::Json
    } else {
        args.output
    };
    print_structured(&json!({ "status": resp }), format)
}

/// The first 13 hex digits, as crictl shows ids.
fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(13).collect()
}

fn split_tag(repo_tag: &str) -> (String, String) {
    match repo_tag.rfind(':') {
        Some(i) if !repo_tag[i..].contains('/') => {
            (repo_tag[..i].to_string(), repo_tag[i + 1..].to_string())
        }
        _ => (repo_tag.to_string(), "<none>".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_names() {
        assert_eq!(human_size(4_260_000), "4.26MB");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(
            split_tag("127.0.0.1:5000/a/b:v1"),
            ("127.0.0.1:5000/a/b".into(), "v1".into())
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/a"),
            ("127.0.0.1:5000/a".into(), "<none>".into())
        );
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789abc");
    }
}
