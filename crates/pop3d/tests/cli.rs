//! The `pop3d` binary: zero-config data dir, user management, delivery exit codes,
//! check-config errors, serving and graceful SIGTERM (on both the Maildir and the PostgreSQL
//! store).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{on_both_stores, run, Daemon, Store};

#[test]
fn fresh_data_dir_users_and_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let out = run(&["user", "add", "carol", "--password-stdin"], &data, b"pw one\n");
    common::output_ok(&out, "user add");
    for file in
        ["pop3d.toml", "users", "tls/cert.pem", "tls/key.pem", "mail/carol/new", "mail/carol/tmp"]
    {
        assert!(data.join(file).exists(), "{file}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("tls/key.pem")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the key is private");
    let out = run(&["user", "add", "dave"], &data, b"");
    common::output_ok(&out, "user add with a generated password");
    assert!(String::from_utf8_lossy(&out.stdout).contains("generated password: "));
    assert!(!run(&["user", "add", "carol"], &data, b"").status.success(), "duplicate");
    assert!(!run(&["user", "add", "../x"], &data, b"").status.success(), "bad name");
    let list = run(&["user", "list"], &data, b"");
    assert_eq!(String::from_utf8_lossy(&list.stdout), "carol\tARGON2ID\ndave\tARGON2ID\n");
    common::output_ok(
        &run(&["user", "passwd", "carol", "--password-stdin"], &data, b"pw two\n"),
        "passwd",
    );
    common::output_ok(&run(&["user", "del", "dave"], &data, b""), "del");
    assert_eq!(run(&["user", "del", "dave"], &data, b"").status.code(), Some(67));

    let delivered = run(&["deliver", "carol"], &data, b"Subject: x\n\nbody\n");
    assert_eq!(delivered.status.code(), Some(0));
    assert_eq!(run(&["deliver", "nobody"], &data, b"x\n").status.code(), Some(67), "EX_NOUSER");
    let new: Vec<_> = std::fs::read_dir(data.join("mail/carol/new")).unwrap().collect();
    assert_eq!(new.len(), 1);

    let check = run(&["check-config"], &data, b"");
    common::output_ok(&check, "check-config");
    assert!(String::from_utf8_lossy(&check.stdout).contains("OK (1 users)"));
    // A bad setting: the error names the file, the line and the key.
    let config = data.join("pop3d.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("max_bad_commands = 20", "max_bad_commands = \"many\""))
        .unwrap();
    let bad = run(&["check-config"], &data, b"");
    assert_eq!(bad.status.code(), Some(78), "EX_CONFIG");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("pop3d.toml") && err.contains("line ") && err.contains("max_bad_commands"),
        "{err}"
    );
    // A temporary failure for delivery: the MTA must requeue (75), not bounce.
    assert_eq!(run(&["deliver", "carol"], &data, b"x\n").status.code(), Some(75));
}

/// sysexits(3) for an MTA: permanent failures bounce (64, 65, 67, 73, 77), temporary ones
/// are retried (75), and nothing is stored for a refused message.
#[test]
fn deliver_exit_codes_tell_bounce_from_retry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    common::output_ok(&run(&["user", "add", "carol", "--password-stdin"], &data, b"x\n"), "add");
    let new = data.join("mail/carol/new");
    let count = |dir: &std::path::Path| std::fs::read_dir(dir).map_or(0, |d| d.count());

    let empty = run(&["deliver", "carol"], &data, b"");
    assert_eq!(empty.status.code(), Some(65), "EX_DATAERR for an empty message");
    assert!(String::from_utf8_lossy(&empty.stderr).contains("empty message"));
    assert_eq!(count(&new), 0, "nothing stored");
    assert_eq!(run(&["deliver", "nosuchuser"], &data, b"x\n").status.code(), Some(67));
    assert_eq!(run(&["deliver"], &data, b"x\n").status.code(), Some(64), "EX_USAGE");
    assert_eq!(run(&["deliver", "carol", "--bogus"], &data, b"x\n").status.code(), Some(64));
    assert_eq!(run(&["deliver", "carol"], &data, b"x\n").status.code(), Some(0));
    assert_eq!(count(&new), 1);

    // Under location = "%h/Maildir": a user without a home has no maildrop (permanent, not
    // a retry forever), and a home that is a file cannot hold one (73).
    let users = data.join("users");
    let mut text = std::fs::read_to_string(&users).unwrap();
    text.push_str("homeless:{PLAIN}x::::::\n");
    text.push_str(&format!("filehome:{{PLAIN}}x::::{}::\n", users.display()));
    std::fs::write(&users, text).unwrap();
    let config = data.join("pop3d.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("location = \"mail/%u\"", "location = \"%h/Maildir\""))
        .unwrap();
    let homeless = run(&["deliver", "homeless"], &data, b"x\n");
    assert_eq!(homeless.status.code(), Some(67), "{}", String::from_utf8_lossy(&homeless.stderr));
    assert!(String::from_utf8_lossy(&homeless.stderr).contains("no home directory"));
    let filehome = run(&["deliver", "filehome"], &data, b"x\n");
    assert_eq!(filehome.status.code(), Some(73), "{}", String::from_utf8_lossy(&filehome.stderr));
}

/// `deliver alice bob` (Postfix with several recipients per delivery): each one gets the
/// same bytes (in wire form), the exit status is the worst, and the spool leaves nothing in $TMPDIR.
#[test]
fn deliver_to_several_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    for name in ["carol", "dave"] {
        common::output_ok(&run(&["user", "add", name, "--password-stdin"], &data, b"x\n"), "add");
    }
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let deliver = |args: &[&str], message: &[u8]| {
        let mut child = std::process::Command::new(common::BIN)
            .arg("--data-dir")
            .arg(&data)
            .arg("deliver")
            .args(args)
            .env("TMPDIR", &tmp)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(message).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let stored = |name: &str| -> Vec<Vec<u8>> {
        let new = data.join("mail").join(name).join("new");
        let mut files: Vec<_> =
            std::fs::read_dir(new).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort_by_key(|p| common::delivery_order(p.file_name().unwrap().to_str().unwrap()));
        files.iter().map(|p| std::fs::read(p).unwrap()).collect()
    };
    // Larger than the first chunk read before spooling.
    let big = common::messages().concat().repeat(2);
    assert!(big.len() > 300_000);
    assert_eq!(deliver(&["carol", "dave"], &big).0, Some(0));
    // Stored in wire form: CRLF line ends (docs/storage.md).
    let wire = pop3_testkit::transmitted(&big);
    assert_eq!(stored("carol"), vec![wire.clone()]);
    assert_eq!(stored("dave"), vec![wire]);

    let (code, err) = deliver(&["carol", "nosuchuser", "dave"], b"Subject: two\n\nx\n");
    assert_eq!(code, Some(67), "the worst status: {err}");
    assert!(err.contains("nosuchuser"), "{err}");
    assert_eq!(stored("carol").len(), 2, "the known recipients still get it");
    assert_eq!(stored("dave").len(), 2);

    let (code, err) = deliver(&["carol", "dave"], b"");
    assert_eq!(code, Some(65), "{err}");
    assert_eq!(err.matches("empty message").count(), 1, "said once: {err}");
    assert_eq!(stored("carol").len(), 2);
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "no spool file left behind");
}

/// `check-config` on a data dir that does not exist yet reports the defaults it will get
/// and creates nothing.
#[test]
fn check_config_before_the_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("not-yet");
    let out = run(&["check-config"], &data, b"");
    common::output_ok(&out, "check-config on a missing data dir");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("does not exist yet"), "{stdout}");
    assert!(stdout.contains("listen_tls = [\"127.0.0.1:1995\"]"), "{stdout}");
    assert!(!data.exists(), "check-config creates nothing");
    // An explicit --config that is missing is an error that names it.
    let missing = dir.path().join("missing.toml");
    let out = std::process::Command::new(common::BIN)
        .arg("--config")
        .arg(&missing)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

/// No `[tls]` means no TLS: a plain-only server needs no certificate, and the checks the
/// guide promises (listen_tls without a certificate, cert without key) do fire.
#[test]
fn plain_only_server_without_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pop3d.toml");
    std::fs::write(dir.path().join("users"), "alice:{PLAIN}secret\n").unwrap();
    let check = |text: &str| {
        std::fs::write(&config, text).unwrap();
        std::process::Command::new(common::BIN)
            .arg("--config")
            .arg(&config)
            .arg("check-config")
            .output()
            .unwrap()
    };
    let out = check("[server]\nlisten_tls = [\"127.0.0.1:1995\"]\n");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen_tls needs [tls] cert and key"), "{err}");
    let out = check("[tls]\ncert = \"cert.pem\"\n");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("set both cert and key"));
    let out = check("[server]\nlisten = [\"127.0.0.1:0\"]\n");
    common::output_ok(&out, "check-config of a plain-only server");
    assert!(String::from_utf8_lossy(&out.stdout).contains("tls = none"));

    let mut child = std::process::Command::new(common::BIN)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let addr = loop {
        let announced = line(&mut stdout);
        assert!(!announced.is_empty(), "pop3d exited before listening");
        if let Some(addr) =
            announced.strip_prefix("pop3d: POP3 (no TLS: no [tls] in the configuration) on ")
        {
            break addr.trim().to_owned();
        }
    };
    let stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    assert!(line(&mut reader).starts_with("+OK"));
    writer.write_all(b"CAPA\r\n").unwrap();
    let mut capa = Vec::new();
    loop {
        let l = line(&mut reader);
        if l == ".\r\n" || l.is_empty() {
            break;
        }
        capa.push(l);
    }
    assert!(capa[0].starts_with("+OK") && !capa.iter().any(|l| l.starts_with("STLS")), "{capa:?}");
    writer.write_all(b"USER alice\r\nPASS secret\r\nQUIT\r\n").unwrap();
    for _ in 0..3 {
        assert!(line(&mut reader).starts_with("+OK"), "loopback login without TLS");
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `pop3d init`: the commented default at --config FILE (nothing else), or a fresh data
/// dir; never overwrites.
#[test]
fn init_writes_the_commented_default() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("etc/pop3d/pop3d.toml");
    let init = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(common::BIN).args(args).arg("init").output().unwrap()
    };
    let out = init(&["--config".as_ref(), config.as_os_str()]);
    common::output_ok(&out, "init --config");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.starts_with("# pop3d configuration") && text.contains("# run_as = "), "{text}");
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o644);
    let written: Vec<_> = std::fs::read_dir(config.parent().unwrap()).unwrap().collect();
    assert_eq!(written.len(), 1, "only the configuration");
    std::fs::write(&config, "# edited\n").unwrap();
    let again = init(&["--config".as_ref(), config.as_os_str()]);
    assert_eq!(again.status.code(), Some(73), "EX_CANTCREAT");
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists, not overwritten"));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "# edited\n");

    let data = dir.path().join("data");
    common::output_ok(&init(&["--data-dir".as_ref(), data.as_os_str()]), "init --data-dir");
    for file in ["pop3d.toml", "users", "tls/cert.pem", "tls/key.pem", "mail"] {
        assert!(data.join(file).exists(), "{file}");
    }
    common::output_ok(&run(&["check-config"], &data, b""), "check-config after init");
    assert_eq!(init(&["--data-dir".as_ref(), data.as_os_str()]).status.code(), Some(73));
}

#[test]
fn global_options_go_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    common::output_ok(&run(&["user", "add", "erin", "--password-stdin"], &data, b"x\n"), "add");
    let config = data.join("pop3d.toml");
    let out = std::process::Command::new(common::BIN)
        .args(["user", "list", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "erin\tARGON2ID\n");
}

fn line(reader: &mut impl BufRead) -> String {
    let mut s = String::new();
    reader.read_line(&mut s).unwrap();
    s
}

on_both_stores!(serves_and_stops_gracefully);
/// SIGTERM with a session in TRANSACTION state: the client is told, the server exits 0, and
/// the DELE it had marked is not committed (no UPDATE state without QUIT, RFC 1939 §6).
fn serves_and_stops_gracefully(store: Store) {
    let mut daemon = Daemon::start_on(store);
    let stream = TcpStream::connect(&daemon.plain).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    assert!(line(&mut reader).starts_with("+OK"));
    writer.write_all(b"USER alice\r\nPASS secret\r\nDELE 1\r\n").unwrap();
    for _ in 0..3 {
        assert!(line(&mut reader).starts_with("+OK"));
    }
    let status = daemon.stop();
    assert!(status.success(), "{status}");
    assert!(line(&mut reader).starts_with("-ERR"), "told about the shutdown");
    assert_eq!(daemon.stored("alice").len(), 3, "no UPDATE without QUIT");
    let printed = daemon.printed().join("\n");
    assert!(!printed.contains("Next steps"), "a data dir that already existed: {printed}");
}

/// The quick-start hints (`cargo run`, "-k: the certificate is self-signed") are for the
/// zero-config first start only.
#[test]
fn next_steps_only_on_a_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    let mut daemon = Daemon::serve(dir, data);
    assert!(daemon.stop().success());
    let printed = daemon.printed().join("\n");
    assert!(printed.contains("pop3d: created "), "{printed}");
    assert!(printed.contains("Next steps") && printed.contains("self-signed"), "{printed}");
}

/// `RUST_LOG` and `--log-level` add detail and never hide pop3d's own INFO lines.
#[test]
fn log_settings_add_detail() {
    let started = |rust_log: &str, options: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d");
        common::output_ok(&run(&["user", "list"], &data, b""), "data dir");
        let mut daemon = Daemon::serve_with(dir, data, rust_log, options);
        let stream = TcpStream::connect(&daemon.plain).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        assert!(line(&mut reader).starts_with("+OK"));
        (&stream).write_all(b"QUIT\r\n").unwrap();
        assert!(line(&mut reader).starts_with("+OK"));
        assert!(daemon.stop().success());
        daemon.log()
    };
    // pop3d's own INFO line (the descriptor limit) and the server library's (a session).
    let pop3d_info = "descriptor limit";
    let server_info = "session closed";
    let log = started("pop3_server=debug", &[]);
    assert!(log.contains(pop3d_info) && log.contains(server_info), "{log}");
    let log = started("warn", &[]);
    assert!(log.contains(pop3d_info) && log.contains(server_info), "{log}");
    let log = started("pop3d=debug", &[]);
    assert!(log.contains("configuration loaded") && log.contains(server_info), "{log}");
    let log = started("", &["--log-level", "debug"]);
    assert!(log.contains("configuration loaded") && log.contains(pop3d_info), "{log}");
    let log = started("", &[]);
    assert!(log.contains(pop3d_info) && !log.contains("configuration loaded"), "{log}");
}

#[test]
fn sighup_reloads_the_certificate() {
    if !common::peer("curl", "curl") {
        return;
    }
    let daemon = Daemon::start();
    // A second data dir gives a second self-signed certificate.
    let other = daemon.dir.path().join("other");
    common::output_ok(&run(&["user", "list"], &other, b""), "second data dir");
    let new_cert = other.join("tls/cert.pem");
    let url = format!("pop3s://alice:secret@localhost:{}/", Daemon::port(&daemon.tls));
    let resolve = format!("localhost:{}:127.0.0.1", Daemon::port(&daemon.tls));
    let curl = |cert: &std::path::Path| {
        std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "30", "--resolve", &resolve, "--cacert"])
            .arg(cert)
            .arg(&url)
            .status()
            .unwrap()
            .success()
    };
    assert!(curl(&daemon.cert()) && !curl(&new_cert));
    std::fs::copy(other.join("tls/key.pem"), daemon.data.join("tls/key.pem")).unwrap();
    std::fs::copy(&new_cert, daemon.data.join("tls/cert.pem")).unwrap();
    let pid = rustix::process::Pid::from_child(&daemon.child);
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !curl(&new_cert) {
        assert!(std::time::Instant::now() < deadline, "new certificate not served after SIGHUP");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(daemon.log().contains("TLS certificate reloaded"));
}

#[test]
fn drops_privileges_after_binding() {
    if !common::root("drops_privileges_after_binding") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    common::output_ok(&run(&["user", "list"], &data, b""), "fresh data dir");
    let config = data.join("pop3d.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("# run_as = \"pop3d\"", "run_as = \"nobody\"")).unwrap();
    let daemon = Daemon::serve(dir, data);
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_owned();
    let nobody = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .map(|l| l.split(':').nth(2).unwrap().to_owned())
        .unwrap();
    let ids: Vec<&str> = uid.split_whitespace().skip(1).collect();
    assert_eq!(ids, vec![nobody.as_str(); 4], "real, effective, saved and fs uid: {uid}");
    let stream = TcpStream::connect(&daemon.plain).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    assert!(line(&mut BufReader::new(stream)).starts_with("+OK"), "still serving");
}

/// One POP3 login on `addr`: true on `+OK` to PASS; with `retr`, message 1 as sent.
fn login(addr: &str, user: &str, password: &str, retr: bool) -> (bool, Vec<u8>) {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    assert!(line(&mut reader).starts_with("+OK"));
    writer.write_all(format!("USER {user}\r\nPASS {password}\r\n").as_bytes()).unwrap();
    assert!(line(&mut reader).starts_with("+OK"));
    let reply = line(&mut reader);
    let mut message = Vec::new();
    if reply.starts_with("+OK") && retr {
        writer.write_all(b"RETR 1\r\n").unwrap();
        let status = line(&mut reader);
        assert!(status.starts_with("+OK"), "RETR: {status}");
        loop {
            let l = line(&mut reader);
            if l == ".\r\n" || l.is_empty() {
                break;
            }
            message.extend_from_slice(l.as_bytes());
        }
    }
    let _ = writer.write_all(b"QUIT\r\n");
    (reply.starts_with("+OK"), message)
}

/// Operator commands run as root keep the files of a server that runs as another user:
/// the users file keeps its owner (so the running server re-reads it at the next login),
/// and the Maildirs and messages that `user add` and `deliver` create are the server's.
#[test]
fn root_commands_keep_the_server_user() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !common::root("root_commands_keep_the_server_user") {
        return;
    }
    let (uid, gid) = common::passwd_ids("nobody");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    common::output_ok(&run(&["user", "list"], &data, b""), "fresh data dir");
    let config = data.join("pop3d.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("# run_as = \"pop3d\"", "run_as = \"nobody\"")
        .replace("auth_failure_delay_ms = 2000", "auth_failure_delay_ms = 100");
    std::fs::write(&config, text).unwrap();
    // What an operator sets up once: a data dir the server's user can traverse, and the users
    // file and the mail directory its own.
    for traversable in [dir.path(), &data] {
        std::fs::set_permissions(traversable, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    for owned in [data.join("users"), data.join("mail")] {
        std::os::unix::fs::chown(owned, Some(uid), Some(gid)).unwrap();
    }
    common::output_ok(
        &run(&["user", "add", "alice", "--password-stdin"], &data, b"old secret\n"),
        "user add as root",
    );
    let owner = |path: &std::path::Path| {
        let meta = std::fs::metadata(path).unwrap();
        (meta.uid(), meta.gid())
    };
    assert_eq!(owner(&data.join("users")), (uid, gid), "users file owner kept");
    assert_eq!(owner(&data.join("mail/alice/new")), (uid, gid), "the Maildir is the server's");

    let daemon = Daemon::serve(dir, data.clone());
    assert!(login(&daemon.plain, "alice", "old secret", false).0);
    common::output_ok(
        &run(&["user", "passwd", "alice", "--password-stdin"], &data, b"new secret\n"),
        "user passwd as root",
    );
    assert_eq!(owner(&data.join("users")), (uid, gid), "users file owner kept");
    assert_eq!(std::fs::metadata(data.join("users")).unwrap().mode() & 0o777, 0o600);
    assert!(login(&daemon.plain, "alice", "new secret", false).0, "the new password works");
    assert!(!login(&daemon.plain, "alice", "old secret", false).0, "the old one fails");

    let message = b"Subject: from root\r\n\r\ndelivered by root\r\n";
    common::output_ok(&run(&["deliver", "alice"], &data, message), "deliver as root");
    let new: Vec<_> = std::fs::read_dir(data.join("mail/alice/new")).unwrap().collect();
    assert_eq!(owner(&new[0].as_ref().unwrap().path()), (uid, gid), "the message is the server's");
    let (ok, retrieved) = login(&daemon.plain, "alice", "new secret", true);
    assert!(ok);
    assert_eq!(retrieved, message.to_vec(), "the server reads what root delivered");

    common::output_ok(&run(&["user", "del", "alice"], &data, b""), "user del as root");
    assert!(!login(&daemon.plain, "alice", "new secret", false).0, "a deleted user is out");
    assert!(!daemon.log().contains("not reloaded"), "{}", daemon.log());
}

/// The tests' delivery order of Maildir names is numeric, as pop3-storage's is: within one
/// second, `M98765` (fewer digits) comes before `M123456`.
#[test]
fn delivery_order_compares_numbers() {
    let early = common::delivery_order("1796648279.M98765P10Q0.host");
    let late = common::delivery_order("1796648279.M123456P11Q0.host:2,S");
    assert!(early < late);
    assert!(late < common::delivery_order("1796648280.M1P1Q0.host"));
}

/// `pop3d user hash` prints a `{SCHEME}hash` line that the users file takes and that verifies
/// the password (and no other), for each scheme it makes; weak or unknown schemes are usage
/// errors. `check-config` names the lines whose scheme pop3d does not know.
#[test]
fn user_hash_prints_a_line_the_users_file_takes() {
    use pop3_proto::server::AuthRequest;
    use pop3_server::Authenticator;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let login = |file: &pop3_server::PasswdFile, password: &str| {
        file.authenticate(&AuthRequest::Password {
            username: "alice".into(),
            authzid: None,
            password: pop3_proto::Secret::new(password.as_bytes().to_vec()),
            mechanism: None,
        })
        .is_ok()
    };
    let mut lines = String::new();
    for scheme in [None, Some("SHA512-CRYPT"), Some("BLF-CRYPT"), Some("SSHA512"), Some("PBKDF2")] {
        let mut args = vec!["user", "hash", "--password-stdin"];
        args.extend(scheme.iter().flat_map(|s| ["--scheme", s]));
        let out = run(&args, &data, b"s3cret pw\n");
        common::output_ok(&out, "user hash");
        let hash = String::from_utf8(out.stdout).unwrap();
        let expected = format!("{{{}}}", scheme.unwrap_or("ARGON2ID"));
        assert!(hash.starts_with(&expected) && hash.ends_with('\n'), "{hash}");
        let file = pop3_server::PasswdFile::parse(&format!("alice:{hash}")).unwrap();
        assert!(file.warnings().is_empty(), "{:?}", file.warnings());
        assert!(login(&file, "s3cret pw") && !login(&file, "s3cret"), "{hash}");
        lines.push_str(&format!("u{}:{hash}", lines.lines().count()));
    }
    assert!(!data.exists(), "user hash reads no configuration and creates nothing");
    let generated = run(&["user", "hash", "--scheme", "ssha256"], &data, b"");
    common::output_ok(&generated, "user hash with a generated password");
    assert!(String::from_utf8_lossy(&generated.stderr).starts_with("generated password: "));
    for bad in ["PLAIN-MD5", "DES-CRYPT"] {
        let out = run(&["user", "hash", "--scheme", bad, "--password-stdin"], &data, b"x\n");
        assert_eq!(out.status.code(), Some(64), "{bad}: EX_USAGE");
        assert!(String::from_utf8_lossy(&out.stderr).contains("SHA512-CRYPT"), "{bad}: the list");
    }

    common::output_ok(&run(&["init"], &data, b""), "init");
    lines.push_str("old:{DES-CRYPT}abcdefghijklm\nodd:{SHA256.b32}abc\n");
    std::fs::write(data.join("users"), &lines).unwrap();
    let check = run(&["check-config"], &data, b"");
    common::output_ok(&check, "check-config");
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(err.contains("line 6: user old: unsupported password scheme {DES-CRYPT}"), "{err}");
    assert!(err.contains("line 7: user odd: unsupported password scheme {SHA256.b32}"), "{err}");
    assert!(String::from_utf8_lossy(&check.stdout).contains("OK (5 users)"));
}
