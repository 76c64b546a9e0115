//! `pop3-load`: a load generator for any POP3 server, in the spirit of h2load and imaptest.
//!
//! Modes (`--mode`):
//!
//! - `login`: connect, `USER`/`PASS`, `STAT`, `QUIT`, again and again; the latency is the whole
//!   session's.
//! - `retr`: log in, `LIST`, `RETR` every message (`--window W` of them in flight if the
//!   server pipelines), `QUIT` without `DELE`; the latency is each `RETR`'s, from its command
//!   to the end of its body, and every message's unstuffed size must equal its `LIST` size.
//! - `pipeline`: log in, then `K` commands (`LIST n`) in batches of `B` on one session; the
//!   latency is each batch's.
//! - `idle`: hold `C` logged-in connections for the duration (from many 127.x source
//!   addresses with `--per-source M`), then check that every one still answers `NOOP`; with
//!   `--pid`, the server's memory (PSS, RSS, peak RSS) per connection.
//! - `tcp`: the loopback TCP limit: `C` streams from an in-process sender to this process.
//!
//! Every reply is checked (`+OK`, sizes); a run that saw an error exits non-zero. With `--pid`
//! the server's CPU time (the process and all its descendants, from `/proc`) over the
//! measurement window is reported per session and per MB. Every run is bounded in time, and
//! targets that are not loopback addresses are refused unless `--allow-remote`.

mod conn;
pub mod procfs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use pop3_proto::MsgNum;
use rustls::pki_types::ServerName;
use tokio::time::{timeout, Instant};

pub use conn::{tls_connector, Conn, Target};

/// What to do on each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Connect, USER/PASS, STAT, QUIT.
    Login,
    /// Log in, RETR every message, QUIT (no DELE).
    Retr,
    /// K commands (LIST n) in batches of B on one session.
    Pipeline,
    /// Hold C logged-in connections, then NOOP on each.
    Idle,
    /// The loopback TCP limit (no POP3 server involved).
    Tcp,
}

/// How each connection logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Auth {
    /// USER and PASS.
    User,
    /// SASL OAUTHBEARER (RFC 7628) with the user's token.
    Oauthbearer,
    /// SASL XOAUTH2 with the user's token.
    Xoauth2,
}

/// Transport security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Security {
    /// Plain TCP.
    Plain,
    /// Plain TCP, then STLS (RFC 2595).
    Stls,
    /// TLS from the first byte (RFC 8314).
    Implicit,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(ms) = s.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(sec) = s.strip_suffix('s') {
        (sec, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("not a duration: {s}"))?;
    if !(0.0..=86_400.0).contains(&v) {
        return Err(format!("duration out of range: {s}"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// Command-line options of `pop3-load`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "pop3-load", about = "POP3 load generator: login, retr, pipeline, idle, tcp")]
pub struct Options {
    /// What each connection does.
    #[arg(long, short = 'm', value_enum, default_value = "login")]
    pub mode: Mode,
    /// The server, host:port.
    #[arg(long, short = 't', default_value = "127.0.0.1:110")]
    pub target: String,
    /// Transport security.
    #[arg(long, value_enum, default_value = "plain")]
    pub tls: Security,
    /// PEM file of the certificates to trust (needed for STLS and implicit TLS).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Name the server's certificate must carry.
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    /// Allow TLS session resumption (default: every handshake is a full one).
    #[arg(long)]
    pub tls_resume: bool,
    /// User name; `%n` is replaced by the connection's number (0..C), so that concurrent
    /// sessions do not lock each other's maildrop.
    #[arg(long, short = 'u', default_value = "user%n")]
    pub user: String,
    /// Password of every user; with a bearer `--auth`, a file of `USER TOKEN` lines (each
    /// connection presents its user's token).
    #[arg(long, short = 'p', default_value = "secret")]
    pub pass: String,
    /// How to log in.
    #[arg(long, value_enum, default_value = "user")]
    pub auth: Auth,
    /// Concurrent connections (C).
    #[arg(long, short = 'c', default_value_t = 8)]
    pub concurrency: usize,
    /// Measurement time (idle: how long the connections are held), e.g. `10`, `10s`, `500ms`.
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before measuring (load runs, nothing is counted).
    #[arg(long, short = 'w', default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// pipeline: commands per session (K).
    #[arg(long, short = 'k', default_value_t = 10_000)]
    pub commands: u64,
    /// pipeline: commands per batch (B).
    #[arg(long, short = 'b', default_value_t = 16)]
    pub batch: usize,
    /// retr: RETR commands in flight per connection (W) when the server advertises
    /// PIPELINING (RFC 2449); 1 (the default) sends each after the previous reply, as a
    /// client that does not pipeline.
    #[arg(long, default_value_t = 1)]
    pub window: usize,
    /// idle: connections being set up at once.
    #[arg(long, default_value_t = 64)]
    pub ramp: usize,
    /// idle: at most M connections per source address, each bound before connecting to one
    /// of 127.1.0.1, 127.1.0.2 ... (all of 127.0.0.0/8 is loopback on Linux): many more
    /// connections than one address's ephemeral ports, and within a server's per-address
    /// limit. 0 (the default): the system picks the source address.
    #[arg(long, default_value_t = 0)]
    pub per_source: usize,
    /// Limit for any single operation (and idle's setup phase); the whole run ends by
    /// warm-up + duration + 2 x this.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The server's PID: report its CPU time (with its descendants) and, in idle mode, its
    /// proportional memory (PSS).
    #[arg(long)]
    pub pid: Option<u32>,
    /// A database server's PID (e.g. PostgreSQL's postmaster): its CPU time (with its
    /// descendants) is reported apart from the POP3 server's (login, retr, pipeline).
    #[arg(long)]
    pub db_pid: Option<u32>,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// Runtime worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print only the JSON line.
    #[arg(long)]
    pub json: bool,
}

impl Options {
    /// What `user` logs in with: the password, or its token from the `--pass` file.
    fn secret(&self, user: &str) -> Result<String, String> {
        if self.auth == Auth::User {
            return Ok(self.pass.clone());
        }
        let text =
            std::fs::read_to_string(&self.pass).map_err(|e| format!("{}: {e}", self.pass))?;
        text.lines()
            .find_map(|line| line.strip_prefix(user)?.strip_prefix(' ').map(str::to_owned))
            .ok_or_else(|| format!("{}: no token for {user}", self.pass))
    }

    /// Options for `mode` against `target` with the defaults, for tests and tools.
    pub fn new(mode: Mode, target: &str) -> Self {
        use clap::Parser as _;
        let mut o = Self::parse_from(["pop3-load"]);
        o.mode = mode;
        o.target = target.to_owned();
        o
    }
}

/// What one worker (or the whole run) counted.
#[derive(Debug, Clone)]
struct Tally {
    sessions: u64,
    commands: u64,
    messages: u64,
    octets: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            sessions: 0,
            commands: 0,
            messages: 0,
            octets: 0,
            errors: 0,
            first_error: None,
            latency: Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds"),
        }
    }

    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }

    fn record(&mut self, since: Instant) {
        let us = since.elapsed().as_micros().clamp(1, 600_000_000) as u64;
        let _ = self.latency.record(us);
    }

    fn merge(&mut self, o: Tally) {
        self.sessions += o.sessions;
        self.commands += o.commands;
        self.messages += o.messages;
        self.octets += o.octets;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        let _ = self.latency.add(&o.latency);
    }
}

/// Idle mode's findings.
#[derive(Debug, Clone, Default)]
pub struct IdleReport {
    /// Connections logged in.
    pub established: u64,
    /// Connections that answered NOOP at the end.
    pub answered: u64,
    /// Seconds to set up all connections.
    pub setup_s: f64,
    /// Server PSS before connecting, KiB.
    pub pss_before_kib: Option<u64>,
    /// Server PSS with every connection held, KiB (the larger of two samples).
    pub pss_held_kib: Option<u64>,
    /// Server processes counted in the held sample.
    pub processes: Option<usize>,
    /// Server resident memory (sum of `VmRSS`) before connecting, KiB.
    pub rss_before_kib: Option<u64>,
    /// Server resident memory with every connection held, KiB (the larger of two samples).
    pub rss_held_kib: Option<u64>,
    /// The server's peak resident memory (sum of `VmHWM`) at the end of the hold, KiB.
    pub hwm_kib: Option<u64>,
}

/// The source address of idle connection `n` with `per_source` connections per address
/// (`None`: the system picks it): 127.1.0.1 for the first `per_source`, then 127.1.0.2 ...
pub fn source_address(target: SocketAddr, n: usize, per_source: usize) -> Option<SocketAddr> {
    if per_source == 0 || !target.is_ipv4() {
        return None;
    }
    let base = u32::from(std::net::Ipv4Addr::new(127, 1, 0, 1));
    let ip = std::net::Ipv4Addr::from(base.checked_add((n / per_source) as u32)?);
    (ip.octets()[0] == 127).then(|| SocketAddr::from((ip, 0)))
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options of the run.
    pub options: Options,
    /// Seconds actually measured.
    pub measured_s: f64,
    /// Sessions completed (logged out) in the window.
    pub sessions: u64,
    /// Commands answered in the window (login/retr: every command of the session).
    pub commands: u64,
    /// Messages retrieved in the window.
    pub messages: u64,
    /// Payload octets (unstuffed message bytes; tcp: bytes received).
    pub octets: u64,
    /// Failed checks and operations.
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Latency percentiles in microseconds: p50, p90, p99, max.
    pub latency_us: [u64; 4],
    /// Operations measured in the histogram.
    pub latency_count: u64,
    /// Server CPU seconds over the window (`--pid`).
    pub server_cpu_s: Option<f64>,
    /// Database CPU seconds over the window (`--db-pid`).
    pub db_cpu_s: Option<f64>,
    /// This process's CPU seconds over the window.
    pub client_cpu_s: f64,
    /// Whether the server advertised PIPELINING (pipeline mode).
    pub pipelining: Option<bool>,
    /// Idle mode.
    pub idle: Option<IdleReport>,
}

/// Resolves `target` and refuses non-loopback addresses unless allowed.
pub async fn resolve(target: &str, allow_remote: bool) -> Result<SocketAddr, String> {
    let addr = tokio::net::lookup_host(target)
        .await
        .map_err(|e| format!("{target}: {e}"))?
        .next()
        .ok_or_else(|| format!("{target}: no address"))?;
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(format!(
            "{addr} is not a loopback address: pass --allow-remote to load a server over the network"
        ));
    }
    Ok(addr)
}

/// Runs the load described by `options` to completion (bounded by warm-up + duration +
/// 2 x timeout).
pub async fn run(options: &Options) -> Result<Report, String> {
    if options.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    let bound = options.warmup + options.duration + options.timeout * 2;
    match timeout(bound, run_inner(options)).await {
        Ok(r) => r,
        Err(_) => Err(format!("run did not finish within {bound:?}")),
    }
}

async fn run_inner(options: &Options) -> Result<Report, String> {
    if options.mode == Mode::Tcp {
        return tcp_limit(options).await;
    }
    let addr = resolve(&options.target, options.allow_remote).await?;
    let tls = match (options.tls, &options.ca) {
        (Security::Plain, _) => None,
        (_, Some(ca)) => {
            let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            Some(tls_connector(&pem, options.tls_resume)?)
        }
        (_, None) => return Err("--tls stls/implicit needs --ca FILE".into()),
    };
    let server_name = ServerName::try_from(options.server_name.clone())
        .map_err(|e| format!("--server-name: {e}"))?;
    let target = Arc::new(Target {
        addr,
        security: options.tls,
        tls,
        server_name,
        window: options.batch.max(1),
        read_buf: if options.mode == Mode::Idle { 4096 } else { 64 * 1024 },
    });
    if options.mode == Mode::Idle {
        return idle(options, target).await;
    }

    let start = Instant::now();
    let measure = start + options.warmup;
    let end = measure + options.duration;
    let (pid, db_pid) = (options.pid, options.db_pid);
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(measure).await;
        let s0 = pid.and_then(procfs::cpu_seconds);
        let d0 = db_pid.and_then(procfs::cpu_seconds);
        let c0 = procfs::self_cpu_seconds();
        tokio::time::sleep_until(end).await;
        let s1 = pid.and_then(procfs::cpu_seconds);
        let d1 = db_pid.and_then(procfs::cpu_seconds);
        let c1 = procfs::self_cpu_seconds();
        (s0.zip(s1).map(|(a, b)| b - a), d0.zip(d1).map(|(a, b)| b - a), c1 - c0)
    });
    let pipelining = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for n in 0..options.concurrency {
        let target = Arc::clone(&target);
        let user = options.user.replace("%n", &n.to_string());
        let pass = options.secret(&user)?;
        let o = options.clone();
        let pipelining = Arc::clone(&pipelining);
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            while Instant::now() < end {
                let r = timeout(
                    o.timeout.max(o.duration + o.warmup),
                    session(&o, &target, &user, &pass, measure, end, &mut tally, &pipelining),
                )
                .await
                .unwrap_or_else(|_| Err("session timed out".into()));
                if let Err(e) = r {
                    tally.error(e);
                    // Do not spin on a refusing server.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            tally
        }));
    }
    let mut total = Tally::new();
    for w in workers {
        total.merge(w.await.map_err(|e| format!("worker: {e}"))?);
    }
    let (server_cpu_s, db_cpu_s, client_cpu_s) =
        sampler.await.map_err(|e| format!("sampler: {e}"))?;
    // Whether the server pipelined, where the run would have used it.
    let pipelined = pipelining.load(Ordering::Relaxed) > 0;
    let pipelining = match options.mode {
        Mode::Pipeline => Some(pipelined),
        Mode::Retr if options.window > 1 => Some(pipelined),
        _ => None,
    };
    Ok(report(
        options,
        options.duration.as_secs_f64(),
        total,
        (server_cpu_s, db_cpu_s),
        client_cpu_s,
        pipelining,
        None,
    ))
}

fn report(
    options: &Options,
    measured_s: f64,
    t: Tally,
    (server_cpu_s, db_cpu_s): (Option<f64>, Option<f64>),
    client_cpu_s: f64,
    pipelining: Option<bool>,
    idle: Option<IdleReport>,
) -> Report {
    let h = &t.latency;
    let latency_us = if h.is_empty() {
        [0; 4]
    } else {
        [h.value_at_quantile(0.5), h.value_at_quantile(0.9), h.value_at_quantile(0.99), h.max()]
    };
    Report {
        options: options.clone(),
        measured_s,
        sessions: t.sessions,
        commands: t.commands,
        messages: t.messages,
        octets: t.octets,
        errors: t.errors,
        first_error: t.first_error,
        latency_us,
        latency_count: h.len(),
        server_cpu_s,
        db_cpu_s,
        client_cpu_s,
        pipelining,
        idle,
    }
}

/// One session of `login`, `retr` or `pipeline`; counts only what completes inside
/// `[measure, end)`.
#[allow(clippy::too_many_arguments)]
async fn session(
    o: &Options,
    target: &Target,
    user: &str,
    pass: &str,
    measure: Instant,
    end: Instant,
    tally: &mut Tally,
    pipelining: &AtomicUsize,
) -> Result<(), String> {
    let t0 = Instant::now();
    let mut conn = Conn::open(target).await?;
    conn.login_with(o.auth, user, pass).await?;
    let in_window = |t: Instant| t >= measure && t < end;
    match o.mode {
        Mode::Login => {
            conn.stat().await?;
            conn.quit().await?;
            let now = Instant::now();
            if t0 >= measure && in_window(now) {
                tally.record(t0);
                tally.sessions += 1;
                tally.commands += 4;
            }
        }
        Mode::Retr => {
            // RFC 2449: no pipelining unless the server says PIPELINING (CAPA is asked only
            // for a window above 1, so that window 1 sends what a plain client sends).
            let window = if o.window > 1 && conn.capa().await? {
                pipelining.fetch_add(1, Ordering::Relaxed);
                o.window
            } else {
                1
            };
            let list = conn.list().await?;
            let msgs: Vec<MsgNum> = list.iter().map(|item| item.msg).collect();
            let more = || Instant::now() < end;
            let done = |i: usize, got: u64, t: Instant| {
                let item = &list[i];
                if got != item.size {
                    return Err(format!(
                        "RETR {}: {got} octets unstuffed, LIST said {}",
                        item.msg, item.size
                    ));
                }
                if in_window(Instant::now()) && t >= measure {
                    tally.record(t);
                    tally.messages += 1;
                    tally.commands += 1;
                    tally.octets += got;
                }
                Ok(())
            };
            conn.retr_window(&msgs, window, more, done).await?;
            conn.quit_raw().await?;
            if in_window(Instant::now()) {
                tally.sessions += 1;
            }
        }
        Mode::Pipeline => {
            let pipelines = conn.capa().await?;
            if pipelines {
                pipelining.fetch_add(1, Ordering::Relaxed);
            }
            let (count, _) = conn.stat().await?;
            // RFC 2449: no pipelining unless the server says PIPELINING.
            let batch = if pipelines { o.batch.max(1) } else { 1 };
            // Pre-encoded: every command of the cycle `LIST 1` .. `LIST count` (or NOOP),
            // copied into the batch buffer; the replies are checked as raw lines.
            let commands: Vec<Vec<u8>> = if count == 0 {
                vec![b"NOOP\r\n".to_vec()]
            } else {
                (1..=count).map(|n| format!("LIST {n}\r\n").into_bytes()).collect()
            };
            let mut out = Vec::with_capacity(batch * 16);
            let mut sent = 0u64;
            let mut next = 0usize;
            while sent < o.commands && Instant::now() < end {
                let t = Instant::now();
                let n = batch.min((o.commands - sent) as usize);
                out.clear();
                for _ in 0..n {
                    out.extend_from_slice(&commands[next]);
                    next = (next + 1) % commands.len();
                }
                conn.pipelined_raw(&out, n).await.map_err(|e| format!("pipelined command: {e}"))?;
                sent += n as u64;
                if in_window(Instant::now()) && t >= measure {
                    tally.record(t);
                    tally.commands += n as u64;
                }
            }
            conn.quit_raw().await?;
            if in_window(Instant::now()) {
                tally.sessions += 1;
            }
        }
        Mode::Idle | Mode::Tcp => unreachable!("handled elsewhere"),
    }
    Ok(())
}

/// Idle mode: C logged-in connections, memory sampled while they are held, NOOP at the end.
async fn idle(options: &Options, target: Arc<Target>) -> Result<Report, String> {
    raise_fd_limit(options.concurrency as u64 + 256);
    if options.per_source > 0 && !target.addr.is_ipv4() {
        return Err("--per-source needs an IPv4 loopback target".into());
    }
    let pss_before = options.pid.and_then(procfs::pss_kib).map(|(k, _)| k);
    let rss_before = options.pid.and_then(procfs::rss_kib).map(|(k, _, _)| k);
    let ramp = Arc::new(tokio::sync::Semaphore::new(options.ramp.max(1)));
    let (go, _) = tokio::sync::broadcast::channel::<()>(1);
    let established = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..options.concurrency {
        let target = Arc::clone(&target);
        let user = options.user.replace("%n", &n.to_string());
        let pass = options.secret(&user)?;
        let auth = options.auth;
        let ramp = Arc::clone(&ramp);
        let mut go = go.subscribe();
        let (established, done) = (Arc::clone(&established), Arc::clone(&done));
        let limit = options.timeout;
        let local = source_address(target.addr, n, options.per_source);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            let permit = ramp.acquire_owned().await;
            let conn = timeout(limit, async {
                let mut c = Conn::open_from(&target, local).await?;
                c.login_with(auth, &user, &pass).await?;
                Ok::<_, String>(c)
            })
            .await
            .unwrap_or_else(|_| Err("connect and login timed out".into()));
            drop(permit);
            done.fetch_add(1, Ordering::Relaxed);
            let mut conn = match conn {
                Ok(c) => {
                    established.fetch_add(1, Ordering::Relaxed);
                    c
                }
                Err(e) => {
                    tally.error(e);
                    return (tally, false);
                }
            };
            let _ = go.recv().await;
            let t = Instant::now();
            let ok = match timeout(limit, conn.noop()).await {
                Ok(Ok(())) => {
                    tally.record(t);
                    tally.commands += 1;
                    true
                }
                Ok(Err(e)) => {
                    tally.error(e);
                    false
                }
                Err(_) => {
                    tally.error("NOOP timed out".into());
                    false
                }
            };
            if ok {
                match timeout(limit, conn.quit()).await {
                    Ok(Ok(())) => tally.sessions += 1,
                    Ok(Err(e)) => tally.error(e),
                    Err(_) => tally.error("QUIT timed out".into()),
                }
            }
            (tally, ok)
        }));
    }
    let setup_deadline = start + options.timeout;
    while done.load(Ordering::Relaxed) < options.concurrency && Instant::now() < setup_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let setup_s = start.elapsed().as_secs_f64();
    let c0 = procfs::self_cpu_seconds();
    let s0 = options.pid.and_then(procfs::cpu_seconds);
    // Let the server settle, sample, hold, sample again.
    let settle = options.duration.min(Duration::from_secs(1)) / 2;
    tokio::time::sleep(settle).await;
    let first = options.pid.and_then(procfs::pss_kib);
    let rss_first = options.pid.and_then(procfs::rss_kib);
    tokio::time::sleep(options.duration - settle).await;
    let second = options.pid.and_then(procfs::pss_kib);
    let rss_second = options.pid.and_then(procfs::rss_kib);
    let s1 = options.pid.and_then(procfs::cpu_seconds);
    let c1 = procfs::self_cpu_seconds();
    let held = match (first, second) {
        (Some(a), Some(b)) => Some(if a.0 >= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    let _ = go.send(());
    let mut total = Tally::new();
    let mut answered = 0;
    for t in tasks {
        let (tally, ok) = t.await.map_err(|e| format!("connection task: {e}"))?;
        total.merge(tally);
        answered += u64::from(ok);
    }
    let idle = IdleReport {
        established: established.load(Ordering::Relaxed) as u64,
        answered,
        setup_s,
        pss_before_kib: pss_before,
        pss_held_kib: held.map(|h| h.0),
        processes: held.map(|h| h.1),
        rss_before_kib: rss_before,
        rss_held_kib: rss_first.into_iter().chain(rss_second).map(|r| r.0).max(),
        hwm_kib: rss_second.or(rss_first).map(|r| r.1),
    };
    let cpu = s0.zip(s1).map(|(a, b)| b - a);
    let secs = options.duration.as_secs_f64();
    Ok(report(options, secs, total, (cpu, None), c1 - c0, None, Some(idle)))
}

/// Raises the soft descriptor limit to `want` (one per connection, and some): up to the hard
/// limit, and past it where the process may raise the hard limit too (root).
fn raise_fd_limit(want: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current.unwrap_or(u64::MAX) >= want {
        return;
    }
    let max = lim.maximum.unwrap_or(u64::MAX);
    if max < want
        && setrlimit(Resource::Nofile, Rlimit { current: Some(want), maximum: Some(want) }).is_ok()
    {
        return;
    }
    let _ =
        setrlimit(Resource::Nofile, Rlimit { current: Some(want.min(max)), maximum: lim.maximum });
    let got = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    if got < want {
        eprintln!(
            "pop3-load: descriptor limit {got} (hard limit {max}; raising it needs \
             CAP_SYS_RESOURCE): connections past about {got} will fail"
        );
    }
}

/// The loopback limit: C TCP streams from an in-process sender, 64 KiB writes, counted by
/// the receiving side over the window.
async fn tcp_limit(options: &Options) -> Result<Report, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let measure = start + options.warmup;
    let end = measure + options.duration;
    let sender = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            conns.push(tokio::spawn(async move {
                let chunk = vec![b'x'; 64 * 1024];
                while Instant::now() < end {
                    if s.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
            }));
        }
    });
    let c0 = Arc::new(std::sync::Mutex::new(0.0));
    let mut readers = Vec::new();
    for _ in 0..options.concurrency {
        let c0 = Arc::clone(&c0);
        readers.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0u64;
            let mut sampled = false;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                if !sampled && now >= measure {
                    sampled = true;
                    let mut c = c0.lock().unwrap_or_else(|e| e.into_inner());
                    if *c == 0.0 {
                        *c = procfs::self_cpu_seconds();
                    }
                }
                let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                if now >= measure {
                    got += n as u64;
                }
            }
            Ok::<u64, String>(got)
        }));
    }
    let mut total = Tally::new();
    for r in readers {
        match r.await.map_err(|e| e.to_string())? {
            Ok(n) => total.octets += n,
            Err(e) => total.error(e),
        }
    }
    sender.abort();
    let c1 = procfs::self_cpu_seconds();
    let c0 = *c0.lock().unwrap_or_else(|e| e.into_inner());
    Ok(report(options, options.duration.as_secs_f64(), total, (None, None), c1 - c0, None, None))
}

impl Report {
    /// The mode's headline rate and its unit.
    pub fn rate(&self) -> (f64, &'static str) {
        let s = self.measured_s.max(1e-9);
        match self.options.mode {
            Mode::Login => (self.sessions as f64 / s, "logins/s"),
            Mode::Retr | Mode::Tcp => (self.octets as f64 / s / 1e6, "MB/s"),
            Mode::Pipeline => (self.commands as f64 / s, "commands/s"),
            Mode::Idle => (self.idle.as_ref().map_or(0, |i| i.established) as f64, "connections"),
        }
    }

    /// Server CPU milliseconds per session (login) or per MB (retr), per 1000 commands
    /// (pipeline).
    pub fn cpu_per_unit(&self) -> Option<(f64, &'static str)> {
        self.per_unit(self.server_cpu_s?)
    }

    /// The database's CPU milliseconds in the same units (`--db-pid`).
    pub fn db_cpu_per_unit(&self) -> Option<(f64, &'static str)> {
        self.per_unit(self.db_cpu_s?)
    }

    fn per_unit(&self, cpu_s: f64) -> Option<(f64, &'static str)> {
        let cpu = cpu_s * 1000.0;
        match self.options.mode {
            Mode::Login if self.sessions > 0 => Some((cpu / self.sessions as f64, "ms/login")),
            Mode::Retr if self.octets > 0 => Some((cpu / (self.octets as f64 / 1e6), "ms/MB")),
            Mode::Pipeline if self.commands > 0 => {
                Some((cpu / (self.commands as f64 / 1000.0), "ms/1000 commands"))
            }
            _ => None,
        }
    }

    /// Server memory per held connection, KiB (idle mode with `--pid`).
    pub fn kib_per_connection(&self) -> Option<f64> {
        let i = self.idle.as_ref()?;
        let (before, held) = (i.pss_before_kib?, i.pss_held_kib?);
        (i.established > 0).then(|| held.saturating_sub(before) as f64 / i.established as f64)
    }

    /// Server resident memory (RSS) per held connection, KiB (idle mode with `--pid`).
    pub fn rss_kib_per_connection(&self) -> Option<f64> {
        let i = self.idle.as_ref()?;
        let (before, held) = (i.rss_before_kib?, i.rss_held_kib?);
        (i.established > 0).then(|| held.saturating_sub(before) as f64 / i.established as f64)
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let o = &self.options;
        let mut s = String::new();
        let timing = if o.mode == Mode::Idle {
            format!("held {:.1} s", self.measured_s)
        } else {
            format!(
                "{:.1} s measured after {:.1} s warm-up",
                self.measured_s,
                o.warmup.as_secs_f64()
            )
        };
        let _ = writeln!(
            s,
            "pop3-load {:?} against {} ({:?}), {} connections, {timing}",
            o.mode,
            if o.mode == Mode::Tcp { "in-process loopback sender" } else { &o.target },
            o.tls,
            o.concurrency,
        );
        let (rate, unit) = self.rate();
        let _ = writeln!(s, "  {:<22}{rate:>14.1} {unit}", "rate");
        let _ = writeln!(s, "  {:<22}{:>14}", "sessions", self.sessions);
        let _ = writeln!(s, "  {:<22}{:>14}", "commands", self.commands);
        if self.messages > 0 || o.mode == Mode::Retr {
            let _ = writeln!(s, "  {:<22}{:>14}", "messages", self.messages);
        }
        if self.octets > 0 {
            let _ = writeln!(s, "  {:<22}{:>14.1} MB", "payload", self.octets as f64 / 1e6);
        }
        if self.latency_count > 0 {
            let what = match o.mode {
                Mode::Login => "session",
                Mode::Retr => "RETR",
                Mode::Pipeline => "batch",
                Mode::Idle => "final NOOP",
                Mode::Tcp => "-",
            };
            let [p50, p90, p99, max] = self.latency_us.map(|v| v as f64 / 1000.0);
            let _ = writeln!(
                s,
                "  {:<22}p50 {p50:.3} ms  p90 {p90:.3} ms  p99 {p99:.3} ms  max {max:.3} ms",
                format!("latency ({what})")
            );
        }
        if let Some(cpu) = self.server_cpu_s {
            let per =
                self.cpu_per_unit().map(|(v, u)| format!(" ({v:.3} {u})")).unwrap_or_default();
            let _ = writeln!(s, "  {:<22}{cpu:>14.2} s{per}", "server CPU");
        }
        if let Some(cpu) = self.db_cpu_s {
            let per =
                self.db_cpu_per_unit().map(|(v, u)| format!(" ({v:.3} {u})")).unwrap_or_default();
            let _ = writeln!(s, "  {:<22}{cpu:>14.2} s{per}", "database CPU");
        }
        let _ = writeln!(s, "  {:<22}{:>14.2} s", "load generator CPU", self.client_cpu_s);
        if let Some(p) = self.pipelining {
            let _ = writeln!(
                s,
                "  {:<22}{:>14}",
                "PIPELINING",
                match (p, o.mode) {
                    (true, Mode::Retr) => format!("yes (window {})", o.window),
                    (true, _) => "yes".to_owned(),
                    (false, _) => "no (window 1)".to_owned(),
                }
            );
        }
        if let Some(i) = &self.idle {
            let _ = writeln!(
                s,
                "  {:<22}{:>14} ({:.1} s to set up)",
                "logged in", i.established, i.setup_s
            );
            let _ = writeln!(s, "  {:<22}{:>14}", "answered NOOP", i.answered);
            if let (Some(b), Some(h)) = (i.pss_before_kib, i.pss_held_kib) {
                let _ = writeln!(
                    s,
                    "  {:<22}{:>14.1} MiB held, {:.1} MiB before, {} processes",
                    "server PSS",
                    h as f64 / 1024.0,
                    b as f64 / 1024.0,
                    i.processes.unwrap_or(0)
                );
            }
            if let Some(k) = self.kib_per_connection() {
                let _ = writeln!(s, "  {:<22}{k:>14.1} KiB", "PSS per connection");
            }
            if let (Some(b), Some(h), Some(peak)) = (i.rss_before_kib, i.rss_held_kib, i.hwm_kib) {
                let _ = writeln!(
                    s,
                    "  {:<22}{:>14.1} MiB held, {:.1} MiB before, peak (VmHWM) {:.1} MiB",
                    "server RSS",
                    h as f64 / 1024.0,
                    b as f64 / 1024.0,
                    peak as f64 / 1024.0
                );
            }
            if let Some(k) = self.rss_kib_per_connection() {
                let _ = writeln!(s, "  {:<22}{k:>14.1} KiB", "RSS per connection");
            }
        }
        let _ = writeln!(
            s,
            "  {:<22}{:>14}{}",
            "errors",
            self.errors,
            self.first_error.as_ref().map(|e| format!(" (first: {e})")).unwrap_or_default()
        );
        s
    }

    /// The report as one JSON object.
    pub fn json(&self) -> serde_json::Value {
        let o = &self.options;
        let (rate, unit) = self.rate();
        let [p50, p90, p99, max] = self.latency_us;
        let mut v = serde_json::json!({
            "mode": format!("{:?}", o.mode).to_lowercase(),
            "target": o.target,
            "tls": format!("{:?}", o.tls).to_lowercase(),
            "concurrency": o.concurrency,
            "measured_s": self.measured_s,
            "rate": rate,
            "unit": unit,
            "sessions": self.sessions,
            "commands": self.commands,
            "messages": self.messages,
            "octets": self.octets,
            "p50_us": p50, "p90_us": p90, "p99_us": p99, "max_us": max,
            "latency_count": self.latency_count,
            "server_cpu_s": self.server_cpu_s,
            "client_cpu_s": self.client_cpu_s,
            "cpu_per_unit": self.cpu_per_unit().map(|c| c.0),
            "cpu_unit": self.cpu_per_unit().map(|c| c.1),
            "db_cpu_s": self.db_cpu_s,
            "db_cpu_per_unit": self.db_cpu_per_unit().map(|c| c.0),
            "errors": self.errors,
            "first_error": self.first_error,
        });
        if let Some(p) = self.pipelining {
            v["pipelining"] = p.into();
            if o.mode == Mode::Retr {
                v["window"] = (if p { o.window } else { 1 }).into();
            } else {
                v["batch"] = o.batch.into();
            }
        }
        if let Some(i) = &self.idle {
            v["established"] = i.established.into();
            v["answered"] = i.answered.into();
            v["setup_s"] = i.setup_s.into();
            v["pss_before_kib"] = i.pss_before_kib.into();
            v["pss_held_kib"] = i.pss_held_kib.into();
            v["processes"] = i.processes.into();
            v["kib_per_connection"] = self.kib_per_connection().into();
            v["rss_before_kib"] = i.rss_before_kib.into();
            v["rss_held_kib"] = i.rss_held_kib.into();
            v["hwm_kib"] = i.hwm_kib.into();
            v["rss_kib_per_connection"] = self.rss_kib_per_connection().into();
            v["per_source"] = o.per_source.into();
        }
        v
    }
}
