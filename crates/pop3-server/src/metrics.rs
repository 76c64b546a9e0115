//! The server's counters, in the Prometheus text format (version 0.0.4).
//!
//! Every counter is a plain atomic in one process-wide static: recording one is a relaxed
//! `fetch_add` on an array slot picked by small fixed enums, with no lock, no allocation and
//! no label lookup on the session's path. Only a scrape walks them, through
//! `prometheus-client`'s encoder (a [`Collector`] over the statics). One process serves one
//! POP3 server, so the counters are the process's.
//!
//! [`http`] serves them, with a health check, on a listener of their own.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

pub mod http;

/// Why a connection (or, for `PerUserIp`, a login) was refused by a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `max_connections`.
    Total,
    /// `max_connections_per_ip`, before login.
    PerIp,
    /// `max_connections_per_user_ip`, at login.
    PerUserIp,
    /// The password-check queue (`auth_queue`) was full.
    AuthQueue,
    /// The client network had too many failed logins waiting (penalty queue).
    PenaltyQueue,
}

impl Limit {
    const ALL: [Self; 5] =
        [Self::Total, Self::PerIp, Self::PerUserIp, Self::AuthQueue, Self::PenaltyQueue];
    fn label(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::PerIp => "per_ip",
            Self::PerUserIp => "per_user_ip",
            Self::AuthQueue => "auth_queue",
            Self::PenaltyQueue => "penalty_queue",
        }
    }
}

/// How a client logged in (or tried to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    UserPass,
    Apop,
    Plain,
    Login,
    CramMd5,
    ScramSha256,
    OAuthBearer,
    XOAuth2,
}

impl Method {
    const ALL: [Self; 8] = [
        Self::UserPass,
        Self::Apop,
        Self::Plain,
        Self::Login,
        Self::CramMd5,
        Self::ScramSha256,
        Self::OAuthBearer,
        Self::XOAuth2,
    ];

    /// The name the protocol and the logs use (`USER` for USER/PASS).
    pub fn label(self) -> &'static str {
        match self {
            Self::UserPass => "USER",
            Self::Apop => "APOP",
            Self::Plain => "PLAIN",
            Self::Login => "LOGIN",
            Self::CramMd5 => "CRAM-MD5",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::OAuthBearer => "OAUTHBEARER",
            Self::XOAuth2 => "XOAUTH2",
        }
    }

    /// From a log name (`USER/PASS`, a SASL mechanism's name, `APOP`); unknown names count as
    /// USER/PASS, which cannot happen for names the session produces.
    pub fn from_name(name: &str) -> Self {
        match name {
            "APOP" => Self::Apop,
            "PLAIN" => Self::Plain,
            "LOGIN" => Self::Login,
            "CRAM-MD5" => Self::CramMd5,
            "SCRAM-SHA-256" => Self::ScramSha256,
            "OAUTHBEARER" => Self::OAuthBearer,
            "XOAUTH2" => Self::XOAuth2,
            _ => Self::UserPass,
        }
    }
}

/// How a login attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResult {
    /// Logged in (`+OK`).
    Ok,
    /// Wrong password, unknown user, bad token or proof (`-ERR [AUTH]`).
    BadCredentials,
    /// The users backend or the maildrop failed for now (`-ERR [SYS/TEMP]`).
    Temporary,
    /// Refused unchecked: a queue was full (`-ERR [SYS/TEMP]`, see `pop3_connections_refused`).
    Refused,
    /// The maildrop is locked by another session, or the per-user-ip limit (`-ERR [IN-USE]`).
    InUse,
    /// The maildrop cannot be used (`-ERR [SYS/PERM]`).
    Permanent,
}

impl LoginResult {
    const ALL: [Self; 6] = [
        Self::Ok,
        Self::BadCredentials,
        Self::Temporary,
        Self::Refused,
        Self::InUse,
        Self::Permanent,
    ];

    /// The name the metrics and the audit log use.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::BadCredentials => "bad_credentials",
            Self::Temporary => "temporary",
            Self::Refused => "refused",
            Self::InUse => "in_use",
            Self::Permanent => "permanent",
        }
    }
}

/// The commands counted by name; anything else (and garbage) is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    User,
    Pass,
    Stat,
    List,
    Retr,
    Top,
    Dele,
    Uidl,
    Noop,
    Rset,
    Quit,
    Capa,
    Auth,
    Apop,
    Stls,
    Other,
}

impl Command {
    const ALL: [Self; 16] = [
        Self::User,
        Self::Pass,
        Self::Stat,
        Self::List,
        Self::Retr,
        Self::Top,
        Self::Dele,
        Self::Uidl,
        Self::Noop,
        Self::Rset,
        Self::Quit,
        Self::Capa,
        Self::Auth,
        Self::Apop,
        Self::Stls,
        Self::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::User => "USER",
            Self::Pass => "PASS",
            Self::Stat => "STAT",
            Self::List => "LIST",
            Self::Retr => "RETR",
            Self::Top => "TOP",
            Self::Dele => "DELE",
            Self::Uidl => "UIDL",
            Self::Noop => "NOOP",
            Self::Rset => "RSET",
            Self::Quit => "QUIT",
            Self::Capa => "CAPA",
            Self::Auth => "AUTH",
            Self::Apop => "APOP",
            Self::Stls => "STLS",
            Self::Other => "other",
        }
    }

    /// The command a line starts with (its keyword is case-insensitive, RFC 1939 §3), from
    /// the line's first bytes: no allocation.
    pub fn of_line(line: &[u8]) -> Self {
        let end = line.iter().position(|&b| b == b' ' || b == b'\r' || b == b'\n');
        let word = &line[..end.unwrap_or(line.len())];
        let mut upper = [0u8; 4];
        if word.len() > 4 || word.len() < 3 {
            return Self::Other;
        }
        for (u, b) in upper.iter_mut().zip(word) {
            *u = b.to_ascii_uppercase();
        }
        match &upper[..word.len()] {
            b"USER" => Self::User,
            b"PASS" => Self::Pass,
            b"STAT" => Self::Stat,
            b"LIST" => Self::List,
            b"RETR" => Self::Retr,
            b"TOP" => Self::Top,
            b"DELE" => Self::Dele,
            b"UIDL" => Self::Uidl,
            b"NOOP" => Self::Noop,
            b"RSET" => Self::Rset,
            b"QUIT" => Self::Quit,
            b"CAPA" => Self::Capa,
            b"AUTH" => Self::Auth,
            b"APOP" => Self::Apop,
            b"STLS" => Self::Stls,
            _ => Self::Other,
        }
    }
}

/// Which TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsKind {
    /// On a POP3S listener (RFC 8314).
    Implicit,
    /// After STLS (RFC 2595).
    Stls,
}

/// Which backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The users backend (file, PostgreSQL, LDAP, token validation) answered "try later".
    Users,
    /// The mail store: a maildrop that cannot be opened, read or committed.
    Mail,
}

/// An LMTP recipient's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// `250`: the copy is durable.
    Accepted,
    /// `451`: the MTA retries.
    Temporary,
    /// `550`: no such user; the MTA bounces.
    Permanent,
}

/// Upper bounds, in seconds, of the password-check latency histogram: from a SHA-crypt check
/// (about a millisecond) to a slow LDAP bind or token introspection.
const AUTH_BUCKETS: [f64; 12] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// A histogram of atomics: one count per bucket (not cumulative; summed at a scrape), the
/// sum in nanoseconds, and the count.
struct Histogram {
    buckets: [AtomicU64; AUTH_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = AUTH_BUCKETS.iter().position(|&b| seconds <= b).unwrap_or(AUTH_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        self.count.fetch_add(1, Relaxed);
    }
}

// Initializers of the static below: each use is a fresh atomic (the array-repeat idiom for
// types that are not `Copy`), never a shared one.
#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const LOGIN_ROW: [AtomicU64; LoginResult::ALL.len()] = [ZERO; LoginResult::ALL.len()];
#[allow(clippy::declare_interior_mutable_const)]
const TLS_ROW: [AtomicU64; 2] = [ZERO; 2];

/// All counters. Indexed by the enums' discriminants.
struct Counters {
    connections_open: AtomicI64,
    connections: AtomicU64,
    refused: [AtomicU64; Limit::ALL.len()],
    logins: [[AtomicU64; LoginResult::ALL.len()]; Method::ALL.len()],
    auth_duration: Histogram,
    penalties: AtomicU64,
    commands: [AtomicU64; Command::ALL.len()],
    message_bytes: AtomicU64,
    sendfile_bodies: AtomicU64,
    commits: [AtomicU64; 2],
    deleted: AtomicU64,
    lock_conflicts: AtomicU64,
    tls: [[AtomicU64; 2]; 2],
    backend_errors: [AtomicU64; 2],
    lmtp: [AtomicU64; 3],
}

static COUNTERS: Counters = Counters {
    connections_open: AtomicI64::new(0),
    connections: ZERO,
    refused: [ZERO; Limit::ALL.len()],
    logins: [LOGIN_ROW; Method::ALL.len()],
    auth_duration: Histogram {
        buckets: [ZERO; AUTH_BUCKETS.len() + 1],
        sum_nanos: ZERO,
        count: ZERO,
    },
    penalties: ZERO,
    commands: [ZERO; Command::ALL.len()],
    message_bytes: ZERO,
    sendfile_bodies: ZERO,
    commits: [ZERO; 2],
    deleted: ZERO,
    lock_conflicts: ZERO,
    tls: [TLS_ROW; 2],
    backend_errors: [ZERO; 2],
    lmtp: [ZERO; 3],
};

/// A connection was accepted (before any limit).
pub(crate) fn connection_accepted() {
    COUNTERS.connections.fetch_add(1, Relaxed);
}

/// A session took (`1`) or released (`-1`) its connection slot.
pub(crate) fn connections_open(delta: i64) {
    COUNTERS.connections_open.fetch_add(delta, Relaxed);
}

pub(crate) fn refused(limit: Limit) {
    COUNTERS.refused[limit as usize].fetch_add(1, Relaxed);
}

pub(crate) fn login(method: Method, result: LoginResult) {
    COUNTERS.logins[method as usize][result as usize].fetch_add(1, Relaxed);
}

/// The time a credential check took on the password-check pool.
pub(crate) fn auth_duration(elapsed: Duration) {
    COUNTERS.auth_duration.observe(elapsed);
}

/// An attempt had to wait for earlier failures (see `penalty.rs`).
pub(crate) fn penalty_applied() {
    COUNTERS.penalties.fetch_add(1, Relaxed);
}

pub(crate) fn command(command: Command) {
    COUNTERS.commands[command as usize].fetch_add(1, Relaxed);
}

/// Bytes of a RETR or TOP response written to the client (status line and terminator
/// included).
pub(crate) fn message_bytes(bytes: u64) {
    COUNTERS.message_bytes.fetch_add(bytes, Relaxed);
}

/// A RETR body sent from its file unstuffed (a message stored in wire form): `sendfile`,
/// short stretches read.
pub(crate) fn direct_body() {
    COUNTERS.sendfile_bodies.fetch_add(1, Relaxed);
}

/// An UPDATE state commit, and the messages it removed.
pub(crate) fn commit(ok: bool, deleted: usize) {
    COUNTERS.commits[usize::from(!ok)].fetch_add(1, Relaxed);
    if ok {
        COUNTERS.deleted.fetch_add(deleted as u64, Relaxed);
    }
}

pub(crate) fn lock_conflict() {
    COUNTERS.lock_conflicts.fetch_add(1, Relaxed);
}

pub(crate) fn tls_handshake(kind: TlsKind, ok: bool) {
    COUNTERS.tls[kind as usize][usize::from(!ok)].fetch_add(1, Relaxed);
}

pub(crate) fn backend_error(backend: Backend) {
    COUNTERS.backend_errors[backend as usize].fetch_add(1, Relaxed);
}

pub(crate) fn lmtp_delivery(outcome: Delivery) {
    COUNTERS.lmtp[outcome as usize].fetch_add(1, Relaxed);
}

/// Encodes the counters for a scrape.
#[derive(Debug)]
struct Pop3Collector;

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Relaxed)
}

/// One counter family with one label.
fn counter_family<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &'a str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in values {
        let labels = [(label, value)];
        let mut family = metric.encode_family(&labels)?;
        family.encode_counter::<NoLabelSet, _, u64>(&count, None)?;
    }
    Ok(())
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    metric.encode_counter::<NoLabelSet, _, u64>(&value, None)
}

impl Collector for Pop3Collector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let c = &COUNTERS;
        let open = c.connections_open.load(Relaxed).max(0);
        let mut metric = encoder.encode_descriptor(
            "pop3_connections_open",
            "POP3 sessions holding a connection slot now",
            None,
            MetricType::Gauge,
        )?;
        metric.encode_gauge(&open)?;
        counter(
            &mut encoder,
            "pop3_connections",
            "POP3 connections accepted",
            get(&c.connections),
        )?;
        counter_family(
            &mut encoder,
            "pop3_connections_refused",
            "Connections or logins refused by a limit, by limit",
            "limit",
            Limit::ALL.iter().map(|l| (l.label(), get(&c.refused[*l as usize]))),
        )?;
        let mut metric = encoder.encode_descriptor(
            "pop3_logins",
            "Login attempts, by method and result",
            None,
            MetricType::Counter,
        )?;
        for method in Method::ALL {
            for result in LoginResult::ALL {
                let labels = [("mechanism", method.label()), ("result", result.label())];
                let value = get(&c.logins[method as usize][result as usize]);
                metric
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
            }
        }
        let h = &c.auth_duration;
        // Per-bucket counts: the encoder sums them into Prometheus's cumulative buckets.
        let buckets: Vec<(f64, u64)> = AUTH_BUCKETS
            .iter()
            .chain(std::iter::once(&f64::INFINITY))
            .zip(&h.buckets)
            .map(|(&bound, n)| (bound, get(n)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let mut metric = encoder.encode_descriptor(
            "pop3_auth_duration_seconds",
            "Time a credential check took on its worker thread",
            None,
            MetricType::Histogram,
        )?;
        metric.encode_histogram::<NoLabelSet>(
            get(&h.sum_nanos) as f64 / 1e9,
            count,
            &buckets,
            None,
        )?;
        counter(
            &mut encoder,
            "pop3_auth_penalties",
            "Login attempts delayed for earlier failures of their network or user",
            get(&c.penalties),
        )?;
        counter_family(
            &mut encoder,
            "pop3_commands",
            "Command lines received, by command",
            "command",
            Command::ALL.iter().map(|k| (k.label(), get(&c.commands[*k as usize]))),
        )?;
        counter(
            &mut encoder,
            "pop3_message_bytes_sent",
            "Bytes of RETR and TOP responses written to clients",
            get(&c.message_bytes),
        )?;
        counter(
            &mut encoder,
            "pop3_retr_sendfile",
            "RETR bodies sent from the message file by sendfile, short stretches read (stored in wire form, plain TCP)",
            get(&c.sendfile_bodies),
        )?;
        counter_family(
            &mut encoder,
            "pop3_commits",
            "UPDATE state commits, by result",
            "result",
            [("ok", get(&c.commits[0])), ("failed", get(&c.commits[1]))],
        )?;
        counter(
            &mut encoder,
            "pop3_deleted_messages",
            "Messages removed by UPDATE commits",
            get(&c.deleted),
        )?;
        counter(
            &mut encoder,
            "pop3_lock_conflicts",
            "Logins refused because another session holds the maildrop (IN-USE)",
            get(&c.lock_conflicts),
        )?;
        let mut metric = encoder.encode_descriptor(
            "pop3_tls_handshakes",
            "TLS handshakes, by kind (implicit, stls) and result",
            None,
            MetricType::Counter,
        )?;
        for (kind, k) in [("implicit", TlsKind::Implicit), ("stls", TlsKind::Stls)] {
            for (result, r) in [("ok", 0), ("failed", 1)] {
                let labels = [("kind", kind), ("result", result)];
                let value = get(&c.tls[k as usize][r]);
                metric
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
            }
        }
        counter_family(
            &mut encoder,
            "pop3_backend_errors",
            "Temporary failures of the users backend or the mail store",
            "backend",
            [("users", get(&c.backend_errors[0])), ("mail", get(&c.backend_errors[1]))],
        )?;
        counter_family(
            &mut encoder,
            "pop3_lmtp_deliveries",
            "LMTP recipients, by outcome",
            "result",
            [
                ("accepted", get(&c.lmtp[0])),
                ("temporary", get(&c.lmtp[1])),
                ("permanent", get(&c.lmtp[2])),
            ],
        )?;
        Ok(())
    }
}

/// The counters in the Prometheus text format, version 0.0.4 (what `promtool check metrics`
/// reads).
pub fn render() -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Pop3Collector));
    let mut text = String::with_capacity(8 * 1024);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `name` (with its labels, exactly as rendered).
    fn sample(text: &str, name: &str) -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn command_keywords_are_recognised_case_insensitively_without_allocating() {
        assert_eq!(Command::of_line(b"retr 1\r\n"), Command::Retr);
        assert_eq!(Command::of_line(b"TOP 1 0\r\n"), Command::Top);
        assert_eq!(Command::of_line(b"QUIT\r\n"), Command::Quit);
        assert_eq!(Command::of_line(b"quit"), Command::Quit);
        assert_eq!(Command::of_line(b"XTND\r\n"), Command::Other);
        assert_eq!(Command::of_line(b"RETRIEVE 1\r\n"), Command::Other);
        assert_eq!(Command::of_line(b"\r\n"), Command::Other);
    }

    #[test]
    fn recorded_values_show_in_the_rendering() {
        let before = render();
        login(Method::Plain, LoginResult::BadCredentials);
        login(Method::Plain, LoginResult::BadCredentials);
        command(Command::Stls);
        auth_duration(Duration::from_millis(3));
        lmtp_delivery(Delivery::Permanent);
        tls_handshake(TlsKind::Stls, false);
        let after = render();
        let moved = |name: &str| sample(&after, name) - sample(&before, name);
        assert_eq!(moved(r#"pop3_logins_total{mechanism="PLAIN",result="bad_credentials"}"#), 2);
        assert_eq!(moved(r#"pop3_commands_total{command="STLS"}"#), 1);
        assert_eq!(moved(r#"pop3_auth_duration_seconds_bucket{le="0.005"}"#), 1);
        assert_eq!(moved(r#"pop3_auth_duration_seconds_bucket{le="0.0025"}"#), 0);
        assert_eq!(moved(r#"pop3_auth_duration_seconds_bucket{le="+Inf"}"#), 1);
        assert_eq!(moved(r#"pop3_lmtp_deliveries_total{result="permanent"}"#), 1);
        assert_eq!(moved(r#"pop3_tls_handshakes_total{kind="stls",result="failed"}"#), 1);
        assert!(after.contains("# TYPE pop3_logins_total counter"), "{after}");
        assert!(after.contains("# TYPE pop3_connections_open gauge"), "{after}");
    }
}
