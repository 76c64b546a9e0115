//! `pop3d.toml`: every setting, with the defaults of a fresh data dir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The configuration file written into a new data dir: every setting, commented.
pub const DEFAULT_CONFIG: &str = r#"# pop3d configuration. Relative paths are relative to the directory of this file.
# Check it with `pop3d check-config`; reload users and TLS files with SIGHUP.

[server]
# Plain POP3 listeners (STLS offered when [tls] is set). Port 110 in production.
listen = ["127.0.0.1:1110"]
# Implicit-TLS (POP3S) listeners; they need [tls]. Port 995 in production.
listen_tls = ["127.0.0.1:1995"]
# Host name for the APOP timestamp and the CRAM-MD5 challenge.
hostname = "localhost"
# Accept USER/PASS and AUTH PLAIN/LOGIN on connections that are neither TLS nor loopback.
# Leave off unless clients truly cannot do TLS: their passwords cross the network in clear.
allow_plaintext_without_tls = false
# Treat loopback connections like TLS ones for plaintext passwords. Turn off when a proxy on
# this host forwards remote clients without the PROXY protocol (see proxy_from).
trust_loopback = true
# Load balancers (HAProxy with send-proxy or send-proxy-v2) in front of pop3d: connections
# from these networks must start with a PROXY protocol header (v1 or v2), read within 5 s,
# even before TLS; the client address it carries is then used for limits, penalties,
# trust_loopback and logs. Empty: no header is ever read, from anyone.
proxy_from = []
# When started as root: bind the listeners, then switch to this user (and its group).
# run_as = "pop3d"

[tls]
# PEM certificate chain and private key. A fresh data dir gets a self-signed pair for
# localhost; use your CA's (e.g. Let's Encrypt's fullchain.pem and privkey.pem) in production.
# Without this section there is no TLS at all (no STLS, listen_tls must be empty).
cert = "tls/cert.pem"
key = "tls/key.pem"
# More certificates, chosen by the name the client asks for (SNI); the pair above stays the
# default. Reloaded with it on SIGHUP.
# [[tls.sni]]
# names = ["mail.example.org", "*.example.net"]
# cert = "/etc/letsencrypt/live/mail.example.org/fullchain.pem"
# key = "/etc/letsencrypt/live/mail.example.org/privkey.pem"

[users]
# Dovecot passwd-file format: user:{SCHEME}hash:uid:gid:gecos:home:shell:extra
# Changes are picked up at the next login.
file = "users"
# Or users from PostgreSQL ([postgresql] url), instead of the file: a query with the user
# name as $1 (bound, never put into the SQL) returning the password as {SCHEME}hash, and
# optionally a column named home (the location's %h). PostfixAdmin's schema:
# sql = "SELECT password FROM mailbox WHERE username = $1 AND active"

[mail]
# "maildir", "mbox", or "postgresql" (the [postgresql] database; location is then unused).
format = "maildir"
# Where each user's maildrop is: %u = user name, %n and %d = its parts before and after @,
# %h = home field of the users file, %% = a percent sign.
location = "mail/%u"
# Create a missing Maildir on first use.
create = true
# Moving from Dovecot: its pop3_uidl_format, so that the messages of each Maildir's
# dovecot-uidlist keep the UIDLs Dovecot served. %08Xu%08Xv is Dovecot's default; also
# e.g. "%u%v", "%v.%u", "%f", "%g" (%m is not supported).
dovecot_uidl_format = "%08Xu%08Xv"

[auth]
# SASL mechanisms offered, in order of preference: PLAIN, LOGIN, SCRAM-SHA-256, CRAM-MD5;
# "APOP" offers APOP too. USER/PASS is always accepted. SCRAM-SHA-256 needs {PLAIN} or
# {SCRAM-SHA-256} passwords, CRAM-MD5 {PLAIN} or {CRAM-MD5}, APOP {PLAIN}: a user whose
# password cannot serve an offered mechanism fails that mechanism alone (logged) and can still
# log in with the others. Clients pick the strongest offered, so offer only what your users'
# passwords can serve. "OAUTHBEARER" and "XOAUTH2" take OAuth 2.0 access tokens ([oauth]).
mechanisms = ["PLAIN", "LOGIN"]
# A secret (created on first start) that keys SCRAM salts, so that they stay the same across
# restarts for known and unknown users alike.
secret_file = "secret"

[limits]
# Idle time allowed before login, in seconds; only complete command lines count as activity.
idle_timeout_authorization = 60
# Time allowed from connect to a successful login, in seconds, however active the client.
login_timeout = 180
# Command lines accepted before login (a client needs about six).
max_commands_before_login = 30
# Idle time allowed after login, in seconds (RFC 1939 §3: at least 600).
idle_timeout_transaction = 600
# Pause before answering a failed login, in milliseconds (only that session waits).
auth_failure_delay_ms = 2000
# Failed logins are counted per client network (IPv4 address, IPv6 /64) and per user across
# connections; each later attempt waits before it is checked: 2, 4, 8, then 15 s (capped). A
# count is forgotten auth_penalty_window seconds after its last failure, and a correct login
# clears it. At most auth_penalty_entries networks and users are tracked.
auth_penalty_initial_ms = 2000
auth_penalty_max_ms = 15000
auth_penalty_window = 900
auth_penalty_entries = 100000
# Threads that check passwords (0: one per core) and checks that may wait for one; beyond
# that a login gets -ERR [SYS/TEMP] at once. Bounds the memory of Argon2 hashes under attack.
auth_workers = 0
auth_queue = 1024
# Unknown, malformed or out-of-state commands before the connection is closed.
max_bad_commands = 20
# Failed logins on one connection before it is closed.
max_failed_logins = 3
# Simultaneous connections in total, per client IP address before login, and per user and
# client IP address after login.
max_connections = 1000
max_connections_per_ip = 100
max_connections_per_user_ip = 10

[log]
# error, warn, info, debug or trace (`serve --log-level` overrides it; RUST_LOG directives
# such as pop3_server=debug add detail on top). Passwords are never logged.
level = "info"
# "text" (key=value lines) or "json" (one JSON object a line, for a log pipeline). Each login
# attempt writes an audit event (target pop3d::audit: user, client, mechanism, tls, result,
# reason, duration_ms), each session a summary when it closes.
format = "text"

# [lmtp]
# LMTP delivery from the MTA (RFC 2033), e.g. Postfix's virtual_transport = lmtp:...; off
# unless listen or socket is set. Replies 250 for a recipient only once its copy is on disk.
# listen = ["127.0.0.1:24"]
# A Unix-domain socket (a stale one is replaced), with these permissions.
# socket = "/run/pop3d/lmtp.sock"
# socket_mode = 0o660
# Largest message in octets (announced as SIZE), recipients per message, connections,
# idle seconds.
# max_message_size = 52428800
# max_recipients = 100
# max_connections = 100
# idle_timeout = 300

# [metrics]
# Prometheus metrics (GET /metrics) and a health check (GET /health: 200 when serving and the
# mail store answers, else 503 with the reason) over HTTP on a listener of their own; off
# unless listen is set. Keep it on loopback or a management network: it has no login.
# `pop3d status` asks the running server here.
# listen = "127.0.0.1:9110"

# [oauth]
# OAuth 2.0 access tokens for OAUTHBEARER and XOAUTH2 (add them to [auth] mechanisms); offered,
# like passwords, only over TLS or where plaintext is allowed. A token is checked as a JWT
# against the issuer's keys (found by OpenID Connect discovery, or jwks_url / jwks_file), or by
# RFC 7662 introspection (introspection_url, client_id, client_secret_file). The user is the
# user_claim of the token, and must be a known user unless allow_unknown_users = true.
# issuer = "https://login.microsoftonline.com/TENANT-ID/v2.0"
# audience = ["api://pop3.example.org"]
# user_claim = "email"
# scope = ["pop3"]
# ca_file = "/etc/pop3d/idp-ca.pem"
# timeout = 5
# clock_skew = 60

# [postgresql]
# The database of [mail] format = "postgresql" and [users] sql, shared by any number of pop3d
# nodes (create its schema with `pop3d db migrate`; serve migrates a schema that is behind).
# A libpq-style URL: a Unix socket (postgresql://pop3d@%2Frun%2Fpostgresql/mail), or TCP;
# across a network add ?sslmode=verify-full&sslrootcert=/etc/pop3d/db-ca.pem (TLS, the
# server's certificate verified; without sslmode there is no TLS).
# url = "postgresql://pop3d@localhost/mail"
# Connections each node keeps for sessions and deliveries (besides one for maildrop locks);
# each is borrowed for one short step, so a few serve thousands of sessions.
# pool_size = 16

# [ldap]
# Users from an LDAP directory instead of the users file (this section's presence chooses it).
# Passwords are checked by binding as the user; the directory compares the hash.
# url = "ldaps://ldap.example.org"
# Or ldap:// with StartTLS. ldap:// without TLS only to a loopback host, or with
# allow_plaintext = true (passwords would then cross the network in clear).
# starttls = false
# CAs to trust (PEM) instead of the system's roots.
# ca_file = "/etc/pop3d/ldap-ca.pem"
# Either a DN template (%u = the user name, escaped for a DN)...
# bind_dn = "uid=%u,ou=people,dc=example,dc=org"
# ...or search-then-bind: one entry under base matching filter (%u escaped for a filter),
# searched as search_dn (its password in a file, first line) or anonymously.
# base = "ou=people,dc=example,dc=org"
# filter = "(&(objectClass=inetOrgPerson)(uid=%u))"
# search_dn = "cn=pop3d,ou=services,dc=example,dc=org"
# search_password_file = "/etc/pop3d/ldap.pw"
# The attribute giving [mail] location's %h.
# home_attribute = "homeDirectory"
# Connections to the directory, each used by one login at a time.
# pool_size = 8
# Seconds allowed for connecting and for each operation; past it: -ERR [SYS/TEMP].
# timeout = 5
"#;

/// The maildrops as POP3 sessions open them, and the same store as a storage backend.
pub type Stores =
    (std::sync::Arc<dyn pop3_server::Mailboxes>, std::sync::Arc<dyn pop3_storage::Backend>);

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub server: ServerSection,
    pub tls: TlsSection,
    pub users: UsersSection,
    pub mail: MailSection,
    pub auth: AuthSection,
    pub limits: LimitsSection,
    pub log: LogSection,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgresql: Option<PostgresqlSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lmtp: Option<LmtpSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth: Option<crate::oauth::OAuthSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ldap: Option<crate::ldap::LdapSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<crate::metrics::MetricsSection>,
}

/// `[lmtp]`: the LMTP delivery listeners. Left out, or without `listen` and `socket`, there
/// are none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LmtpSection {
    pub listen: Vec<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    pub socket_mode: u32,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub idle_timeout: u64,
}

impl Default for LmtpSection {
    fn default() -> Self {
        let d = pop3_server::LmtpSettings::default();
        Self {
            listen: Vec::new(),
            socket: None,
            socket_mode: 0o660,
            max_message_size: d.session.max_message_size,
            max_recipients: d.session.max_recipients,
            max_connections: d.max_connections,
            idle_timeout: d.session.idle_timeout.as_secs(),
        }
    }
}

/// `[postgresql]`: where the schema `pop3d db migrate` manages lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresqlSection {
    /// A libpq-style URL or key=value string; its password is never printed.
    #[serde(serialize_with = "serialize_redacted")]
    pub url: String,
    /// Connections per node for sessions and deliveries.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

fn default_pool_size() -> usize {
    pop3_storage::postgres::PgOptions::default().pool_size
}

fn serialize_redacted<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_password(url))
}

/// `url` with its password, if any, replaced by `****` (check-config prints the settings).
pub fn redact_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                return format!("{scheme}://{}:****{}", &rest[..colon], &rest[at..]);
            }
        }
        return url.to_owned();
    }
    // key=value form: password=... up to the next space (quoted values are redacted whole).
    url.split(' ')
        .map(|pair| if pair.starts_with("password=") { "password=****" } else { pair })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    pub listen: Vec<SocketAddr>,
    pub listen_tls: Vec<SocketAddr>,
    pub hostname: String,
    pub allow_plaintext_without_tls: bool,
    pub trust_loopback: bool,
    /// Networks (CIDR) whose connections start with a PROXY protocol header.
    pub proxy_from: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: vec!["127.0.0.1:1110".parse().expect("address")],
            // Left out, there is no TLS (see `TlsSection`); the written default sets both.
            listen_tls: Vec::new(),
            hostname: "localhost".into(),
            allow_plaintext_without_tls: false,
            trust_loopback: true,
            proxy_from: Vec::new(),
            run_as: None,
        }
    }
}

/// The certificate and key. Left out, there is no TLS: no STLS, and `listen_tls` must be
/// empty, so a plain-only server needs no TLS files. A fresh data dir's `pop3d.toml` sets
/// both to the self-signed pair it creates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// `[[tls.sni]]`: more certificates, each for the SNI names it lists; `cert`/`key` above
    /// stay the default (clients without SNI, names nobody listed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sni: Vec<SniSection>,
}

/// One `[[tls.sni]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniSection {
    /// Host names (`*.example.org` for one label in front of it).
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsersSection {
    pub file: PathBuf,
    /// A password query against `[postgresql]`, instead of the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
}

impl Default for UsersSection {
    fn default() -> Self {
        Self { file: "users".into(), sql: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Maildir,
    Mbox,
    Postgresql,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailSection {
    pub format: Format,
    pub location: String,
    pub create: bool,
    pub dovecot_uidl_format: String,
}

impl Default for MailSection {
    fn default() -> Self {
        Self {
            format: Format::Maildir,
            location: "mail/%u".into(),
            create: true,
            dovecot_uidl_format: pop3_storage::DEFAULT_UIDL_FORMAT.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    pub mechanisms: Vec<String>,
    pub secret_file: PathBuf,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self { mechanisms: vec!["PLAIN".into(), "LOGIN".into()], secret_file: "secret".into() }
    }
}

impl AuthSection {
    /// What `mechanisms` offers beyond USER/PASS, PLAIN and LOGIN.
    pub fn offers(&self) -> Result<pop3_server::Offers, String> {
        let mut offers = pop3_server::Offers::default();
        for name in &self.mechanisms {
            match name.to_ascii_uppercase().as_str() {
                "PLAIN" | "LOGIN" => {}
                "SCRAM-SHA-256" => offers.scram_sha256 = true,
                "CRAM-MD5" => offers.cram_md5 = true,
                "APOP" => offers.apop = true,
                "OAUTHBEARER" => offers.oauthbearer = true,
                "XOAUTH2" => offers.xoauth2 = true,
                _ => {
                    return Err(format!(
                        "[auth] mechanisms: unknown {name:?}; use PLAIN, LOGIN, SCRAM-SHA-256, \
                         CRAM-MD5, APOP, OAUTHBEARER or XOAUTH2"
                    ))
                }
            }
        }
        Ok(offers)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    pub idle_timeout_authorization: u64,
    pub login_timeout: u64,
    pub max_commands_before_login: u32,
    pub idle_timeout_transaction: u64,
    pub auth_failure_delay_ms: u64,
    pub auth_penalty_initial_ms: u64,
    pub auth_penalty_max_ms: u64,
    pub auth_penalty_window: u64,
    pub auth_penalty_entries: usize,
    pub auth_workers: usize,
    pub auth_queue: usize,
    pub max_bad_commands: u32,
    pub max_failed_logins: u32,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_connections_per_user_ip: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let d = pop3_server::Config::default();
        let p = d.penalties;
        Self {
            idle_timeout_authorization: d.idle_timeout_authorization.as_secs(),
            login_timeout: d.login_deadline.map_or(0, |t| t.as_secs()),
            max_commands_before_login: d.max_commands_before_login,
            idle_timeout_transaction: d.idle_timeout_transaction.as_secs(),
            auth_failure_delay_ms: d.auth_failure_delay.as_millis() as u64,
            auth_penalty_initial_ms: p.initial.as_millis() as u64,
            auth_penalty_max_ms: p.max.as_millis() as u64,
            auth_penalty_window: p.window.as_secs(),
            auth_penalty_entries: p.max_entries,
            auth_workers: d.auth_workers,
            auth_queue: d.auth_queue,
            max_bad_commands: d.max_bad_commands,
            max_failed_logins: d.max_failed_logins,
            max_connections: d.limits.total,
            max_connections_per_ip: d.limits.per_ip,
            max_connections_per_user_ip: d.limits.per_user_ip,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Text }
    }
}

/// `[log] format`: how each event is written on standard error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `tracing`'s human-readable lines: time, level, spans, message, key=value fields.
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, the event's fields (its
    /// `message` among them) at the top level, and the session's span as `span`.
    Json,
}

/// A loaded configuration: the file's settings and where relative paths start.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub base: PathBuf,
    pub file: FileConfig,
}

impl Loaded {
    /// Reads and validates `path`; errors name the file, and TOML errors the line and key.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(path, &text)
    }

    /// Parses and validates `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, String> {
        let file: FileConfig = toml::from_str(text)
            .map_err(|e| format!("{}: {}", path.display(), e.to_string().trim_end()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
        let loaded = Self { path: path.to_owned(), base, file };
        loaded.validate().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(loaded)
    }

    fn validate(&self) -> Result<(), String> {
        let f = &self.file;
        if let Some(pg) = &f.postgresql {
            pop3_storage::postgres::parse_url(&pg.url)
                .map_err(|e| format!("[postgresql] url: {e}"))?;
        }
        if let Some(pg) = &f.postgresql {
            if pg.pool_size == 0 {
                return Err("[postgresql] pool_size must be at least 1".into());
            }
        }
        if f.mail.format == Format::Postgresql && f.postgresql.is_none() {
            return Err("[mail] format = \"postgresql\" needs a [postgresql] url".into());
        }
        if let Some(sql) = &f.users.sql {
            if f.postgresql.is_none() {
                return Err("[users] sql needs a [postgresql] url".into());
            }
            if !sql.contains("$1") {
                return Err("[users] sql: the query must take the user name as $1".into());
            }
        }
        if let Some(ldap) = &f.ldap {
            if f.users.sql.is_some() {
                return Err("[users] sql and [ldap] both name the users: keep one".into());
            }
            ldap.validate(self)?;
        }
        proxy_from(&f.server)?;
        if f.server.listen.is_empty() && f.server.listen_tls.is_empty() {
            return Err("[server]: no listen or listen_tls address".into());
        }
        if f.tls.cert.is_some() != f.tls.key.is_some() {
            return Err("[tls]: set both cert and key, or neither".into());
        }
        if !f.tls.sni.is_empty() && f.tls.cert.is_none() {
            return Err("[[tls.sni]] needs [tls] cert and key, the default certificate".into());
        }
        for sni in &f.tls.sni {
            let bad = |n: &String| {
                let host = n.strip_prefix("*.").unwrap_or(n);
                host.is_empty()
                    || host.contains('*')
                    || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            };
            if sni.names.is_empty() {
                return Err(format!("[[tls.sni]] {}: names is empty", sni.cert.display()));
            }
            if let Some(name) = sni.names.iter().find(|n| bad(n)) {
                return Err(format!(
                    "[[tls.sni]] names: {name:?} is not a host name (or *.domain)"
                ));
            }
        }
        if !f.server.listen_tls.is_empty() && f.tls.cert.is_none() {
            return Err("[server] listen_tls needs [tls] cert and key".into());
        }
        if f.limits.idle_timeout_transaction < 600 {
            return Err(format!(
                "[limits] idle_timeout_transaction = {}: RFC 1939 §3 requires at least 600 seconds",
                f.limits.idle_timeout_transaction
            ));
        }
        let l = &f.limits;
        if l.max_connections == 0
            || l.max_connections_per_ip == 0
            || l.max_connections_per_user_ip == 0
        {
            return Err("[limits] max_connections, max_connections_per_ip and \
                 max_connections_per_user_ip must be at least 1"
                .into());
        }
        for (key, value) in [
            ("idle_timeout_authorization", l.idle_timeout_authorization),
            ("login_timeout", l.login_timeout),
            ("max_commands_before_login", u64::from(l.max_commands_before_login)),
            ("auth_queue", l.auth_queue as u64),
            ("auth_penalty_entries", l.auth_penalty_entries as u64),
        ] {
            if value == 0 {
                return Err(format!(
                    "[limits] {key} = 0 would refuse every client before it can log in"
                ));
            }
        }
        if l.auth_penalty_max_ms < l.auth_penalty_initial_ms {
            return Err("[limits] auth_penalty_max_ms is below auth_penalty_initial_ms".into());
        }
        let offers = f.auth.offers()?;
        if (offers.oauthbearer || offers.xoauth2) && f.oauth.is_none() {
            return Err("[auth] mechanisms: OAUTHBEARER and XOAUTH2 need an [oauth] section".into());
        }
        if let Some(oauth) = &f.oauth {
            oauth.validate()?;
        }
        let template =
            pop3_storage::Template::parse(&*f.mail.location).map_err(|e| format!("[mail] {e}"))?;
        if !template.is_per_user() {
            return Err(format!(
                "[mail] location = {:?}: needs %u, %h or %n and %d, or users would share a \
                 maildrop",
                f.mail.location
            ));
        }
        dovecot_uidl_format(&f.mail)?;
        if let Some(lmtp) = &f.lmtp {
            lmtp.validate()?;
        }
        tracing_level(&f.log.level).map(drop)
    }

    /// The LMTP listeners' settings and the Unix socket path, if `[lmtp]` asks for any.
    pub fn lmtp(&self) -> Option<(pop3_server::LmtpSettings, Option<PathBuf>)> {
        let l = self.file.lmtp.as_ref()?;
        if l.listen.is_empty() && l.socket.is_none() {
            return None;
        }
        Some((self.lmtp_settings(), l.socket.as_ref().map(|p| self.resolve(p))))
    }

    /// The LMTP settings of `[lmtp]`, or the defaults without it (for listeners systemd
    /// passes).
    pub fn lmtp_settings(&self) -> pop3_server::LmtpSettings {
        let default = LmtpSection::default();
        let l = self.file.lmtp.as_ref().unwrap_or(&default);
        let session = pop3_server::lmtp::LmtpConfig {
            hostname: self.file.server.hostname.clone(),
            max_message_size: l.max_message_size,
            max_recipients: l.max_recipients,
            idle_timeout: Duration::from_secs(l.idle_timeout),
            ..pop3_server::lmtp::LmtpConfig::default()
        };
        pop3_server::LmtpSettings { session, max_connections: l.max_connections }
    }

    /// A path from the file, relative to the file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base.join(path)
        }
    }

    pub fn secret_path(&self) -> PathBuf {
        self.resolve(&self.file.auth.secret_file)
    }

    /// The users backend: the password query of `[users] sql`, else the users file.
    pub fn users_sql(&self) -> Option<pop3_server::SqlUsers> {
        let sql = self.file.users.sql.as_ref()?;
        let url = &self.file.postgresql.as_ref()?.url;
        Some(pop3_server::SqlUsers::new(url.clone(), sql.clone()))
    }

    pub fn users_path(&self) -> PathBuf {
        self.resolve(&self.file.users.file)
    }

    /// The TLS configuration: the default pair and the `[[tls.sni]]` ones, paths resolved.
    pub fn load_tls(&self) -> Option<Result<pop3_server::tls::TlsConfig, String>> {
        let (cert, key) = self.tls_paths()?;
        let sni: Vec<pop3_server::tls::SniCertificate> = self
            .file
            .tls
            .sni
            .iter()
            .map(|s| pop3_server::tls::SniCertificate {
                names: s.names.clone(),
                cert: self.resolve(&s.cert),
                key: self.resolve(&s.key),
            })
            .collect();
        Some(pop3_server::tls::load_with_sni(&cert, &key, &sni).map_err(|e| e.to_string()))
    }

    pub fn tls_paths(&self) -> Option<(PathBuf, PathBuf)> {
        Some((
            self.resolve(self.file.tls.cert.as_ref()?),
            self.resolve(self.file.tls.key.as_ref()?),
        ))
    }

    /// The maildrop location, with a relative template made absolute.
    pub fn mail_location(&self) -> pop3_server::MailLocation {
        let template = &self.file.mail.location;
        let template = if template.starts_with('/') || template.starts_with("%h") {
            template.clone()
        } else {
            let base = std::path::absolute(&self.base).unwrap_or_else(|_| self.base.clone());
            format!("{}/{template}", base.display().to_string().replace('%', "%%"))
        };
        let mut location = match self.file.mail.format {
            Format::Mbox => pop3_server::MailLocation::mbox(template),
            // The Maildir settings still name where `pop3d migrate` looks by default.
            Format::Maildir | Format::Postgresql => pop3_server::MailLocation::maildir(template),
        };
        location.create = self.file.mail.create;
        // `load` refused a format that does not parse.
        location.dovecot_uidl_format = dovecot_uidl_format(&self.file.mail).unwrap_or_default();
        location
    }

    /// The maildrops of `[mail]`: files at the location, or the PostgreSQL store.
    pub fn mailboxes(&self) -> Result<std::sync::Arc<dyn pop3_server::Mailboxes>, String> {
        Ok(self.stores()?.0)
    }

    /// The maildrops of `[mail]` twice over, sharing one store: as the POP3 sessions open
    /// them and as a storage backend for the LMTP deliveries. With PostgreSQL both use one
    /// pool and one lock connection.
    pub fn stores(&self) -> Result<Stores, String> {
        use std::sync::Arc;
        match (self.file.mail.format, &self.file.postgresql) {
            (Format::Postgresql, Some(pg)) => {
                let options = pop3_storage::postgres::PgOptions {
                    pool_size: pg.pool_size,
                    ..Default::default()
                };
                let store = pop3_storage::postgres::PgStore::new(&pg.url, options)
                    .map_err(|e| format!("[postgresql] url: {e}"))?;
                let store: Arc<dyn pop3_storage::Backend> = Arc::new(store);
                Ok((Arc::new(pop3_server::StoreMailboxes(Arc::clone(&store))), store))
            }
            (Format::Postgresql, None) => {
                Err("[mail] format = \"postgresql\" needs a [postgresql] url".into())
            }
            _ => {
                let location = self.mail_location();
                let backend = location.backend().map_err(|e| format!("[mail] location: {e}"))?;
                Ok((Arc::new(location), Arc::new(backend)))
            }
        }
    }

    /// Where mail is, for messages: the location template, or the database (no password).
    pub fn mail_description(&self) -> String {
        match (self.file.mail.format, &self.file.postgresql) {
            (Format::Postgresql, Some(pg)) => format!("postgresql {}", redact_password(&pg.url)),
            _ => self.mail_location().template,
        }
    }

    pub fn server_config(&self) -> pop3_server::Config {
        let (s, l) = (&self.file.server, &self.file.limits);
        pop3_server::Config {
            hostname: s.hostname.clone(),
            allow_plaintext_without_tls: s.allow_plaintext_without_tls,
            trust_loopback: s.trust_loopback,
            // Checked by validate().
            proxy_from: proxy_from(s).unwrap_or_default(),
            idle_timeout_authorization: Duration::from_secs(l.idle_timeout_authorization),
            login_deadline: Some(Duration::from_secs(l.login_timeout)),
            max_commands_before_login: l.max_commands_before_login,
            idle_timeout_transaction: Duration::from_secs(l.idle_timeout_transaction),
            auth_failure_delay: Duration::from_millis(l.auth_failure_delay_ms),
            penalties: pop3_server::PenaltyLimits {
                initial: Duration::from_millis(l.auth_penalty_initial_ms),
                max: Duration::from_millis(l.auth_penalty_max_ms),
                window: Duration::from_secs(l.auth_penalty_window),
                max_entries: l.auth_penalty_entries,
            },
            auth_workers: l.auth_workers,
            auth_queue: l.auth_queue,
            // Checked by validate().
            offers: self.file.auth.offers().unwrap_or_default(),
            bearer_error: self.file.oauth.as_ref().map(|o| o.error_report()).unwrap_or_default(),
            max_bad_commands: l.max_bad_commands,
            max_failed_logins: l.max_failed_logins,
            limits: pop3_server::ConnectionLimits {
                total: l.max_connections,
                per_ip: l.max_connections_per_ip,
                per_user_ip: l.max_connections_per_user_ip,
            },
            ..pop3_server::Config::default()
        }
    }
}

fn proxy_from(server: &ServerSection) -> Result<Vec<pop3_server::Cidr>, String> {
    server
        .proxy_from
        .iter()
        .map(|net| net.parse().map_err(|e| format!("[server] proxy_from: {e}")))
        .collect()
}

impl LmtpSection {
    fn validate(&self) -> Result<(), String> {
        for (key, value) in [
            ("max_message_size", self.max_message_size),
            ("max_recipients", self.max_recipients as u64),
            ("max_connections", self.max_connections as u64),
            ("idle_timeout", self.idle_timeout),
        ] {
            if value == 0 {
                return Err(format!("[lmtp] {key} must be at least 1"));
            }
        }
        if self.socket_mode > 0o777 {
            return Err(format!(
                "[lmtp] socket_mode = {:#o}: permission bits only",
                self.socket_mode
            ));
        }
        Ok(())
    }
}

fn dovecot_uidl_format(mail: &MailSection) -> Result<pop3_storage::DovecotUidlFormat, String> {
    mail.dovecot_uidl_format.parse().map_err(|e| format!("[mail] dovecot_uidl_format: {e}"))
}

pub fn tracing_level(level: &str) -> Result<tracing::Level, String> {
    level
        .parse()
        .map_err(|_| format!("[log] level = {level:?}: use error, warn, info, debug or trace"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commented_default_is_the_default_with_tls() {
        let parsed: FileConfig = toml::from_str(DEFAULT_CONFIG).unwrap();
        let mut expected = FileConfig::default();
        expected.server.listen_tls = vec!["127.0.0.1:1995".parse().unwrap()];
        expected.tls = TlsSection {
            cert: Some("tls/cert.pem".into()),
            key: Some("tls/key.pem".into()),
            sni: Vec::new(),
        };
        assert_eq!(parsed, expected);
    }

    #[test]
    fn left_out_tls_means_none() {
        let path = Path::new("/etc/pop3d/pop3d.toml");
        let plain = Loaded::parse(path, "[server]\nlisten = [\"0.0.0.0:110\"]\n").unwrap();
        assert_eq!(plain.tls_paths(), None);
        assert!(plain.file.server.listen_tls.is_empty());
        let err = Loaded::parse(path, "[server]\nlisten_tls = [\"0.0.0.0:995\"]\n").unwrap_err();
        assert!(err.contains("listen_tls needs [tls] cert and key"), "{err}");
        let err = Loaded::parse(path, "[tls]\ncert = \"c.pem\"\n").unwrap_err();
        assert!(err.contains("set both cert and key"), "{err}");
    }

    /// The location is checked with the storage layer's template rules: Dovecot's escapes,
    /// and no maildrop shared by several users.
    #[test]
    fn locations_use_dovecot_escapes_and_are_per_user() {
        let path = Path::new("/etc/pop3d/pop3d.toml");
        let parse = |location: &str| {
            Loaded::parse(path, &format!("[mail]\nlocation = \"{location}\"\n")).map(drop)
        };
        for ok in ["mail/%u", "%h/Maildir", "/srv/%d/%n", "/m/100%%/%u"] {
            assert_eq!(parse(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("mail/%x", "unknown escape %x"),
            ("mail/%n", "would share"),
            ("mail/%%u", "would share"),
            ("mail/all", "would share"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pop3d.toml");
        std::fs::write(&path, "[server]\nhostname = \"x\"\nlisten = [\"nonsense\"]\n").unwrap();
        let err = Loaded::load(&path).unwrap_err();
        assert!(err.contains("pop3d.toml") && err.contains("line 3"), "{err}");
        std::fs::write(&path, "[limits]\nmax_bad_comands = 3\n").unwrap();
        let err = Loaded::load(&path).unwrap_err();
        assert!(err.contains("max_bad_comands") && err.contains("line 2"), "{err}");
        std::fs::write(&path, "[limits]\nidle_timeout_transaction = 5\n").unwrap();
        let err = Loaded::load(&path).unwrap_err();
        assert!(err.contains("idle_timeout_transaction"), "{err}");
        for zero in ["idle_timeout_authorization", "login_timeout", "max_commands_before_login"] {
            std::fs::write(&path, format!("[limits]\n{zero} = 0\n")).unwrap();
            let err = Loaded::load(&path).unwrap_err();
            assert!(err.contains(zero), "{err}");
        }
        std::fs::write(&path, "[auth]\nmechanisms = [\"PLAIN\", \"DIGEST-MD5\"]\n").unwrap();
        let err = Loaded::load(&path).unwrap_err();
        assert!(err.contains("DIGEST-MD5"), "{err}");
        std::fs::write(&path, "[auth]\nmechanisms = [\"scram-sha-256\", \"APOP\"]\n").unwrap();
        let loaded = Loaded::load(&path).unwrap();
        let offers = loaded.server_config().offers;
        assert!(offers.scram_sha256 && offers.apop && !offers.cram_md5);
        std::fs::write(&path, "[mail]\ndovecot_uidl_format = \"%m\"\n").unwrap();
        let err = Loaded::load(&path).unwrap_err();
        assert!(err.contains("dovecot_uidl_format") && err.contains("%m"), "{err}");
    }

    #[test]
    fn proxy_from_is_a_list_of_networks() {
        let path = Path::new("/etc/pop3d/pop3d.toml");
        let ok = "[server]\nproxy_from = [\"10.0.0.0/8\", \"127.0.0.1\", \"2001:db8::/32\"]\n";
        let config = Loaded::parse(path, ok).unwrap().server_config();
        let nets: Vec<String> = config.proxy_from.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["10.0.0.0/8", "127.0.0.1/32", "2001:db8::/32"]);
        assert!(Loaded::parse(path, "").unwrap().server_config().proxy_from.is_empty());
        let err = Loaded::parse(path, "[server]\nproxy_from = [\"10.0.0.1/8\"]\n").unwrap_err();
        assert!(err.contains("[server] proxy_from") && err.contains("10.0.0.0/8"), "{err}");
    }

    #[test]
    fn lmtp_is_off_unless_asked_for() {
        let path = Path::new("/etc/pop3d/pop3d.toml");
        assert!(Loaded::parse(path, "").unwrap().lmtp().is_none());
        assert!(Loaded::parse(path, "[lmtp]\nmax_recipients = 5\n").unwrap().lmtp().is_none());
        let text = "[server]\nhostname = \"mx.test\"\n[lmtp]\nlisten = [\"127.0.0.1:24\"]\n\
                    socket = \"lmtp.sock\"\nmax_message_size = 1000\n";
        let (settings, socket) = Loaded::parse(path, text).unwrap().lmtp().unwrap();
        assert_eq!(socket, Some(PathBuf::from("/etc/pop3d/lmtp.sock")));
        assert_eq!(settings.session.max_message_size, 1000);
        assert_eq!(settings.session.hostname, "mx.test");
        assert_eq!(settings.session.max_recipients, 100);
        let err = Loaded::parse(path, "[lmtp]\nmax_message_size = 0\n").unwrap_err();
        assert!(err.contains("[lmtp] max_message_size"), "{err}");
        let err = Loaded::parse(path, "[lmtp]\nsocket_mode = 0o4777\n").unwrap_err();
        assert!(err.contains("socket_mode"), "{err}");
    }

    #[test]
    fn postgresql_urls_are_checked_and_their_passwords_never_printed() {
        let path = Path::new("/etc/pop3d/pop3d.toml");
        let ok = "[postgresql]\nurl = \"postgresql://pop3d:s3cret@db.example:5433/mail\"\n";
        let loaded = Loaded::parse(path, ok).unwrap();
        let shown = toml::to_string(&loaded.file).unwrap();
        assert!(shown.contains("postgresql://pop3d:****@db.example:5433/mail"), "{shown}");
        assert!(!shown.contains("s3cret"));
        assert_eq!(
            redact_password("host=/run/postgresql password=x user=u"),
            "host=/run/postgresql password=**** user=u"
        );
        assert_eq!(
            redact_password("postgresql://u@%2Frun%2Fpostgresql/mail"),
            "postgresql://u@%2Frun%2Fpostgresql/mail"
        );

        let bad = "[postgresql]\nurl = \"postgresql://pop3d@db:notaport/mail\"\n";
        let e = Loaded::parse(path, bad).unwrap_err();
        assert!(e.contains("[postgresql] url: invalid PostgreSQL URL"), "{e}");
        // Left out, there is no [postgresql] and nothing is printed for it.
        let none = Loaded::parse(path, "").unwrap();
        assert!(!toml::to_string(&none.file).unwrap().contains("postgresql"));
    }
}
