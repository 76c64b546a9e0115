//! `pop3d serve`: bind, drop privileges, run until SIGTERM/SIGINT, reload on SIGHUP.

use std::sync::Arc;

use pop3_server::oauth::TokenValidator;
use pop3_server::{ListenerKind, LmtpServer, ReloadingPasswdFile, Server};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{tracing_level, Loaded, LogFormat};
use crate::{exit, Failure};

/// Logs on standard error: everything at the configured level (`[log] level`, or
/// `--log-level`), plus whatever `RUST_LOG` enables on top. The two filters are joined with
/// "or", so `RUST_LOG=pop3_server=debug` adds the server library's detail and never hides
/// pop3d's own lines (an `EnvFilter` built from `RUST_LOG` alone would turn everything it does
/// not name off).
fn init_tracing(level: &str, format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::{EnvFilter, FilterExt};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let base = EnvFilter::new(format!("{level},rustls=warn"));
    let (extra, bad) = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => match EnvFilter::try_new(&directives) {
            Ok(filter) => (filter, None),
            Err(e) => {
                (EnvFilter::new("off"), Some(format!("RUST_LOG={directives:?} ignored: {e}")))
            }
        },
        _ => (EnvFilter::new("off"), None),
    };
    let filter = base.or(extra);
    let layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        // The event's fields at the top level, the session span (peer, proxy, tls, user) as
        // `span`: what a log pipeline indexes without unnesting.
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
    if let Some(bad) = bad {
        tracing::warn!("{bad}");
    }
}

/// How to call this binary in printed hints.
fn invocation(loaded: &Loaded, explicit: bool) -> String {
    let exe = std::env::args().next().unwrap_or_default();
    let mut cmd = if exe.contains("target/") {
        "cargo run --release --bin pop3d --".to_owned()
    } else {
        "pop3d".to_owned()
    };
    if explicit {
        cmd.push_str(&format!(" --config {}", loaded.path.display()));
    }
    cmd
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and logs the result: every logged-in
/// session holds its socket (and, with mbox, the locked mbox file; a Maildir's lock is a
/// dotlock that holds no descriptor), so the usual soft limit of 1024 would cap pop3d at
/// about 1000 Maildir or 500 mbox sessions.
fn raise_nofile_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let shown = |v: Option<u64>| v.map_or_else(|| "unlimited".to_owned(), |v| v.to_string());
    let old = getrlimit(Resource::Nofile);
    // An unlimited hard limit cannot be the soft one for descriptors (the kernel caps it at
    // fs.nr_open): ask for 1 Mi then.
    let wanted = old.maximum.unwrap_or(1 << 20);
    let (soft, hard) = (shown(old.current), shown(old.maximum));
    if old.current.is_none_or(|c| c >= wanted) {
        tracing::info!(
            soft,
            hard,
            "descriptor limit (RLIMIT_NOFILE); one per logged-in session, two with mbox"
        );
        return;
    }
    match setrlimit(Resource::Nofile, Rlimit { current: Some(wanted), maximum: old.maximum }) {
        Ok(()) => tracing::info!(
            soft = wanted,
            was = soft,
            hard,
            "descriptor limit (RLIMIT_NOFILE) raised; one per logged-in session, two with mbox"
        ),
        Err(error) => tracing::warn!(
            %error,
            soft,
            hard,
            "cannot raise the descriptor limit (RLIMIT_NOFILE); one per logged-in session, two with mbox"
        ),
    }
}

pub fn serve(loaded: Loaded, created: bool, explicit: bool) -> Result<u8, Failure> {
    let level = tracing_level(&loaded.file.log.level).map_err(|e| (exit::CONFIG, e))?;
    init_tracing(&level.to_string().to_lowercase(), loaded.file.log.format);
    tracing::debug!(
        config = %loaded.path.display(),
        users = %loaded.users_path().display(),
        mail = %loaded.mail_description(),
        "configuration loaded"
    );
    ensure_schema(&loaded)?;
    let (mailboxes, backend) = loaded.stores().map_err(|e| (exit::CONFIG, e))?;
    raise_nofile_limit();
    let secret = server_secret(&loaded);
    let tokens = crate::oauth::validator(&loaded).map_err(|e| (exit::CONFIG, e))?;
    let users = crate::oauth::with_tokens(authenticator(&loaded, secret)?, tokens.as_ref());
    let tls = match loaded.load_tls() {
        Some(tls) => {
            let tls = tls.map_err(|e| (exit::CONFIG, e))?;
            tracing::debug!(sni = loaded.file.tls.sni.len(), "TLS certificates loaded");
            Some(tls)
        }
        None => {
            tracing::debug!("no [tls]: no STLS, no POP3S");
            None
        }
    };
    let server_section = &loaded.file.server;
    if !server_section.listen_tls.is_empty() && tls.is_none() {
        return Err((exit::CONFIG, "listen_tls needs [tls] cert and key".into()));
    }
    // Bind while still privileged (ports below 1024), then drop privileges, all before the
    // runtime starts threads.
    let bind = |addr: &std::net::SocketAddr| {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| (exit::OSERR, format!("cannot listen on {addr}: {e}")))?;
        listener.set_nonblocking(true).map_err(|e| (exit::OSERR, e.to_string()))?;
        Ok::<_, Failure>(listener)
    };
    let mut listeners = Vec::new();
    // Sockets passed by systemd (pop3d.socket) replace the configured addresses.
    let activated = crate::systemd::activated().map_err(|e| (exit::CONFIG, e))?;
    let lmtp = match activated {
        Some(activated) => {
            if !activated.pop3s.is_empty() && tls.is_none() {
                return Err((exit::CONFIG, "a pop3s socket needs [tls] cert and key".into()));
            }
            let unspecified = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
            for listener in activated.pop3 {
                listeners.push((listener, ListenerKind::Plain, unspecified));
            }
            for listener in activated.pop3s {
                listeners.push((listener, ListenerKind::ImplicitTls, unspecified));
            }
            tracing::info!(sockets = listeners.len(), "listening on sockets passed by systemd");
            crate::lmtp::adopt(&loaded, activated.lmtp_tcp, activated.lmtp_unix)
        }
        None => {
            for addr in &server_section.listen {
                listeners.push((bind(addr)?, ListenerKind::Plain, *addr));
            }
            for addr in &server_section.listen_tls {
                listeners.push((bind(addr)?, ListenerKind::ImplicitTls, *addr));
            }
            crate::lmtp::bind(&loaded)?
        }
    };
    let metrics = crate::metrics::bind(&loaded)?;
    if let Some(user) = &server_section.run_as {
        crate::privdrop::drop_to(user).map_err(|e| (exit::OSERR, e))?;
        tracing::debug!(run_as = %user, "after binding: run_as applied");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| (exit::OSERR, format!("tokio runtime: {e}")))?;
    let store = Arc::clone(&backend);
    runtime.block_on(async move {
        let lmtp = match lmtp {
            Some(bound) => Some(crate::lmtp::start(bound, Arc::clone(&users), backend)?),
            None => None,
        };
        let server = Server::new(loaded.server_config(), mailboxes, users);
        server.set_tls(tls);
        if let Some(listener) = metrics {
            let addr = listener.local_addr().map_err(|e| (exit::OSERR, e.to_string()))?;
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|e| (exit::OSERR, format!("{addr}: {e}")))?;
            let health = crate::metrics::health_check(&loaded, store);
            let serving = server.clone();
            let serving = Arc::new(move || serving.is_serving());
            tokio::spawn(pop3_server::metrics::http::serve(listener, health, serving));
            println!("pop3d: metrics on http://{addr}/metrics, health on http://{addr}/health");
        }
        let mut plain = Vec::new();
        let mut secure = Vec::new();
        for (listener, kind, configured) in listeners {
            // The bound address, so that port 0 shows the port the kernel chose.
            let addr = listener.local_addr().unwrap_or(configured);
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|e| (exit::OSERR, format!("{addr}: {e}")))?;
            match kind {
                ListenerKind::Plain => plain.push(addr.to_string()),
                ListenerKind::ImplicitTls => secure.push(addr.to_string()),
            }
            let server = server.clone();
            tokio::spawn(async move {
                if let Err(error) = server.serve(listener, kind).await {
                    tracing::error!(%error, %addr, "listener failed");
                }
            });
        }
        // Handlers first: whoever reads the announcement may signal at once.
        let signal_error = |e: std::io::Error| (exit::OSERR, format!("signal handler: {e}"));
        let mut term = signal(SignalKind::terminate()).map_err(signal_error)?;
        let mut int = signal(SignalKind::interrupt()).map_err(signal_error)?;
        let mut hup = signal(SignalKind::hangup()).map_err(signal_error)?;
        if let Some(lmtp) = &lmtp {
            println!("pop3d: LMTP on {}", lmtp.announced.join(", "));
        }
        announce(&loaded, created, explicit, &plain, &secure);
        crate::systemd::ready("serving");
        let watchdog = crate::systemd::watchdog_interval().map(|interval| {
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(interval);
                loop {
                    ticks.tick().await;
                    crate::systemd::watchdog_ping();
                }
            })
        });
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    crate::systemd::reloading();
                    let lmtp = lmtp.as_ref().map(|l| &l.server);
                    reload(&server, lmtp, &loaded, secret, tokens.as_ref());
                    crate::systemd::ready("serving");
                }
            }
        }
        crate::systemd::stopping();
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        tracing::info!(sessions = server.active_sessions(), "shutting down");
        let lmtp_shutdown = async {
            if let Some(lmtp) = lmtp {
                lmtp.shutdown().await;
            }
        };
        tokio::join!(server.shutdown(), lmtp_shutdown);
        tracing::info!("stopped");
        Ok(exit::OK)
    })
}

/// With a `[postgresql]` database: its schema must be this build's before anything is
/// served. A schema that is behind is migrated (as `pop3d db migrate` would, safe with
/// several nodes starting at once); a database that cannot be reached is exit 75 at once
/// (the service manager restarts pop3d, with its own backoff), one that refuses us or holds
/// a newer schema 78.
fn ensure_schema(loaded: &Loaded) -> Result<(), Failure> {
    use pop3_storage::postgres::{migrate, schema_version, LATEST_VERSION};
    let Some(pg) = &loaded.file.postgresql else { return Ok(()) };
    let shown = crate::config::redact_password(&pg.url);
    let failed = |e: pop3_storage::postgres::PgError| {
        let code = if e.is_temporary() { exit::TEMPFAIL } else { exit::CONFIG };
        (code, format!("{shown}: {e}"))
    };
    let version = schema_version(&pg.url).map_err(failed)?;
    if version < LATEST_VERSION {
        tracing::warn!(
            database = %shown,
            from = version,
            to = LATEST_VERSION,
            "the database schema is behind this pop3d: migrating it"
        );
        migrate(&pg.url).map_err(failed)?;
    } else if version > LATEST_VERSION {
        return Err((
            exit::CONFIG,
            format!(
                "{shown}: schema version {version} is newer than this pop3d's {LATEST_VERSION}: \
                 upgrade pop3d"
            ),
        ));
    }
    Ok(())
}

/// The server secret (see `secret.rs`). If its file cannot be read or created, a secret for
/// this run only: logins work, but SCRAM salts change at the next restart.
fn server_secret(loaded: &Loaded) -> [u8; 32] {
    match crate::secret::load_or_create(&loaded.secret_path()) {
        Ok(secret) => secret,
        Err(error) => {
            tracing::warn!(
                %error,
                "no server secret file: SCRAM salts will change at the next restart"
            );
            let mut secret = [0u8; 32];
            let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret);
            secret
        }
    }
}

/// The users backend: `[ldap]` or `[users] sql` against PostgreSQL (contacted at the first
/// login), or the users file, followed as it changes.
fn authenticator(
    loaded: &Loaded,
    secret: [u8; 32],
) -> Result<Arc<dyn pop3_server::Authenticator>, Failure> {
    if let Some(ldap) = loaded.users_ldap() {
        let ldap = ldap.map_err(|e| (exit::CONFIG, e))?;
        tracing::info!("users from LDAP ([ldap])");
        return Ok(Arc::new(ldap.with_secret(secret)));
    }
    if let Some(sql) = loaded.users_sql() {
        tracing::info!("users from PostgreSQL ([users] sql)");
        return Ok(Arc::new(sql.with_secret(secret)));
    }
    let users_path = loaded.users_path();
    let users = ReloadingPasswdFile::load(&users_path)
        .map_err(|e| (exit::CONFIG, e.to_string()))?
        .with_secret(secret);
    for warning in users.current().warnings() {
        tracing::warn!(path = %users_path.display(), "{warning}");
    }
    tracing::debug!(
        path = %users_path.display(),
        users = users.current().users().count(),
        "users file loaded"
    );
    Ok(Arc::new(users))
}

/// SIGHUP: the users file and the TLS certificate, keeping the old ones on error.
fn reload(
    server: &Server,
    lmtp: Option<&LmtpServer>,
    loaded: &Loaded,
    secret: [u8; 32],
    tokens: Option<&Arc<TokenValidator>>,
) {
    let started = std::time::Instant::now();
    tracing::debug!(sessions = server.active_sessions(), "SIGHUP received");
    if loaded.file.ldap.is_some() {
        tracing::info!("SIGHUP: users come from LDAP, nothing to reload");
    } else if loaded.users_sql().is_some() {
        tracing::info!("SIGHUP: users come from PostgreSQL, nothing to reload");
    } else {
        reload_users_file(server, lmtp, loaded, secret, tokens);
    }
    reload_tls(server, loaded);
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "SIGHUP handled");
}

fn reload_users_file(
    server: &Server,
    lmtp: Option<&LmtpServer>,
    loaded: &Loaded,
    secret: [u8; 32],
    tokens: Option<&Arc<TokenValidator>>,
) {
    match ReloadingPasswdFile::load(loaded.users_path()) {
        Ok(users) => {
            let users = crate::oauth::with_tokens(Arc::new(users.with_secret(secret)), tokens);
            if let Some(lmtp) = lmtp {
                lmtp.set_authenticator(Arc::clone(&users));
            }
            server.set_authenticator(users);
            tracing::info!("SIGHUP: users file reloaded");
        }
        Err(error) => tracing::error!(%error, "SIGHUP: users file not reloaded"),
    }
}

fn reload_tls(server: &Server, loaded: &Loaded) {
    match loaded.load_tls() {
        Some(Ok(tls)) => {
            server.set_tls(Some(tls));
            tracing::info!(sni = loaded.file.tls.sni.len(), "SIGHUP: TLS certificate reloaded");
        }
        Some(Err(error)) => tracing::error!(%error, "SIGHUP: TLS certificate not reloaded"),
        None => {}
    }
}

fn announce(loaded: &Loaded, created: bool, explicit: bool, plain: &[String], secure: &[String]) {
    let base = loaded.base.display();
    if created {
        println!(
            "pop3d: created {base}/ with pop3d.toml (every setting, commented), users (empty), \
             mail/ and tls/cert.pem + tls/key.pem (self-signed for localhost)"
        );
    }
    if !plain.is_empty() && loaded.tls_paths().is_some() {
        println!("pop3d: POP3 (with STLS) on {}", plain.join(", "));
    } else if !plain.is_empty() {
        println!("pop3d: POP3 (no TLS: no [tls] in the configuration) on {}", plain.join(", "));
    }
    if !secure.is_empty() {
        println!("pop3d: POP3S (implicit TLS) on {}", secure.join(", "));
    }
    let proxies = &loaded.file.server.proxy_from;
    if !proxies.is_empty() {
        println!("pop3d: a PROXY protocol header is required from {}", proxies.join(", "));
    }
    println!(
        "pop3d: users from {}, mail in {}; Ctrl-C stops, SIGHUP reloads users and TLS",
        loaded.users_path().display(),
        loaded.mail_description()
    );
    // The hints suit the embedded defaults (a self-signed certificate, local ports): they are
    // shown on the start that created the data dir, never for an operator's configuration.
    if !created {
        return;
    }
    let cmd = invocation(loaded, explicit);
    let plain_port = plain.first().map(String::as_str).unwrap_or("127.0.0.1:1110");
    println!("Next steps, in another terminal:");
    println!("  echo secret | {cmd} user add alice --password-stdin");
    println!("  printf 'Subject: hello\\n\\nHello, Alice.\\n' | {cmd} deliver alice");
    println!("  curl -s pop3://alice:secret@{plain_port}/1");
    if let Some(tls) = secure.first() {
        println!("  curl -sk pop3s://alice:secret@{tls}/1    (-k: the certificate is self-signed)");
    }
}
