//! pop3d under systemd, driven without systemd: the notify protocol (`sd_notify(3)`) read from
//! a datagram socket the test owns, and socket activation by `systemd-socket-activate`
//! (Debian's systemd package; a loud SKIPPED line without it, a failure under CI=true).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{output_ok, peer, run, BIN};

/// A data dir with alice and her mail (the default configuration).
fn data_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    output_ok(&run(&["user", "add", "alice", "--password-stdin"], &data, b"secret\n"), "user add");
    output_ok(&run(&["deliver", "alice"], &data, b"Subject: hi\n\nhello\n"), "deliver");
    (dir, data)
}

/// The next notification other than a watchdog ping, and how many pings came before it.
fn next_state(socket: &UnixDatagram) -> (String, usize) {
    let mut pings = 0;
    loop {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a notification within the timeout");
        let message = String::from_utf8_lossy(&buf[..n]).trim_end_matches('\n').to_owned();
        if message == "WATCHDOG=1" {
            pings += 1;
        } else {
            return (message, pings);
        }
    }
}

fn signal(child: &std::process::Child, signal: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_child(child), signal).unwrap();
}

#[test]
fn ready_reloading_stopping_and_watchdog_pings_are_notified() {
    let (dir, data) = data_dir();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &path)
        // WatchdogSec=0.4s: a ping every 0.2 s.
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (ready, _) = next_state(&socket);
    assert_eq!(ready, "READY=1\nSTATUS=serving");
    // Ready means serving: the announced listener answers at once.
    let mut line = String::new();
    let addr = loop {
        line.clear();
        stdout.read_line(&mut line).unwrap();
        if let Some(addr) = line.trim().strip_prefix("pop3d: POP3 (with STLS) on ") {
            break addr.to_owned();
        }
    };
    let mut greeting = String::new();
    BufReader::new(TcpStream::connect(&addr).unwrap()).read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("+OK"), "{greeting}");
    std::thread::sleep(Duration::from_millis(700));
    signal(&child, rustix::process::Signal::HUP);
    let (reloading, pings) = next_state(&socket);
    assert!(pings >= 2, "watchdog pings every 0.2 s: {pings} in 0.7 s");
    assert!(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading}");
    assert_eq!(next_state(&socket).0, "READY=1\nSTATUS=serving");
    signal(&child, rustix::process::Signal::TERM);
    assert_eq!(next_state(&socket).0, "STOPPING=1\nSTATUS=stopping");
    assert!(child.wait().unwrap().success());
}

#[test]
fn without_notify_socket_nothing_is_sent_and_pop3d_serves() {
    // The default start (no systemd): the variables absent, pop3d must not fail or wait.
    let (dir, data) = data_dir();
    let mut daemon = common::Daemon::serve(dir, data);
    assert!(common::Session::login(&daemon.plain, "alice", "secret").starts_with("+OK"));
    assert!(daemon.stop().success());
}

/// `systemd-socket-activate` listening on three loopback ports named `names`, starting pop3d on
/// the first connection: the child and the ports.
fn activate(data: &std::path::Path, names: &str) -> (std::process::Child, [u16; 3]) {
    let ports = [0; 3].map(|_| pop3_testkit::peer::free_port());
    let mut command = Command::new("systemd-socket-activate");
    for port in ports {
        command.arg(format!("--listen=127.0.0.1:{port}"));
    }
    let child = command
        .arg(format!("--fdname={names}"))
        .args(["-E", "RUST_LOG=info", BIN, "--data-dir"])
        .arg(data)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It listens before it returns from start-up; wait for the first port.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", ports[0])).is_err() {
        assert!(Instant::now() < deadline, "systemd-socket-activate does not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, ports)
}

/// The first line on a new connection to `port`.
fn first_line(port: u16) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    line
}

#[test]
fn sockets_passed_by_systemd_are_served_by_their_names() {
    if !peer("systemd-socket-activate", "systemd") || !peer("openssl", "openssl") {
        return;
    }
    let (_dir, data) = data_dir();
    let lmtp = "\n[lmtp]\nmax_recipients = 7\n";
    let config = std::fs::read_to_string(data.join("pop3d.toml")).unwrap();
    std::fs::write(data.join("pop3d.toml"), config + lmtp).unwrap();
    // The probe connection of `activate` already started pop3d.
    let (mut child, [pop3, pop3s, lmtp]) = activate(&data, "pop3:pop3s:lmtp");
    assert!(first_line(pop3).starts_with("+OK"));
    assert!(first_line(lmtp).starts_with("220 "), "LMTP on the socket named lmtp");
    let mut tls = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{pop3s}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tls.stdin.take().unwrap().write_all(b"QUIT\r\n").unwrap();
    let out = tls.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("+OK"), "POP3S on the pop3s socket");
    signal(&child, rustix::process::Signal::TERM);
    let mut printed = String::new();
    child.stdout.take().unwrap().read_to_string(&mut printed).unwrap();
    assert!(child.wait().unwrap().success());
    // Announced as the sockets it got, not the configured addresses.
    assert!(printed.contains(&format!("POP3 (with STLS) on 127.0.0.1:{pop3}")), "{printed}");
    assert!(printed.contains(&format!("POP3S (implicit TLS) on 127.0.0.1:{pop3s}")), "{printed}");
    assert!(printed.contains(&format!("LMTP on 127.0.0.1:{lmtp}")), "{printed}");
}

#[test]
fn a_socket_with_an_unknown_name_is_a_configuration_error() {
    if !peer("systemd-socket-activate", "systemd") {
        return;
    }
    let (_dir, data) = data_dir();
    let (child, _) = activate(&data, "pop3:imaps:pop3s");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("\"imaps\"") && said.contains("FileDescriptorName=pop3"), "{said}");
}
