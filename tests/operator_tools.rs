//! What an operator runs before any pod: every binary's `--version`,
//! `criusd config check`, criusctl's shell completions. No daemon, no root.

use std::process::Command;

const BINARIES: [(&str, &str); 6] = [
    ("criusd", env!("CARGO_BIN_EXE_criusd")),
    ("criusctl", env!("CARGO_BIN_EXE_criusctl")),
    ("crius-shim", env!("CARGO_BIN_EXE_crius-shim")),
    ("crius-enter", env!("CARGO_BIN_EXE_crius-enter")),
    ("crius-pinns", env!("CARGO_BIN_EXE_crius-pinns")),
    ("crius-pause", env!("CARGO_BIN_EXE_crius-pause")),
];

/// (exit code, stdout, stderr)
fn run(program: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(program).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_binary_names_its_version_and_commit() {
    // The commit the checkout is at, when the tests run from one.
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string());
    if let Some(head) = &head {
        assert!(
            crius::GIT_REVISION.starts_with(head.as_str()),
            "built from {}, HEAD is {head}",
            crius::GIT_REVISION
        );
    }
    for (name, path) in BINARIES {
        let (code, out, err) = run(path, &["--version"]);
        assert_eq!(code, Some(0), "{name}: {err}");
        assert_eq!(
            out.trim(),
            format!(
                "{name} {} (git {})",
                env!("CARGO_PKG_VERSION"),
                crius::GIT_REVISION
            ),
            "{name}"
        );
    }
}

#[test]
fn the_exec_helper_refuses_to_run_without_criusd() {
    // Its instructions come only on a socket from criusd.
    let (code, _, err) = run(env!("CARGO_BIN_EXE_crius-enter"), &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("stdin is not criusd's socket"), "{err}");
    let (code, _, err) = run(env!("CARGO_BIN_EXE_crius-enter"), &["enter"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("usage"), "{err}");
}

#[test]
fn config_check_says_ok_or_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let check = |text: &str| {
        std::fs::write(&file, text).unwrap();
        run(
            env!("CARGO_BIN_EXE_criusd"),
            &["config", "check", file.to_str().unwrap()],
        )
    };

    let (code, out, err) = check("log_level = \"debug\"\n[network.builtin]\nmtu = 9000\n");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), format!("{}: ok", file.display()));

    for (text, expected) in [
        (
            "[image]\nplatfrom = \"linux/arm64\"\n",
            "unknown key `image.platfrom`",
        ),
        ("log_format = \"xml\"\n", "key `log_format`"),
        (
            "[network.builtin]\nmtu = 100\n",
            "key `network.builtin.mtu`",
        ),
        ("root = \"var/lib/crius\"\n", "key `root`"),
        ("listen = \n", "is not valid TOML"),
    ] {
        let (code, out, err) = check(text);
        assert_eq!(code, Some(1), "{text:?}: {out}{err}");
        assert!(out.is_empty(), "{text:?}: {out}");
        assert!(err.contains(expected), "{text:?}: {err}");
        assert!(
            err.contains(file.to_str().unwrap()),
            "names the file: {err}"
        );
    }

    let (code, _, err) = run(
        env!("CARGO_BIN_EXE_criusd"),
        &["config", "check", "/nonexistent/crius.toml"],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("/nonexistent/crius.toml"), "{err}");

    // The shipped default passes, and --config names the file to check.
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/config.toml");
    let (code, out, err) = run(
        env!("CARGO_BIN_EXE_criusd"),
        &["--config", shipped, "config", "check"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), format!("{shipped}: ok"));
}

#[test]
fn criusctl_completes_its_commands_in_bash_zsh_and_fish() {
    let criusctl = env!("CARGO_BIN_EXE_criusctl");
    // No runtime is needed, nor a readable crictl config.
    let script = |shell: &str| {
        let out = Command::new(criusctl)
            .args(["--config", "/nonexistent/crictl.yaml", "completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let zsh = script("zsh");
    assert!(zsh.starts_with("#compdef criusctl"), "{zsh}");
    assert!(zsh.contains("port-forward"), "zsh names the commands");
    let fish = script("fish");
    assert!(
        fish.lines()
            .any(|l| l.starts_with("complete -c criusctl") && l.contains("runp")),
        "{fish}"
    );

    // bash, run: "criusctl ru<TAB>" offers runp, and only commands starting so.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("criusctl.bash");
    std::fs::write(&file, script("bash")).unwrap();
    let probe = r#". "$1"; COMP_WORDS=(criusctl ru); COMP_CWORD=1; COMP_LINE="criusctl ru"; COMP_POINT=11
        _criusctl criusctl ru criusctl; echo "${COMPREPLY[*]}""#;
    let (code, out, err) = run("bash", &["-c", probe, "_", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let offered: Vec<&str> = out.split_whitespace().collect();
    assert!(offered.contains(&"runp"), "{out}");
    assert!(offered.iter().all(|w| w.starts_with("ru")), "{out}");

    let (code, _, err) = run(criusctl, &["completion", "tcsh"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("tcsh"), "{err}");
}
