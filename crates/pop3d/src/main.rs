//! `pop3d`: a POP3 server for Maildir and mbox mailboxes.
//!
//! With no arguments it is `pop3d serve --data-dir ./pop3d-data`: on first start it creates
//! that directory with a commented `pop3d.toml`, an empty `users` file, `mail/` and a
//! self-signed certificate in `tls/`, listens on 127.0.0.1:1110 (STLS) and 127.0.0.1:1995
//! (implicit TLS), and prints the next steps. See `docs/operator-guide.md`.
#![forbid(unsafe_code)]

mod cli;
mod config;
mod deliver;
mod ldap;
mod lmtp;
mod metrics;
mod migrate;
mod oauth;
mod privdrop;
mod secret;
mod serve;
mod systemd;
mod users;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, DbAction, UserAction};
use config::Loaded;

/// sysexits(3) codes, for MTAs and init systems.
pub mod exit {
    pub const OK: u8 = 0;
    pub const USAGE: u8 = 64;
    pub const DATAERR: u8 = 65;
    pub const UNAVAILABLE: u8 = 69;
    pub const NOUSER: u8 = 67;
    pub const SOFTWARE: u8 = 70;
    pub const OSERR: u8 = 71;
    pub const CANTCREAT: u8 = 73;
    pub const TEMPFAIL: u8 = 75;
    pub const NOPERM: u8 = 77;
    pub const CONFIG: u8 = 78;
}

/// The default data directory of the zero-config start.
const DEFAULT_DATA_DIR: &str = "pop3d-data";

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version go to stdout and succeed; a usage error is EX_USAGE (64),
            // not clap's 2, which an MTA would not understand.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    ExitCode::from(match run(cli) {
        Ok(code) => code,
        Err((code, message)) => {
            eprintln!("pop3d: {message}");
            code
        }
    })
}

type Failure = (u8, String);

/// Finds the configuration: `--config`, else `DATA_DIR/pop3d.toml`, creating a fresh data
/// dir when neither `--config` was given nor the file exists.
fn configuration(cli: &Cli, create: bool) -> Result<(Loaded, bool), Failure> {
    let data_dir = cli.data_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let (path, created) = match &cli.config {
        Some(path) => (path.clone(), false),
        None => {
            let path = data_dir.join("pop3d.toml");
            let created = create && !path.exists();
            if created {
                init_data_dir(&data_dir).map_err(|e| (exit::CANTCREAT, e))?;
            }
            (path, created)
        }
    };
    let loaded = Loaded::load(&path).map_err(|e| (exit::CONFIG, e))?;
    Ok((loaded, created))
}

fn run(cli: Cli) -> Result<u8, Failure> {
    match &cli.command {
        None | Some(Command::Serve { .. }) => {
            let (listen, listen_tls, log_level) = match &cli.command {
                Some(Command::Serve { listen, listen_tls, log_level }) => {
                    (listen.clone(), listen_tls.clone(), log_level.clone())
                }
                _ => (Vec::new(), Vec::new(), None),
            };
            let (mut loaded, created) = configuration(&cli, true)?;
            if let Some(level) = log_level {
                loaded.file.log.level = level;
            }
            if !listen.is_empty() {
                loaded.file.server.listen = listen;
            }
            if !listen_tls.is_empty() {
                loaded.file.server.listen_tls = listen_tls;
            }
            serve::serve(loaded, created, cli.data_dir.is_some() || cli.config.is_some())
        }
        Some(Command::User { action: UserAction::Hash { scheme, password_stdin } }) => {
            print_hash(scheme, *password_stdin)
        }
        Some(Command::User { action }) => {
            let (loaded, _) = configuration(&cli, true)?;
            if loaded.file.ldap.is_some() {
                let shown = loaded.path.display();
                return Err((
                    exit::CONFIG,
                    format!("{shown}: users come from LDAP ([ldap]): manage them there"),
                ));
            }
            if loaded.file.users.sql.is_some() {
                let shown = loaded.path.display();
                return Err((
                    exit::CONFIG,
                    format!("{shown}: users come from PostgreSQL ([users] sql): manage them there"),
                ));
            }
            let users_path = loaded.users_path();
            match action {
                UserAction::Add { name, password_stdin } => {
                    let password = read_password(*password_stdin)?;
                    let run_as = loaded.file.server.run_as.as_deref();
                    // Root creating the users file creates it for the server's user.
                    let new_owner = match run_as.filter(|_| privdrop::is_root()) {
                        Some(user) => {
                            let (uid, gid) =
                                privdrop::lookup(user).map_err(|e| (exit::CONFIG, e))?;
                            Some((uid.as_raw(), gid.as_raw()))
                        }
                        None => None,
                    };
                    users::add(&users_path, name, &password, new_owner)?;
                    let user = pop3_server::UserInfo { name: name.clone(), home: None };
                    let created = match run_as {
                        Some(run_as) => privdrop::drop_for_files(run_as),
                        None => Ok(()),
                    }
                    .and_then(|()| create_maildrop(&loaded, &user));
                    if let Err(e) = created {
                        eprintln!("pop3d: user {name} added, but: {e}");
                    }
                    report_password(name, &password, *password_stdin, "added");
                }
                UserAction::Passwd { name, password_stdin } => {
                    let password = read_password(*password_stdin)?;
                    users::set_password(&users_path, name, &password)?;
                    report_password(name, &password, *password_stdin, "password changed");
                }
                UserAction::Del { name } => {
                    users::delete(&users_path, name)?;
                    println!("user {name} removed from {} (mail kept)", users_path.display());
                }
                // Taken above, before a configuration is read or a data dir made.
                UserAction::Hash { scheme, password_stdin } => {
                    return print_hash(scheme, *password_stdin)
                }
                UserAction::List => {
                    let file = pop3_server::PasswdFile::load(&users_path)
                        .map_err(|e| (exit::DATAERR, e.to_string()))?;
                    for (name, scheme) in file.users() {
                        println!("{name}\t{}", scheme.name());
                    }
                    for warning in file.warnings() {
                        eprintln!("pop3d: {}: {warning}", users_path.display());
                    }
                }
            }
            Ok(exit::OK)
        }
        Some(Command::Deliver { names, sender }) => deliver(&cli, names, sender.clone()),
        Some(Command::Init) => init(&cli),
        Some(Command::CheckConfig) => {
            if cli.config.is_none() {
                let data_dir = cli.data_dir.clone().unwrap_or_else(|| DEFAULT_DATA_DIR.into());
                let path = data_dir.join("pop3d.toml");
                if !path.exists() {
                    return check_default(&path);
                }
            }
            let (loaded, _) = configuration(&cli, false)?;
            check_config(&loaded)
        }
        Some(Command::Migrate { name, all, from, users }) => {
            let (loaded, _) = configuration(&cli, false)?;
            migrate(&loaded, name.as_deref(), *all, from, users.as_deref())
        }
        Some(Command::Status) => {
            let (loaded, _) = configuration(&cli, false)?;
            metrics::status(&loaded)
        }
        Some(Command::Db { action: DbAction::Migrate }) => {
            let (loaded, _) = configuration(&cli, false)?;
            db_migrate(&loaded)
        }
    }
}

/// `pop3d migrate`: copies one user's maildrop, or every user's, into the PostgreSQL store.
fn migrate(
    loaded: &Loaded,
    name: Option<&str>,
    all: bool,
    from: &str,
    users_file: Option<&Path>,
) -> Result<u8, Failure> {
    if loaded.file.mail.format != config::Format::Postgresql {
        return Err((
            exit::CONFIG,
            format!(
                "{}: migrate copies into [mail] format = \"postgresql\"; set it and [postgresql] url",
                loaded.path.display()
            ),
        ));
    }
    let dovecot = loaded.mail_location().dovecot_uidl_format;
    let source = migrate::Source::parse(from, dovecot).map_err(|e| (exit::USAGE, e))?;
    let target = loaded.mailboxes().map_err(|e| (exit::CONFIG, e))?;
    let users: Box<dyn pop3_server::Authenticator> = match (loaded.users_ldap(), loaded.users_sql())
    {
        (Some(ldap), _) if !all => Box::new(ldap.map_err(|e| (exit::CONFIG, e))?),
        (_, Some(sql)) if !all => Box::new(sql),
        _ => {
            let path = users_file.map_or_else(|| loaded.users_path(), Path::to_owned);
            Box::new(
                pop3_server::PasswdFile::load(&path).map_err(|e| (exit::CONFIG, e.to_string()))?,
            )
        }
    };
    let names: Vec<String> = match name {
        Some(name) => vec![name.to_owned()],
        None => {
            if !migrate::per_user(from) {
                return Err((
                    exit::USAGE,
                    format!("--all --from {from:?}: the path needs %u, %h or %n and %d"),
                ));
            }
            let file = users_file.map_or_else(|| loaded.users_path(), Path::to_owned);
            let passwd =
                pop3_server::PasswdFile::load(&file).map_err(|e| (exit::CONFIG, e.to_string()))?;
            passwd.users().map(|(name, _)| name.to_owned()).collect()
        }
    };
    // Every user is tried; the exit status is the first failure's (75 first: rerun resumes).
    let mut status = exit::OK;
    for name in &names {
        match migrate::migrate_user(&source, &*target, users.as_ref(), name) {
            Ok(report) => println!("{name}: {report}"),
            Err((code, message)) => {
                eprintln!("pop3d: {message}");
                if status == exit::OK || code == exit::TEMPFAIL {
                    status = code;
                }
            }
        }
    }
    Ok(status)
}

/// `pop3d db migrate`: brings the `[postgresql]` database's schema to this version's.
fn db_migrate(loaded: &Loaded) -> Result<u8, Failure> {
    use pop3_storage::postgres::migrate;
    let Some(pg) = &loaded.file.postgresql else {
        let shown = loaded.path.display();
        return Err((exit::CONFIG, format!("{shown}: no [postgresql] section with a url")));
    };
    let shown = config::redact_password(&pg.url);
    let report = migrate(&pg.url).map_err(|e| {
        // Down or unreachable: retry later. Anything else needs the operator (credentials,
        // permissions, a pop3d older than the schema).
        let code = if e.is_temporary() { exit::TEMPFAIL } else { exit::CONFIG };
        (code, format!("{shown}: {e}"))
    })?;
    if report.applied.is_empty() {
        println!("{shown}: schema at version {}, nothing to do", report.to);
    } else {
        println!("{shown}: schema migrated from version {} to {}", report.from, report.to);
    }
    Ok(exit::OK)
}

/// `check-config` with a `[postgresql]` section: connects and reads the schema version, which
/// must be this build's (`pop3d db migrate` brings it there). Unreachable: 75, try again; a
/// refused connection or a schema behind or ahead of this build: 78. The URL is shown without
/// its password.
fn check_database(loaded: &Loaded) -> Result<Option<String>, Failure> {
    use pop3_storage::postgres::{schema_version, LATEST_VERSION};
    let Some(pg) = &loaded.file.postgresql else { return Ok(None) };
    let shown = config::redact_password(&pg.url);
    // `pop3d init` writes pop3d.toml 0644: a database password in it is readable by anyone.
    if shown != pg.url {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&loaded.path).map_or(0, |m| m.permissions().mode());
        if mode & 0o004 != 0 {
            eprintln!(
                "pop3d: warning: {}: the [postgresql] url holds a password and the file is \
                 world-readable (chmod 640, or use a Unix socket with peer authentication)",
                loaded.path.display()
            );
        }
    }
    let version = schema_version(&pg.url).map_err(|e| {
        let code = if e.is_temporary() { exit::TEMPFAIL } else { exit::CONFIG };
        (code, format!("{shown}: {e}"))
    })?;
    match version.cmp(&LATEST_VERSION) {
        std::cmp::Ordering::Equal => Ok(Some(format!("{shown}, schema version {version}"))),
        std::cmp::Ordering::Less => Err((
            exit::CONFIG,
            format!(
                "{shown}: schema version {version}, this pop3d needs {LATEST_VERSION}: \
                 run `pop3d db migrate`"
            ),
        )),
        std::cmp::Ordering::Greater => Err((
            exit::CONFIG,
            format!(
                "{shown}: schema version {version} is newer than this pop3d's {LATEST_VERSION}: \
                 upgrade pop3d"
            ),
        )),
    }
}

fn report_password(name: &str, password: &str, from_stdin: bool, what: &str) {
    if from_stdin {
        println!("user {name}: {what}");
    } else {
        println!("user {name}: {what}; generated password: {password}");
    }
}

/// `pop3d user hash`: a hash of the password in `scheme`, on standard output.
fn print_hash(scheme: &str, from_stdin: bool) -> Result<u8, Failure> {
    let known = || {
        let names: Vec<_> = pop3_server::GENERATED_SCHEMES.iter().map(|s| s.name()).collect();
        names.join(", ")
    };
    let scheme = pop3_server::Scheme::from_name(scheme)
        .ok_or_else(|| (exit::USAGE, format!("unknown scheme {scheme}: use one of {}", known())))?;
    let password = read_password(from_stdin)?;
    let hash = pop3_server::hash_password_as(scheme, password.as_bytes())
        .map_err(|e| (exit::USAGE, format!("{e}: use one of {}", known())))?;
    if !from_stdin {
        eprintln!("generated password: {password}");
    }
    println!("{hash}");
    Ok(exit::OK)
}

/// The first line of standard input, or a generated password.
fn read_password(from_stdin: bool) -> Result<String, Failure> {
    if !from_stdin {
        return Ok(users::generate_password());
    }
    if std::io::stdin().is_terminal() {
        eprintln!("password (echoed; end with Enter):");
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| (exit::OSERR, format!("stdin: {e}")))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err((exit::USAGE, "empty password".into()));
    }
    Ok(password)
}

fn create_maildrop(loaded: &Loaded, user: &pop3_server::UserInfo) -> Result<(), String> {
    use pop3_server::Mailboxes;
    let location = loaded.mail_location();
    let files = loaded.file.mail.format != config::Format::Postgresql;
    if files && location.format == pop3_server::MailFormat::Maildir && location.create {
        // Opening creates new/, cur/ and tmp/; the lock is released at once.
        location.open(user).map(drop).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn deliver(cli: &Cli, names: &[String], sender: Option<String>) -> Result<u8, Failure> {
    // An MTA must requeue on a configuration problem, not bounce.
    let (loaded, _) = configuration(cli, false).map_err(|(_, e)| (exit::TEMPFAIL, e))?;
    let users: Box<dyn pop3_server::Authenticator> = match (loaded.users_ldap(), loaded.users_sql())
    {
        (Some(ldap), _) => Box::new(ldap.map_err(|e| (exit::TEMPFAIL, e))?),
        (None, Some(sql)) => Box::new(sql),
        (None, None) => Box::new(
            pop3_server::PasswdFile::load(loaded.users_path())
                .map_err(|e| (exit::TEMPFAIL, e.to_string()))?,
        ),
    };
    // Run as root, deliver as the server's user: the Maildir and the message must be its.
    if let Some(run_as) = &loaded.file.server.run_as {
        privdrop::drop_for_files(run_as).map_err(|e| (exit::TEMPFAIL, e))?;
    }
    let mailboxes = loaded.mailboxes().map_err(|e| (exit::TEMPFAIL, e))?;
    let location = loaded.mail_location();
    let files = (loaded.file.mail.format != config::Format::Postgresql).then_some(&location);
    let mut stdin = std::io::stdin().lock();
    let outcomes =
        deliver::deliver_all(&*mailboxes, files, users.as_ref(), names, sender, &mut stdin);
    // Each message names its recipient; one that concerns all of them is printed once.
    let mut printed = None;
    for message in outcomes.iter().filter_map(|o| o.message.as_ref()) {
        if printed != Some(message) {
            eprintln!("pop3d: {message}");
            printed = Some(message);
        }
    }
    Ok(deliver::worst(&outcomes))
}

fn check_config(loaded: &Loaded) -> Result<u8, Failure> {
    let users_path = loaded.users_path();
    let users =
        match (loaded.users_ldap(), loaded.users_sql()) {
            // Connects, binds as the service account if any, looks a name no one has up: a
            // directory that cannot be reached is 75, wrong settings 78.
            (Some(ldap), _) => {
                let ldap = ldap.map_err(|e| (exit::CONFIG, e))?;
                if let Err(e) = ldap.probe() {
                    let code = if e.temporary { exit::TEMPFAIL } else { exit::CONFIG };
                    return Err((code, format!("[ldap] {e}")));
                }
                pop3_server::PasswdFile::parse("").map_err(|e| (exit::SOFTWARE, e.to_string()))?
            }
            // The query runs once, for a name no user has: a query PostgreSQL refuses is 78, a
            // database that cannot be reached 75.
            (None, Some(sql)) => match sql.probe() {
                Ok(()) => pop3_server::PasswdFile::parse("")
                    .map_err(|e| (exit::SOFTWARE, e.to_string()))?,
                Err(e) => {
                    let code = if e.is_temporary() { exit::TEMPFAIL } else { exit::CONFIG };
                    return Err((code, format!("[users] sql: {e}")));
                }
            },
            (None, None) => pop3_server::PasswdFile::load(&users_path)
                .map_err(|e| (exit::CONFIG, e.to_string()))?,
        };
    for warning in users.warnings() {
        eprintln!("pop3d: warning: {}: {warning}", users_path.display());
    }
    if let Some(tls) = loaded.load_tls() {
        tls.map_err(|e| (exit::CONFIG, e))?;
    }
    if let Some(user) = &loaded.file.server.run_as {
        privdrop::lookup(user).map_err(|e| (exit::CONFIG, e))?;
    }
    let database = check_database(loaded)?;
    let oauth = oauth::check(loaded).map_err(|e| (exit::CONFIG, e))?;
    let effective = toml::to_string(&loaded.file).map_err(|e| (exit::SOFTWARE, e.to_string()))?;
    println!("# {}: OK ({} users)", loaded.path.display(), users.users().count());
    if let Some(database) = database {
        println!("#        postgresql = {database}");
    }
    match &loaded.file.ldap {
        Some(ldap) => println!("# paths: users = LDAP {} (reachable, search works)", ldap.url),
        None => println!("# paths: users = {}", users_path.display()),
    }
    match loaded.tls_paths() {
        Some((cert, key)) => println!("#        tls = {} + {}", cert.display(), key.display()),
        None => println!("#        tls = none (no [tls]: no STLS, no POP3S)"),
    }
    println!("#        mail = {}", loaded.mail_description());
    if let Some(oauth) = oauth {
        println!("#        oauth = {oauth}");
    }
    print!("{effective}");
    Ok(exit::OK)
}

/// `pop3d init`: the commented default configuration at `--config FILE`, or a fresh data dir.
fn init(cli: &Cli) -> Result<u8, Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(path) = &cli.config else {
        let data_dir = cli.data_dir.clone().unwrap_or_else(|| DEFAULT_DATA_DIR.into());
        if data_dir.join("pop3d.toml").exists() {
            let shown = data_dir.join("pop3d.toml");
            return Err((exit::CANTCREAT, format!("{}: exists, not overwritten", shown.display())));
        }
        init_data_dir(&data_dir).map_err(|e| (exit::CANTCREAT, e))?;
        println!(
            "pop3d: created {}/ with pop3d.toml (every setting, commented), users (empty), mail/ \
             and tls/cert.pem + tls/key.pem (self-signed for localhost)",
            data_dir.display()
        );
        return Ok(exit::OK);
    };
    let failed = |e: std::io::Error| (exit::CANTCREAT, format!("{}: {e}", path.display()));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(path).map_err(
            |e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    (exit::CANTCREAT, format!("{}: exists, not overwritten", path.display()))
                }
                _ => failed(e),
            },
        )?;
    std::io::Write::write_all(&mut file, config::DEFAULT_CONFIG.as_bytes()).map_err(failed)?;
    println!(
        "pop3d: wrote {} (every setting, commented; relative paths are relative to its \
         directory). Review [server] listen, listen_tls, hostname and run_as, [tls] cert and key \
         (no certificate was created), [users] file and [mail] location, then run \
         `pop3d --config {} check-config`.",
        path.display(),
        path.display()
    );
    Ok(exit::OK)
}

/// `check-config` on a data dir that does not exist yet: the settings it will be created
/// with (the commented default), which are valid by construction; nothing is created.
fn check_default(path: &Path) -> Result<u8, Failure> {
    let loaded = Loaded::parse(path, config::DEFAULT_CONFIG).map_err(|e| (exit::SOFTWARE, e))?;
    let effective = toml::to_string(&loaded.file).map_err(|e| (exit::SOFTWARE, e.to_string()))?;
    println!(
        "# {}: does not exist yet; `pop3d init` or `pop3d serve` creates it with these \
         settings, an empty users file, mail/ and a self-signed certificate in tls/",
        path.display()
    );
    print!("{effective}");
    Ok(exit::OK)
}

/// Creates a fresh data dir: config, empty users file, mail/, self-signed certificate.
fn init_data_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let ctx = |what: &Path| {
        let what = what.to_owned();
        move |e: std::io::Error| format!("{}: {e}", what.display())
    };
    for sub in ["", "mail", "tls"] {
        let path = dir.join(sub);
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&path).map_err(ctx(&path))?;
    }
    let write = |name: &str, text: &str, mode: u32| -> Result<(), String> {
        use std::io::Write;
        let path = dir.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(ctx(&path))?;
        file.write_all(text.as_bytes()).map_err(ctx(&path))
    };
    write("pop3d.toml", config::DEFAULT_CONFIG, 0o644)?;
    if !dir.join("users").exists() {
        write("users", users::USERS_HEADER, 0o600)?;
    }
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|e| format!("certificate: {e}"))?;
    write("tls/key.pem", &certified.signing_key.serialize_pem(), 0o600)?;
    write("tls/cert.pem", &certified.cert.pem(), 0o644)?;
    Ok(())
}
