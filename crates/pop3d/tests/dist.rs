//! The files shipped in `dist/`: the systemd unit passes `systemd-analyze verify` (Debian's
//! `systemd` package; a loud SKIPPED line without it, a failure under CI=true) and is the one
//! the operator guide shows.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn unit() -> String {
    std::fs::read_to_string(repo().join("dist/systemd/pop3d.service")).unwrap()
}

/// What `systemd-analyze verify` says about `text` as `pop3d.service`: its complaints about
/// the unit (it also reports unknown keys and bad values, with exit status 0).
fn verify(text: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    // verify refuses a unit whose ExecStart program is missing: use the one just built.
    let text = text.replace("/usr/local/bin/pop3d", common::BIN);
    let path = dir.path().join("pop3d.service");
    std::fs::write(&path, text).unwrap();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&path).output();
    let out = out.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr.lines().filter(|l| l.contains("pop3d.service")).collect();
    if out.status.success() && complaints.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {}", out.status, complaints.join("\n")))
    }
}

#[test]
fn systemd_unit_verifies() {
    if !common::peer("systemd-analyze", "systemd") {
        return;
    }
    let unit = unit();
    assert!(unit.contains("ExecStart=/usr/local/bin/pop3d --config /etc/pop3d/pop3d.toml serve"));
    verify(&unit).unwrap();
    // The check has teeth: a misspelt key and a bad value are caught.
    let bad = unit.replace("ProtectHome=yes", "ProtectHome=maybe\nProtectHomes=yes");
    let err = verify(&bad).unwrap_err();
    assert!(err.contains("ProtectHomes") && err.contains("protect home"), "{err}");
}

#[test]
fn the_operator_guide_shows_the_shipped_unit() {
    let guide = std::fs::read_to_string(repo().join("docs/operator-guide.md")).unwrap();
    assert!(
        guide.contains(&unit()),
        "docs/operator-guide.md must quote dist/systemd/pop3d.service"
    );
}
