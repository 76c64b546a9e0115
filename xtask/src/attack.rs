//! `cargo xtask attack`: pop3d (release build, default limits) under the attacks of
//! `docs/security.md`, on loopback, bounded in time (about two and a half minutes), with the
//! figures each defence must reach.
//!
//! Clients come from many loopback addresses (all of 127.0.0.0/8 is this host), so that per-
//! address limits and penalties meet several "networks":
//!
//! 1. **Login flood**: 200 connections from 127.0.0.1-20 guess the password of `alice` (an
//!    `{ARGON2ID}` user) for 45 s. pop3d's RSS must stay under 512 MiB at the peak and be
//!    under 256 MiB 30 s after the flood; 16 correct logins in parallel (other users, from
//!    127.0.0.100) during the flood must all succeed.
//! 2. **Pacing**: meanwhile 10 connections from 127.0.0.50 guess `bob`'s password; from the
//!    12th checked guess on, each must have waited at least 5 s.
//! 3. **Enumeration**: wrong passwords for known and for unknown users, each from a fresh
//!    address; the median reply times must differ by under 30 ms. Two SCRAM-SHA-256
//!    exchanges for an unknown user must announce the same salt and iteration count.
//! 4. **Crowd behind one address**: 50 simultaneous connections from 127.0.0.77 are all
//!    greeted.
//!
//! (A full disk is attacked by `crates/pop3d/tests/full_disk.rs`, in the test suite.)

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use std::{env, fs};

use crate::loadtest::{free_port, wait_listening, Proc};
use crate::{cargo_with, release_dir, run, Result};

const FLOOD: Duration = Duration::from_secs(45);
const COOL_DOWN: Duration = Duration::from_secs(30);
const FLOOD_CONNECTIONS: usize = 200;
const FLOOD_ADDRESSES: u8 = 20;
const LEGIT_LOGINS: usize = 16;
const PROBE_CONNECTIONS: usize = 10;
const TIMING_SAMPLES: usize = 15;

/// The targets (from the hardening requirements).
const PEAK_RSS_MIB: f64 = 512.0;
const AFTER_RSS_MIB: f64 = 256.0;
const PACED_FROM_GUESS: usize = 12;
const PACED_AT_LEAST: Duration = Duration::from_secs(5);
const TIMING_DIFF_MS: f64 = 30.0;

pub fn attack(args: &[String]) -> Result {
    let build = !args.iter().any(|a| a == "--no-build");
    if let Some(other) = args.iter().find(|a| *a != "--no-build") {
        return Err(format!("attack: unexpected argument {other} (only --no-build)"));
    }
    if build {
        run(cargo_with(&["build", "--release", "-p", "pop3d", "--bin", "pop3d"]))?;
    }
    let pop3d = release_dir().join("pop3d");
    let dir = env::temp_dir().join(format!("pop3-attack-{}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = attack_in(&pop3d, &dir);
    let _ = fs::remove_dir_all(&dir);
    result
}

/// One `{ARGON2ID}` hash (the scheme `pop3d user add` writes) of the password `secret`.
fn argon2_hash(pop3d: &Path, dir: &Path) -> Result<String> {
    let scratch = dir.join("scratch");
    let mut child = Command::new(pop3d)
        .arg("--data-dir")
        .arg(&scratch)
        .args(["user", "add", "x", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", pop3d.display()))?;
    child.stdin.take().expect("piped").write_all(b"secret\n").map_err(|e| e.to_string())?;
    if !child.wait().map_err(|e| e.to_string())?.success() {
        return Err("pop3d user add failed".into());
    }
    let users = fs::read_to_string(scratch.join("users")).map_err(|e| e.to_string())?;
    let line = users.lines().find(|l| l.starts_with("x:")).ok_or("no user x in users")?;
    let hash = line.split(':').nth(1).ok_or("no password field")?;
    if !hash.starts_with("{ARGON2ID}") {
        return Err(format!("expected an {{ARGON2ID}} hash, got {hash}"));
    }
    Ok(hash.to_owned())
}

fn attack_in(pop3d: &Path, dir: &Path) -> Result {
    let hash = argon2_hash(pop3d, dir)?;
    let mut users = String::new();
    let names = ["alice".to_owned(), "bob".to_owned()]
        .into_iter()
        .chain((0..LEGIT_LOGINS).map(|n| format!("legit{n}")))
        .chain((0..TIMING_SAMPLES).map(|n| format!("known{n}")));
    for name in names {
        users.push_str(&format!("{name}:{hash}\n"));
    }
    fs::write(dir.join("users"), users).map_err(|e| e.to_string())?;
    let port = free_port()?;
    // Default limits throughout; SCRAM is offered so that its decoys can be checked.
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\nlisten_tls = []\n\n\
         [users]\nfile = \"{d}/users\"\n\n[mail]\nlocation = \"{d}/mail/%u\"\n\n\
         [auth]\nmechanisms = [\"SCRAM-SHA-256\", \"PLAIN\", \"LOGIN\"]\nsecret_file = \"{d}/secret\"\n",
        d = dir.display()
    );
    let config_path = dir.join("pop3d.toml");
    fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let log = fs::File::create(dir.join("pop3d.log")).map_err(|e| e.to_string())?;
    let child = Command::new(pop3d)
        .arg("--config")
        .arg(&config_path)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{}: {e}", pop3d.display()))?;
    let mut server = Proc { name: "pop3d", child, term: true };
    wait_listening(port, &mut server)?;
    let pid = server.child.id();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    eprintln!("xtask: pop3d (pid {pid}) on {addr}, idle RSS {:.1} MiB", rss_mib(pid));

    let mut report = Report::default();
    crowd(addr, &mut report);
    flood_and_probe(addr, pid, &mut report);
    timing(addr, &mut report);
    scram_salts(addr, &mut report);
    drop(server);
    println!("{}", report.render());
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "attack: {} target(s) missed: {}",
            report.failed.len(),
            report.failed.join("; ")
        ))
    }
}

#[derive(Default)]
struct Report {
    rows: Vec<(String, String, String, bool)>,
    failed: Vec<String>,
}

impl Report {
    fn check(&mut self, what: &str, measured: String, target: String, ok: bool) {
        eprintln!(
            "xtask: {what}: {measured} (target {target}) {}",
            if ok { "ok" } else { "MISSED" }
        );
        if !ok {
            self.failed.push(format!("{what}: {measured}, target {target}"));
        }
        self.rows.push((what.to_owned(), measured, target, ok));
    }

    fn render(&self) -> String {
        let mut out = String::from("| attack | measured | target | |\n|---|---|---|---|\n");
        for (what, measured, target, ok) in &self.rows {
            let mark = if *ok { "met" } else { "MISSED" };
            out.push_str(&format!("| {what} | {measured} | {target} | {mark} |\n"));
        }
        out
    }
}

fn rss_mib(pid: u32) -> f64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// A connection from `source` (a loopback address) with line reads that give up at a deadline.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(source: Ipv4Addr, server: SocketAddr) -> Option<Self> {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
        socket.bind(&SocketAddr::from((source, 0)).into()).ok()?;
        socket.connect_timeout(&server.into(), Duration::from_secs(5)).ok()?;
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(Duration::from_millis(250))).ok()?;
        let writer = stream.try_clone().ok()?;
        Some(Self { reader: BufReader::new(stream), writer })
    }

    /// The next line, or `None` if the connection closed or `deadline` passed.
    fn line(&mut self, deadline: Instant) -> Option<String> {
        let mut line = String::new();
        loop {
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) if line.ends_with('\n') => return Some(line.trim_end().to_owned()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return None,
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }

    fn cmd(&mut self, command: &str, deadline: Instant) -> Option<String> {
        self.writer.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        self.line(deadline)
    }
}

/// 50 simultaneous connections from one address: all greeted.
fn crowd(addr: SocketAddr, report: &mut Report) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let source = Ipv4Addr::new(127, 0, 0, 77);
    let mut conns: Vec<Conn> = (0..50).filter_map(|_| Conn::open(source, addr)).collect();
    let greeted = conns
        .iter_mut()
        .map(|c| c.line(deadline).is_some_and(|l| l.starts_with("+OK")))
        .filter(|&greeted| greeted)
        .count();
    report.check(
        "simultaneous connections from one address, greeted",
        format!("{greeted} of 50"),
        "50 of 50".into(),
        greeted == 50,
    );
}

/// One wrong guess's timing: when it was sent, when answered, and the answer.
struct Guess {
    sent: Instant,
    answered: Instant,
    reply: String,
}

/// Guesses `user`'s password from `source` until `until`, reconnecting when closed.
fn guesser(
    source: Ipv4Addr,
    addr: SocketAddr,
    user: &str,
    until: Instant,
    guesses: &Mutex<Vec<Guess>>,
    attempts: &AtomicU64,
) {
    let mut n = 0u64;
    while Instant::now() < until {
        let Some(mut conn) = Conn::open(source, addr) else {
            thread::sleep(Duration::from_millis(200));
            continue;
        };
        if conn.line(until).is_none() {
            continue;
        }
        loop {
            if conn.cmd(&format!("USER {user}"), until).is_none() {
                break;
            }
            n += 1;
            let sent = Instant::now();
            attempts.fetch_add(1, Ordering::Relaxed);
            let Some(reply) = conn.cmd(&format!("PASS wrong-{n}"), until) else { break };
            let answered = Instant::now();
            let closing = reply.contains("too many");
            guesses.lock().unwrap_or_else(|e| e.into_inner()).push(Guess { sent, answered, reply });
            if closing || Instant::now() >= until {
                break;
            }
        }
    }
}

fn flood_and_probe(addr: SocketAddr, pid: u32, report: &mut Report) {
    let start = Instant::now();
    let flood_end = start + FLOOD;
    let quiet_at = flood_end + COOL_DOWN;
    let sampling = Arc::new(AtomicBool::new(true));
    let samples = Arc::new(Mutex::new(Vec::<(Duration, f64)>::new()));
    let sampler = {
        let (sampling, samples) = (Arc::clone(&sampling), Arc::clone(&samples));
        thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                samples.lock().unwrap().push((start.elapsed(), rss_mib(pid)));
                thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let flood_guesses = Arc::new(Mutex::new(Vec::new()));
    let flood_attempts = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for i in 0..FLOOD_CONNECTIONS {
        let source = Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(FLOOD_ADDRESSES)) as u8);
        let (guesses, attempts) = (Arc::clone(&flood_guesses), Arc::clone(&flood_attempts));
        threads.push(thread::spawn(move || {
            guesser(source, addr, "alice", flood_end, &guesses, &attempts);
        }));
    }
    // The paced address: 10 connections guessing bob until the cool-down ends.
    let probe_guesses = Arc::new(Mutex::new(Vec::new()));
    let probe_attempts = Arc::new(AtomicU64::new(0));
    for _ in 0..PROBE_CONNECTIONS {
        let (guesses, attempts) = (Arc::clone(&probe_guesses), Arc::clone(&probe_attempts));
        threads.push(thread::spawn(move || {
            guesser(Ipv4Addr::new(127, 0, 0, 50), addr, "bob", quiet_at, &guesses, &attempts);
        }));
    }
    // Correct logins in the middle of the flood.
    thread::sleep(Duration::from_secs(15));
    let legit: Vec<_> = (0..LEGIT_LOGINS)
        .map(|n| {
            thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                let started = Instant::now();
                let mut conn = Conn::open(Ipv4Addr::new(127, 0, 0, 100), addr)?;
                conn.line(deadline)?;
                conn.cmd(&format!("USER legit{n}"), deadline)?;
                let reply = conn.cmd("PASS secret", deadline)?;
                let took = started.elapsed();
                conn.cmd("QUIT", deadline);
                reply.starts_with("+OK").then_some(took)
            })
        })
        .collect();
    let legit: Vec<Option<Duration>> =
        legit.into_iter().map(|t| t.join().unwrap_or(None)).collect();
    for t in threads {
        let _ = t.join();
    }
    // The cool-down: the probe ran until now; take the "after" figure at its end.
    let now = Instant::now();
    if now < quiet_at {
        thread::sleep(quiet_at - now);
    }
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    let samples = samples.lock().unwrap();
    let flood_secs = FLOOD.as_secs_f64();
    let peak = samples.iter().filter(|(t, _)| t.as_secs_f64() <= flood_secs + 5.0).map(|s| s.1);
    let peak = peak.fold(0.0, f64::max);
    let after = samples.last().map_or(0.0, |s| s.1);
    let attempts = flood_attempts.load(Ordering::Relaxed);
    let guesses = flood_guesses.lock().unwrap();
    let refused = guesses.iter().filter(|g| g.reply.contains("SYS/TEMP")).count();
    let checked = guesses.iter().filter(|g| g.reply.contains("[AUTH]")).count();
    eprintln!(
        "xtask: flood: {attempts} guesses sent in {flood_secs} s, {checked} checked and refused \
         [AUTH], {refused} refused unchecked [SYS/TEMP]"
    );
    report.check(
        "RSS at the peak of 200 connections from 20 addresses guessing an Argon2id password for 45 s",
        format!("{peak:.0} MiB"),
        format!("< {PEAK_RSS_MIB:.0} MiB"),
        peak < PEAK_RSS_MIB,
    );
    report.check(
        "RSS 30 s after the flood",
        format!("{after:.0} MiB"),
        format!("< {AFTER_RSS_MIB:.0} MiB"),
        after < AFTER_RSS_MIB,
    );
    report.check(
        "wrong guesses checked during the flood (all addresses)",
        format!("{checked} ({:.1}/s)", checked as f64 / flood_secs),
        "paced: a few per address per minute".into(),
        true,
    );
    let ok = legit.iter().filter(|l| l.is_some()).count();
    let slowest = legit.iter().flatten().max().copied().unwrap_or_default();
    report.check(
        "correct logins in parallel during the flood",
        format!("{ok} of {LEGIT_LOGINS} (slowest {:.1} s)", slowest.as_secs_f64()),
        format!("{LEGIT_LOGINS} of {LEGIT_LOGINS}"),
        ok == LEGIT_LOGINS,
    );
    let mut probe: Vec<&Guess> = Vec::new();
    let probe_guesses = probe_guesses.lock().unwrap();
    probe.extend(probe_guesses.iter().filter(|g| g.reply.contains("[AUTH]")));
    probe.sort_by_key(|g| g.sent);
    let unchecked = probe_guesses.iter().filter(|g| g.reply.contains("SYS/TEMP")).count();
    let late: Vec<Duration> =
        probe.iter().skip(PACED_FROM_GUESS - 1).map(|g| g.answered - g.sent).collect();
    let shortest = late.iter().min().copied();
    report.check(
        "wait of each checked wrong guess from one address, from the 12th on",
        match shortest {
            Some(s) => format!(
                "{} guesses from the 12th, shortest wait {:.1} s ({} checked in all, {unchecked} refused unchecked)",
                late.len(),
                s.as_secs_f64(),
                probe.len()
            ),
            None => format!("only {} guesses were checked", probe.len()),
        },
        format!(">= {} s each", PACED_AT_LEAST.as_secs()),
        shortest.is_some_and(|s| s >= PACED_AT_LEAST),
    );
}

/// The reply time of one wrong password for `user` from `source` (a fresh address, so no
/// penalty applies).
fn wrong_password_time(addr: SocketAddr, source: Ipv4Addr, user: &str) -> Option<Duration> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conn = Conn::open(source, addr)?;
    conn.line(deadline)?;
    conn.cmd(&format!("USER {user}"), deadline)?;
    let sent = Instant::now();
    let reply = conn.cmd("PASS not-the-password", deadline)?;
    reply.starts_with("-ERR [AUTH]").then(|| sent.elapsed())
}

fn median_ms(mut v: Vec<Duration>) -> Option<f64> {
    v.sort();
    v.get(v.len() / 2).map(|d| d.as_secs_f64() * 1000.0)
}

fn timing(addr: SocketAddr, report: &mut Report) {
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for n in 0..TIMING_SAMPLES {
        // One known and one unknown at a time, side by side, from fresh addresses.
        let k = thread::spawn(move || {
            wrong_password_time(addr, Ipv4Addr::new(127, 0, 1, 1 + n as u8), &format!("known{n}"))
        });
        let u = thread::spawn(move || {
            wrong_password_time(addr, Ipv4Addr::new(127, 0, 2, 1 + n as u8), &format!("ghost{n}"))
        });
        known.extend(k.join().ok().flatten());
        unknown.extend(u.join().ok().flatten());
    }
    let samples = (known.len(), unknown.len());
    match (median_ms(known), median_ms(unknown)) {
        (Some(k), Some(u)) => report.check(
            "median reply to a wrong password, known vs unknown user",
            format!(
                "{k:.1} ms vs {u:.1} ms (difference {:.1} ms, {samples:?} samples)",
                (k - u).abs()
            ),
            format!("< {TIMING_DIFF_MS:.0} ms apart"),
            (k - u).abs() < TIMING_DIFF_MS,
        ),
        _ => report.check(
            "median reply to a wrong password, known vs unknown user",
            "no replies".into(),
            format!("< {TIMING_DIFF_MS:.0} ms apart"),
            false,
        ),
    }
}

/// `s=...,i=...` of a SCRAM-SHA-256 server-first message for `user`, from `source`.
fn scram_salt(addr: SocketAddr, source: Ipv4Addr, user: &str) -> Option<String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conn = Conn::open(source, addr)?;
    conn.line(deadline)?;
    let first = b64.encode(format!("n,,n={user},r=attackclientnonce0123456"));
    let reply = conn.cmd(&format!("AUTH SCRAM-SHA-256 {first}"), deadline)?;
    let server_first = String::from_utf8(b64.decode(reply.strip_prefix("+ ")?).ok()?).ok()?;
    conn.cmd("*", deadline);
    Some(server_first.split_once(",s=")?.1.to_owned())
}

fn scram_salts(addr: SocketAddr, report: &mut Report) {
    let a = scram_salt(addr, Ipv4Addr::new(127, 0, 3, 1), "nobody-here");
    let b = scram_salt(addr, Ipv4Addr::new(127, 0, 3, 2), "nobody-here");
    report.check(
        "SCRAM-SHA-256 salt and iteration count of an unknown user, two exchanges",
        match (&a, &b) {
            (Some(a), Some(b)) if a == b => format!("identical (s={a})"),
            _ => format!("{a:?} vs {b:?}"),
        },
        "identical".into(),
        a.is_some() && a == b,
    );
}
