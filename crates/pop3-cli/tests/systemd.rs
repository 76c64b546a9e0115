//! The systemd user units shipped in `dist/systemd/user/` (the daemon-mode service, and
//! the run-once service with its timer) pass `systemd-analyze verify` (Debian's `systemd`
//! package; a loud SKIPPED line without it, a failure under CI=true), and say what the
//! retriever does: `--daemon` with a reload by SIGHUP, exit 1 ("nothing new") as a success.

use std::path::Path;
use std::process::Command;

const UNITS: [&str; 3] = ["pop3-fetch.service", "pop3-fetch-once.service", "pop3-fetch-once.timer"];

fn unit(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/systemd/user").join(name);
    std::fs::read_to_string(path).unwrap()
}

fn systemd_analyze() -> bool {
    let found = Command::new("systemd-analyze").arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "systemd-analyze is missing (apt-get install systemd) and CI=true"
        );
        eprintln!(
            "SKIPPED: systemd-analyze not found (apt-get install systemd); units NOT verified"
        );
    }
    found
}

/// `systemd-analyze verify` of the units, `edit`ed, with the pop3 just built as their program:
/// its complaints about them (it reports unknown keys and bad values with exit status 0).
fn verify(edit: impl Fn(&str, String) -> String) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for name in UNITS {
        // verify refuses a unit whose program is missing: use the one just built.
        let text =
            edit(name, unit(name)).replace("/usr/local/bin/pop3", env!("CARGO_BIN_EXE_pop3"));
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    let out =
        Command::new("systemd-analyze").args(["verify", "--man=no"]).args(&paths).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> =
        stderr.lines().filter(|l| UNITS.iter().any(|u| l.contains(u))).collect();
    if out.status.success() && complaints.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {}", out.status, complaints.join("\n")))
    }
}

#[test]
fn user_units_verify_and_run_the_retriever_as_documented() {
    let daemon = unit("pop3-fetch.service");
    assert!(daemon.contains("ExecStart=/usr/local/bin/pop3 fetch --daemon\n"));
    assert!(daemon.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    let once = unit("pop3-fetch-once.service");
    assert!(once.contains("ExecStart=/usr/local/bin/pop3 fetch --quiet\n"));
    assert!(once.contains("SuccessExitStatus=1\n"));
    assert!(unit("pop3-fetch-once.timer").contains("OnUnitActiveSec=5min"));
    if !systemd_analyze() {
        return;
    }
    verify(|_, text| text).unwrap();
    // The check has teeth: a misspelt key and a bad value are caught.
    let err = verify(|name, text| {
        if name == "pop3-fetch-once.timer" {
            text.replace("OnUnitActiveSec=5min", "OnUnitActiveSec=often\nOnUnitActiveSecs=5min")
        } else {
            text
        }
    })
    .unwrap_err();
    assert!(err.contains("OnUnitActiveSecs") && err.contains("often"), "{err}");
}
