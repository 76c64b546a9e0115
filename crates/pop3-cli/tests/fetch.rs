//! The `pop3` binary against the in-process test server: fetch to Maildir, mbox and an MDA,
//! keep/delete, only new mail, dry run, JSON, and crash safety under SIGKILL.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

fn run(mut cmd: impl std::borrow::BorrowMut<Command>) -> (i32, String) {
    let out = tokio::task::block_in_place(|| cmd.borrow_mut().output().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn maildir_messages(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else { continue };
        for e in entries {
            out.push(std::fs::read(e.unwrap().path()).unwrap());
        }
    }
    out.sort();
    out
}

fn messages(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            format!(
                "Subject: message {i}\r\nFrom: <s{i}@example.org>\r\n\r\n{}\r\n.dot line\r\n",
                "body ".repeat(i % 50)
            )
            .into_bytes()
        })
        .collect()
}

/// What `pop3` stores for messages served with CRLF: LF line ends, sorted.
fn stored(mail: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = mail
        .iter()
        .map(|m| String::from_utf8(m.clone()).unwrap().replace("\r\n", "\n").into_bytes())
        .collect();
    out.sort();
    out
}

async fn server(mail: Vec<Vec<u8>>) -> TestServer {
    TestServer::start(TestServerConfig::default(), mail).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_to_maildir_keep_then_only_new_then_delete() {
    let home = tempfile::tempdir().unwrap();
    let maildir = home.path().join("Mail");
    let to = format!("maildir:{}", maildir.display());
    let server = server(messages(5)).await;
    let expected = stored(&messages(5));

    let (code, out) =
        run(pop3(&server, home.path(), &["fetch", "--to", &to, "--json"]).arg("--keep"));
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["fetched"], 5);
    assert_eq!(maildir_messages(&maildir), expected);
    assert_eq!(server.messages().len(), 5, "kept");

    // Nothing new: exit 1, nothing delivered twice.
    let (code, _) = run(pop3(&server, home.path(), &["fetch", "--to", &to, "-q"]).arg("--keep"));
    assert_eq!(code, 1);
    assert_eq!(maildir_messages(&maildir).len(), 5);

    // A new delivery: only it is fetched.
    server.mailbox.lock().unwrap().add(b"Subject: late\r\n\r\nnew\r\n".to_vec());
    let (code, out) = run(pop3(&server, home.path(), &["check"]).arg("--json"));
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["new"], 1);
    let (code, out) =
        run(pop3(&server, home.path(), &["fetch", "--to", &to, "--dry-run", "--delete"]));
    assert_eq!(code, 0);
    assert!(out.contains("would fetch uid-6") && out.contains("would delete uid-1"), "{out}");
    assert_eq!(maildir_messages(&maildir).len(), 5, "dry run stores nothing");
    let (code, _) = run(pop3(&server, home.path(), &["fetch", "--to", &to, "--delete", "-q"]));
    assert_eq!(code, 0);
    assert_eq!(maildir_messages(&maildir).len(), 6);
    assert!(server.messages().is_empty(), "all stored, all deleted");

    // list shows From and Subject via TOP.
    server.mailbox.lock().unwrap().add(b"From: x@y\r\nSubject: listed\r\n\r\nb\r\n".to_vec());
    let (code, out) = run(pop3(&server, home.path(), &["list"]));
    assert_eq!(code, 0);
    assert!(out.contains("listed") && out.contains("x@y") && out.contains("[new]"), "{out}");
    // rebuild-state: recorded as fetched, nothing new any more.
    let (code, _) = run(pop3(&server, home.path(), &["rebuild-state"]));
    assert_eq!(code, 0);
    let (code, _) = run(pop3(&server, home.path(), &["fetch", "--to", &to, "-q"]));
    assert_eq!(code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_to_mbox_and_mda_and_keep_days() {
    let home = tempfile::tempdir().unwrap();
    let server = server(messages(3)).await;
    let mbox = home.path().join("mail/inbox.mbox");
    let (code, _) = run(pop3(
        &server,
        home.path(),
        &["fetch", "-q", "--to", &format!("mbox:{}", mbox.display())],
    ));
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&mbox).unwrap();
    assert_eq!(
        text.matches("\nSubject: message").count() + usize::from(text.starts_with("Subject")),
        3
    );
    // --all fetches again into an MDA, which writes each message to a numbered file.
    let out_dir = home.path().join("mda");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mda = format!("mda:cat > {}/$(date +%s%N)", out_dir.display());
    let (code, _) = run(pop3(&server, home.path(), &["fetch", "-q", "--all", "--to", &mda]));
    assert_eq!(code, 0);
    let mut got: Vec<Vec<u8>> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    got.sort();
    let expected = stored(&messages(3));
    assert_eq!(got, expected);
    // keep-days 0 deletes what was fetched; keep-days 30 would not.
    let to = format!("maildir:{}", home.path().join("M").display());
    let (code, _) =
        run(pop3(&server, home.path(), &["fetch", "-q", "--keep-days", "30", "--to", &to]));
    assert_eq!(code, 1);
    assert_eq!(server.messages().len(), 3);
    let (code, _) =
        run(pop3(&server, home.path(), &["fetch", "-q", "--keep-days", "0", "--to", &to]));
    assert_eq!(code, 1, "nothing new, but the old ones go");
    assert!(server.messages().is_empty());
}

/// Kills the fetcher with SIGKILL at random points of a 500-message fetch with --delete, runs
/// it again until it finishes, and checks that every message is in the Maildir exactly once.
/// Runs `pop3 fetch --delete --to TO` again and again, SIGKILLed after a random 2-42 ms, until
/// one run completes (or 200 runs), then once more without interruption if needed.
async fn fetch_under_sigkill(server: &TestServer, home: &Path, to: &str) {
    let mut seed: u64 =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            as u64
            | 1;
    eprintln!("crash test seed {seed}");
    let started = Instant::now();
    let mut kills = 0;
    let mut done = false;
    for _ in 0..200 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(2_000 + seed % 40_000);
        // Small batches, so that kills land between commits as well as inside them; PLAIN,
        // as SCRAM's key derivation in a debug build would take most of a short run.
        let args = ["fetch", "-q", "--delete", "--batch", "7", "--auth", "plain", "--to", to];
        let mut child =
            pop3(server, home, &args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + delay;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        match status {
            Some(status)
                if matches!(status.code(), Some(0) | Some(1)) && server.messages().is_empty() =>
            {
                done = true;
                break;
            }
            Some(_) => {}
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(240), "crash test too slow");
    }
    if !done {
        // Finish without interruption.
        let out = tokio::task::block_in_place(|| {
            pop3(server, home, &["fetch", "--json", "--delete", "--to", to]).output().unwrap()
        });
        let code = out.status.code().unwrap_or(-1);
        assert!(code == 0 || code == 1, "{code} {out:?}");
    }
    eprintln!("crash test: {kills} kills, {} s", started.elapsed().as_secs_f32());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_and_duplicates_nothing() {
    let home = tempfile::tempdir().unwrap();
    let maildir: PathBuf = home.path().join("Mail");
    let to = format!("maildir:{}", maildir.display());
    let mail = messages(500);
    let server = server(mail.clone()).await;
    fetch_under_sigkill(&server, home.path(), &to).await;
    assert!(server.messages().is_empty());
    let expected = stored(&mail);
    let got = maildir_messages(&maildir);
    assert_eq!(got.len(), expected.len(), "every message exactly once");
    assert_eq!(got, expected);
    assert_eq!(std::fs::read_dir(maildir.join("tmp")).unwrap().count(), 0, "no stray tmp files");
}

/// The same for an mbox: each batch is one announced append, and a run that died after the
/// append but before recording it finds it in the mbox instead of appending it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_an_mbox_fetch_loses_and_duplicates_nothing() {
    use pop3_storage::{Maildrop, Mbox};
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("mail/inbox");
    let to = format!("mbox:{}", path.display());
    let mail = messages(500);
    let server = server(mail.clone()).await;
    fetch_under_sigkill(&server, home.path(), &to).await;
    assert!(server.messages().is_empty());
    let mbox = Mbox::new(&path).open().unwrap();
    let mut got: Vec<Vec<u8>> = (0..mbox.messages().len())
        .map(|i| {
            let mut m = Vec::new();
            std::io::Read::read_to_end(&mut mbox.read_message(i).unwrap(), &mut m).unwrap();
            m
        })
        .collect();
    got.sort();
    let expected = stored(&mail);
    assert_eq!(got.len(), expected.len(), "every message exactly once");
    assert_eq!(got, expected);
}

/// A server that gives one UIDL to two messages (RFC 1939 section 7 forbids it): neither of
/// them is fetched or deleted, since the state could not tell which one it recorded; the
/// others are fetched and deleted as usual, and the run reports the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uidl_shared_by_two_messages_is_neither_fetched_nor_deleted() {
    let home = tempfile::tempdir().unwrap();
    let maildir = home.path().join("Mail");
    let to = format!("maildir:{}", maildir.display());
    let mail = messages(4);
    let server = server(mail.clone()).await;
    {
        let mut mailbox = server.mailbox.lock().unwrap();
        let shared = mailbox.messages[1].0.clone();
        mailbox.messages[2].0 = shared;
    }
    let (code, out) =
        run(pop3(&server, home.path(), &["fetch", "--to", &to, "--json"]).arg("--delete"));
    assert_eq!(code, 4, "an error is reported: {out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["fetched"], 2, "{out}");
    assert_eq!(report["deleted"], 2, "{out}");
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{out}");
    assert!(errors.iter().all(|e| e.as_str().unwrap().contains("UIDL")), "{out}");
    assert_eq!(maildir_messages(&maildir), stored(&[mail[0].clone(), mail[3].clone()]));
    let left: Vec<Vec<u8>> = server.messages().into_iter().map(|m| m.1).collect();
    assert_eq!(left, vec![mail[1].clone(), mail[2].clone()], "both stay on the server");
}

/// Under a low open-file limit a Maildir batch is sealed before its open files would exhaust
/// the descriptors (here 150 descriptors: at most 8 files per batch, as many again in the
/// batch being committed), and every message arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_open_file_limit_makes_smaller_batches_and_loses_nothing() {
    let home = tempfile::tempdir().unwrap();
    let maildir = home.path().join("Mail");
    let to = format!("maildir:{}", maildir.display());
    let server = server(messages(200)).await;
    let direct = pop3(&server, home.path(), &["fetch", "--to", &to, "--json", "--keep"]);
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg("ulimit -n 150 && exec \"$0\" \"$@\"").arg(direct.get_program());
    cmd.args(direct.get_args()).stdin(Stdio::null());
    for (key, value) in direct.get_envs() {
        cmd.env(key, value.unwrap());
    }
    let (code, out) = run(cmd);
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["fetched"], 200, "{out}");
    assert_eq!(maildir_messages(&maildir), stored(&messages(200)));
}

/// A message skipped by `--max-size` is not new mail: the run that skips it, and every later
/// one, exits 1 (nothing new) and counts it as skipped, not as new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_skipped_by_max_size_is_not_new_mail() {
    let home = tempfile::tempdir().unwrap();
    let to = format!("maildir:{}", home.path().join("Mail").display());
    let mut mail = messages(2);
    mail.push(format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(5000)).into_bytes());
    let server = server(mail).await;
    let fetch = ["fetch", "--json", "--max-size", "1000", "--to", &to];
    let (code, out) = run(pop3(&server, home.path(), &fetch));
    assert_eq!(code, 0, "two small ones fetched: {out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((report["new"].as_u64(), report["fetched"].as_u64()), (Some(2), Some(2)), "{out}");
    assert_eq!(report["skipped_too_large"], 1, "{out}");
    for _ in 0..2 {
        let (code, out) = run(pop3(&server, home.path(), &fetch));
        assert_eq!(code, 1, "only the skipped one is left: nothing new: {out}");
        let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(
            (report["new"].as_u64(), report["skipped_too_large"].as_u64()),
            (Some(0), Some(1))
        );
    }
    // Without the limit it is new, and fetched.
    let (code, out) = run(pop3(&server, home.path(), &["fetch", "--json", "--to", &to]));
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((report["new"].as_u64(), report["fetched"].as_u64()), (Some(1), Some(1)), "{out}");
}

/// `cmd` run by a shell that sets `umask` first.
fn with_umask(umask: &str, direct: &Command) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!("umask {umask} && exec \"$0\" \"$@\"")).arg(direct.get_program());
    cmd.args(direct.get_args()).stdin(Stdio::null());
    for (key, value) in direct.get_envs() {
        cmd.env(key, value.unwrap());
    }
    cmd
}

/// Fetched mail is private under the usual umask 022: the Maildir's directories 0700, its
/// message files 0600 (the server side's modes); `--use-umask` gives 0755 and 0644.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_mail_is_private_unless_the_umask_is_asked_for() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let home = tempfile::tempdir().unwrap();
    let server = server(messages(3)).await;
    for (extra, dirs, files) in [(None, 0o700, 0o600), (Some("--use-umask"), 0o755, 0o644)] {
        let maildir = home.path().join(format!("Mail{}", extra.unwrap_or("")));
        let to = format!("maildir:{}", maildir.display());
        let mut direct = pop3(&server, home.path(), &["fetch", "-q", "--all", "--to", &to]);
        direct.args(extra);
        let (code, out) = run(with_umask("022", &direct));
        assert_eq!(code, 0, "{out}");
        for sub in ["", "tmp", "new", "cur"] {
            assert_eq!(mode(&maildir.join(sub)), dirs, "{extra:?} {sub}/");
        }
        let new: Vec<PathBuf> =
            std::fs::read_dir(maildir.join("new")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(new.len(), 3);
        for file in new {
            assert_eq!(mode(&file), files, "{extra:?} {}", file.display());
        }
    }
}

/// mbox output is mboxrd: `From ` and `>From ` lines are stored with one more `>`, and the
/// mbox read back (with pop3-storage, as pop3d serves it) gives every message as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbox_output_is_mboxrd_and_reads_back_unchanged() {
    use pop3_storage::{Maildrop, Mbox};
    let home = tempfile::tempdir().unwrap();
    let mail = vec![
        b"Subject: quoting\r\n\r\nFrom x\r\n>From quoted\r\n>>From twice\r\n>Fro\r\n".to_vec(),
        b">From a first line\r\n\r\nbody\r\n".to_vec(),
    ];
    let server = server(mail.clone()).await;
    let path = home.path().join("inbox");
    let to = format!("mbox:{}", path.display());
    let (code, out) = run(pop3(&server, home.path(), &["fetch", "-q", "--to", &to]));
    assert_eq!(code, 0, "{out}");
    let raw = std::fs::read_to_string(&path).unwrap();
    for line in
        ["\n>From x\n", "\n>>From quoted\n", "\n>>>From twice\n", "\n>Fro\n", "\n>>From a first"]
    {
        assert!(raw.contains(line), "{line:?} not in {raw}");
    }
    let mbox = Mbox::new(&path).open().unwrap();
    let got: Vec<Vec<u8>> = (0..mbox.messages().len())
        .map(|i| {
            let mut m = Vec::new();
            std::io::Read::read_to_end(&mut mbox.read_message(i).unwrap(), &mut m).unwrap();
            m
        })
        .collect();
    let mut got = got;
    got.sort();
    assert_eq!(got, stored(&mail), "the round trip gives the messages back");
}
