//! Filters before download (`--filter`, `filter =`) against the in-process test server: a
//! real shell filter reads each header and decides by exit code to fetch, skip, delete
//! without downloading, or fail (exit 3, or hanging past the timeout: killed); `--max-size`
//! applies first, so an oversized message never reaches the filter; SIGINT while filtering
//! leaves the messages for the next run.

use std::path::Path;
use std::process::{Command, Stdio};

use pop3_testkit::server::{TestServer, TestServerConfig};

fn pop3(server: &TestServer, home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pop3"));
    cmd.args(args)
        .arg(format!("pop3://alice@127.0.0.1:{}", server.addr().port()))
        .arg("--no-tls")
        .env("POP3_PASSWORD", "secret")
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> (i32, serde_json::Value, String) {
    let out = tokio::task::block_in_place(|| cmd.output().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr)
}

fn subjects(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else { continue };
        for e in entries {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            out.push(text.lines().next().unwrap().to_owned());
        }
    }
    out.sort();
    out
}

/// A filter deciding by Subject, logging every message it is asked about.
fn filter(log: &Path) -> String {
    format!(
        r#"echo "$POP3_FILTER_UIDL $POP3_FILTER_SIZE" >> {log}
        subject=$(grep '^Subject:')
        case "$subject" in
          *spam*) exit 1 ;;
          *later*) exit 2 ;;
          *broken*) exit 3 ;;
          *hang*) sleep 60 ;;
        esac
        exit 0"#,
        log = log.display()
    )
}

fn mail() -> Vec<Vec<u8>> {
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(5000));
    ["ok one", "spam offer", "later please", "broken", "hang", "ok two"]
        .iter()
        .map(|s| format!("Subject: {s}\r\nFrom: a@example.org\r\n\r\nbody\r\n").into_bytes())
        .chain([big.into_bytes()])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_fetches_skips_deletes_and_fails_per_message_after_max_size() {
    let home = tempfile::tempdir().unwrap();
    let (maildir, log) = (home.path().join("Mail"), home.path().join("filter.log"));
    let to = format!("maildir:{}", maildir.display());
    let server = TestServer::start(TestServerConfig::default(), mail()).await.unwrap();
    let filter = filter(&log);
    let args = ["fetch", "--json", "--to", &to, "--max-size", "1000", "--timeout", "2"];

    // Under --keep an exit 1 only skips: nothing is deleted.
    let started = std::time::Instant::now();
    let (code, report, stderr) = run(pop3(&server, home.path(), &args).args(["--filter", &filter]));
    assert_eq!(code, 4, "messages failed on the only account: {report} {stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the hanging filter was killed"
    );
    assert_eq!(subjects(&maildir), ["Subject: ok one", "Subject: ok two"]);
    assert_eq!(report["fetched"], 2);
    assert_eq!(report["skipped_by_filter"], 2, "{report}");
    assert_eq!(report["skipped_too_large"], 1);
    assert_eq!(report["deleted"], 0);
    let errors = report["errors"].to_string();
    assert!(errors.contains("uid-4") && errors.contains("exit status: 3"), "{errors}");
    assert!(errors.contains("uid-5") && errors.contains("timed out"), "{errors}");
    assert_eq!(server.messages().len(), 7);
    // Size first: the filter never saw the 5 kB message; it got each size and UIDL.
    let asked = std::fs::read_to_string(&log).unwrap();
    assert!(!asked.contains("uid-7"), "{asked}");
    let size = server.messages()[0].1.len();
    assert!(asked.lines().any(|l| l == format!("uid-1 {size}")), "{asked}");

    // With --delete: exit 1 deletes the spam without downloading it; the skipped, failed
    // and oversized messages stay, the fetched ones (now and before) go.
    std::fs::remove_file(&log).unwrap();
    let (code, report, stderr) =
        run(pop3(&server, home.path(), &args).args(["--delete", "--filter", &filter]));
    assert_eq!(code, 4, "{report} {stderr}");
    assert_eq!(report["fetched"], 0);
    assert_eq!(report["deleted_by_filter"], 1, "{report}");
    assert_eq!(report["deleted"], 3, "{report}");
    assert_eq!(subjects(&maildir), ["Subject: ok one", "Subject: ok two"], "spam not downloaded");
    let left: Vec<String> = server.messages().into_iter().map(|(uid, _)| uid).collect();
    assert_eq!(left, ["uid-3", "uid-4", "uid-5", "uid-7"]);
    // Filter-skipped messages are not new mail: a run with only those exits 1 (nothing new).
    let skip = "exit 2";
    let (code, report, _) =
        run(pop3(&server, home.path(), &args).args(["--delete", "--filter", skip]));
    assert_eq!((code, &report["new"], &report["skipped_by_filter"]), (1, &0.into(), &3.into()));
}

/// `filter` in the config file, and --dry-run: the filter runs, nothing is changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_from_the_config_file_with_dry_run() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(TestServerConfig::default(), mail()).await.unwrap();
    let maildir = home.path().join("Mail");
    let config = format!(
        "[accounts.a]\nurl = \"pop3://alice@127.0.0.1:{}\"\nno_tls = true\nto = \"maildir:{}\"\n\
         policy = \"delete\"\nmax_size = 1000\nfilter = \"grep -q '^Subject: spam' && exit 1; exit 2\"\n",
        server.addr().port(),
        maildir.display()
    );
    let dir = home.path().join("config").join("pop3");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pop3"));
    cmd.args(["fetch", "a", "--dry-run"])
        .env("POP3_PASSWORD", "secret")
        .env("XDG_STATE_HOME", home.path().join("state"))
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .stdin(Stdio::null());
    let out = tokio::task::block_in_place(|| cmd.output().unwrap());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim(), "would delete uid-2", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(server.messages().len(), 7);
    assert!(!maildir.join("new").exists() || subjects(&maildir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_while_filtering_leaves_the_rest_on_the_server_for_the_next_run() {
    use rustix::process::{kill_process, Pid, Signal};
    let count = 40;
    let mail: Vec<Vec<u8>> =
        (0..count).map(|i| format!("Subject: m{i:02}\r\n\r\nbody\r\n").into_bytes()).collect();
    let server = TestServer::start(TestServerConfig::default(), mail).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let (maildir, log) = (home.path().join("Mail"), home.path().join("filtered"));
    let to = format!("maildir:{}", maildir.display());
    let slow = format!("echo x >> {}; sleep 0.05", log.display());
    let args = ["fetch", "--json", "--delete", "--to", &to, "--filter", &slow];
    let child = pop3(&server, home.path(), &args).stdout(Stdio::piped()).spawn().unwrap();
    let lines = || std::fs::read_to_string(&log).map_or(0, |l| l.lines().count());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while lines() < 3 {
        assert!(std::time::Instant::now() < deadline, "the filter never ran");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    kill_process(Pid::from_child(&child), Signal::INT).unwrap();
    let out = tokio::task::block_in_place(|| child.wait_with_output().unwrap());
    assert_eq!(out.status.code(), Some(130));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Screening stopped: nothing downloaded or deleted, every message left for the next run.
    assert!(lines() < count, "the filter ran on every message");
    assert_eq!(report["fetched"], 0, "{report}");
    assert_eq!(report["deleted"], 0, "{report}");
    assert_eq!(report["left_by_stop"], count, "{report}");
    assert_eq!(server.messages().len(), count);
    let (code, report, stderr) = run(&mut pop3(&server, home.path(), &args));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["fetched"], count, "{report}");
    assert_eq!(subjects(&maildir).len(), count);
    assert!(server.messages().is_empty());
}
