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

fn dist(name: &str) -> String {
    std::fs::read_to_string(repo().join("dist/systemd").join(name)).unwrap()
}

#[test]
fn socket_units_and_the_drop_in_verify_with_the_service() {
    if !common::peer("systemd-analyze", "systemd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pop3d.service"),
        unit().replace("/usr/local/bin/pop3d", common::BIN),
    )
    .unwrap();
    let sockets = ["pop3d.socket", "pop3d-tls.socket", "pop3d-lmtp.socket"];
    for name in sockets {
        std::fs::write(dir.path().join(name), dist(name)).unwrap();
    }
    let drop_in = dir.path().join("pop3d.service.d");
    std::fs::create_dir(&drop_in).unwrap();
    std::fs::write(drop_in.join("socket-activation.conf"), dist("socket-activation.conf")).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(sockets.map(|s| dir.path().join(s)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr.lines().filter(|l| l.contains("pop3d")).collect();
    assert!(out.status.success() && complaints.is_empty(), "{}", complaints.join("\n"));
    // Each socket carries the name pop3d knows it by.
    for (socket, name) in sockets.iter().zip(["pop3", "pop3s", "lmtp"]) {
        assert!(dist(socket).contains(&format!("\nFileDescriptorName={name}\n")), "{socket}");
    }
    assert!(unit().contains("\nType=notify\n") && unit().contains("\nWatchdogSec="));
}

/// `systemd-analyze security`'s overall exposure for `text` as pop3d.service, and its rating.
fn exposure(text: &str) -> (f64, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pop3d.service");
    std::fs::write(&path, text).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for pop3d.service:"))
        .unwrap_or_else(|| panic!("no overall exposure: {stdout}"));
    let mut words = line.rsplit(": ").next().unwrap().split_whitespace();
    (words.next().unwrap().parse().unwrap(), words.next().unwrap().to_owned())
}

#[test]
fn the_service_is_hardened() {
    if !common::peer("systemd-analyze", "systemd") {
        return;
    }
    let (level, rating) = exposure(&unit());
    // 2.5 "OK" (docs/operator-guide.md, "systemd", says what keeps it above 2.0).
    assert!(level <= 2.5 && ["SAFE", "OK"].contains(&rating.as_str()), "{level} {rating}");
    // The check has teeth: without the capability bound the exposure grows.
    let loose: String = unit()
        .lines()
        .filter(|l| !l.starts_with("CapabilityBoundingSet="))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(exposure(&loose).0 > level);
}
