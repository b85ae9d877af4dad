//! Compiles proto/api.proto (CRI runtime.v1) with a vendored protoc, so a fresh
//! machine builds with cargo alone, and sets `CRIUS_GIT_REVISION` for every
//! binary's `--version` (see `git_revision`).
//!
//! Generated types derive serde with the proto field names, which are the keys
//! crictl's JSON/YAML pod and container configs use. A first protoc pass yields
//! the descriptors, from which each field gets what serde needs: a rename for the
//! few fields whose proto names are not snake_case, and int-or-name parsing for
//! enum fields (crictl files carry enums as numbers; names are friendlier).

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use std::path::PathBuf;

const PROTO: &str = "proto/api.proto";
const NRI_PROTO: &str = "proto/nri.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    println!("cargo:rustc-env=CRIUS_GIT_REVISION={}", git_revision());
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);

    let descriptor_path = out.join("cri_descriptor.bin");
    let status = std::process::Command::new(&protoc)
        .args(["--include_imports", "-I", "proto", "-o"])
        .arg(&descriptor_path)
        .arg(PROTO)
        .status()?;
    if !status.success() {
        return Err(format!("protoc failed on {PROTO}").into());
    }
    let set = FileDescriptorSet::decode(std::fs::read(&descriptor_path)?.as_slice())?;

    let mut builder = tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .message_attribute(".", "#[serde(default)]");
    for file in &set.file {
        let package = file.package();
        for message in &file.message_type {
            builder = annotate_fields(builder, &format!(".{package}"), message);
        }
    }

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    builder.compile_with_config(config, &[PROTO], &["proto"])?;
    nri_codegen(&out)?;
    Ok(())
}

/// NRI's wire definition (`proto/nri.proto`) as rust-protobuf messages and
/// async ttrpc stubs (`crius::nri::api`), the types the `ttrpc` crate speaks.
/// Both come from a pure-Rust parser, so no protoc is involved.
fn nri_codegen(out: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={NRI_PROTO}");
    let dir = out.join("nri");
    std::fs::create_dir_all(&dir)?;
    ttrpc_codegen::Codegen::new()
        .out_dir(&dir)
        .inputs([NRI_PROTO])
        .include("proto")
        .rust_protobuf()
        .customize(ttrpc_codegen::Customize {
            async_all: true,
            ..Default::default()
        })
        .rust_protobuf_customize(ttrpc_codegen::ProtobufCustomize::default().gen_mod_rs(false))
        .run()?;
    std::fs::write(dir.join("mod.rs"), "pub mod nri;\npub mod nri_ttrpc;\n")?;
    Ok(())
}

/// The checkout's short commit, with "-dirty" when the sources built (the
/// `SOURCES`, this script, the proto) differ from it; `$CRIUS_GIT_REVISION`
/// when set (a build from a source tarball), else "unknown" outside a git
/// checkout.
///
/// The script reruns when HEAD moves (a commit, a checkout) or the sources
/// change (which may make the tree dirty), and not on every build: once any
/// rerun-if line is printed, cargo watches only what these lines name.
fn git_revision() -> String {
    println!("cargo:rerun-if-env-changed=CRIUS_GIT_REVISION");
    if let Ok(revision) = std::env::var("CRIUS_GIT_REVISION") {
        return revision;
    }
    const SOURCES: [&str; 5] = ["src", "shim/src", "Cargo.toml", "Cargo.lock", "manifests"];
    for source in SOURCES {
        println!("cargo:rerun-if-changed={source}");
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".to_string();
    };
    // What moves when this checkout's commit changes: HEAD itself (a
    // detached checkout), its reflog (every commit, checkout or reset here)
    // and the branch's loose ref. --git-path finds them in a linked worktree
    // too. Only existing files: cargo reruns on every build for a missing one
    // (packed-refs often is), and other worktrees' refs are left unwatched.
    let mut watched = vec!["HEAD".to_string(), "logs/HEAD".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            && std::path::Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let mut status = vec![
        "--no-optional-locks",
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        "build.rs",
        PROTO,
    ];
    status.extend(SOURCES);
    let dirty = git(&status).is_some_and(|changes| !changes.is_empty());
    if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    }
}

fn annotate_fields(
    mut builder: tonic_prost_build::Builder,
    scope: &str,
    message: &DescriptorProto,
) -> tonic_prost_build::Builder {
    let path = format!("{scope}.{}", message.name());
    for field in &message.field {
        let name = field.name();
        let field_path = format!("{path}.{name}");
        let mut attrs = Vec::new();
        if name != name.to_lowercase() {
            // prost snake-cases these names; keep the proto spelling on the wire.
            attrs.push(format!("rename = \"{name}\", alias = \"{}\"", snake(name)));
        }
        if field.r#type() == Type::Enum {
            let helper = if field.label() == Label::Repeated {
                "enum_values"
            } else {
                "enum_value"
            };
            let rust_type = rust_enum_path(field.type_name());
            attrs.push(format!(
                "deserialize_with = \"crate::cri::serde_enum::{helper}::<_, {rust_type}>\""
            ));
        }
        if !attrs.is_empty() {
            builder =
                builder.field_attribute(&field_path, format!("#[serde({})]", attrs.join(", ")));
        }
    }
    for nested in &message.nested_type {
        builder = annotate_fields(builder, &path, nested);
    }
    builder
}

/// `.runtime.v1.SecurityProfile.ProfileType` -> `crate::cri::security_profile::ProfileType`.
fn rust_enum_path(type_name: &str) -> String {
    let parts: Vec<&str> = type_name
        .trim_start_matches(".runtime.v1.")
        .split('.')
        .collect();
    let (last, scopes) = parts.split_last().expect("enum type name");
    let mut path = String::from("crate::cri::");
    for scope in scopes {
        path.push_str(&snake(scope));
        path.push_str("::");
    }
    path.push_str(last);
    path
}

fn snake(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    out
}
