//! pop3d's command line, as clap parses it: commands, options and their help. Only the
//! spelling lives here (what each does is in main.rs), so that `cargo xtask dist` can build
//! the man pages and shell completions from these very definitions.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "pop3d", version, about = "POP3 server for Maildir and mbox mailboxes")]
pub struct Cli {
    /// Configuration file [default: DATA_DIR/pop3d.toml].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory; `init`, `serve` and `user` create it with defaults when it has no
    /// pop3d.toml (`check-config` and `deliver` never do) [default: ./pop3d-data].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default command).
    Serve {
        /// Plain POP3 listener (with STLS); replaces the configured ones. Repeatable.
        #[arg(long, value_name = "ADDR")]
        listen: Vec<std::net::SocketAddr>,
        /// Implicit-TLS listener; replaces the configured ones. Repeatable.
        #[arg(long, value_name = "ADDR")]
        listen_tls: Vec<std::net::SocketAddr>,
        /// Log level for this run instead of `[log] level`. RUST_LOG directives (e.g.
        /// pop3_server=debug) add detail on top of it and never hide what it shows.
        #[arg(long, value_name = "LEVEL", value_parser = ["error", "warn", "info", "debug", "trace"])]
        log_level: Option<String>,
    },
    /// Manage users in the users file.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Deliver a message from standard input to one or more users (for an MTA).
    ///
    /// For Postfix's pipe transport. Exit codes (sysexits): 0 delivered; permanent, the MTA
    /// bounces: 65 empty message, 67 unknown user or no maildrop for them, 73 unusable
    /// maildrop, 77 permission denied; 75 temporary failure or unreadable configuration, the
    /// MTA retries. Several recipients share one exit status, the worst (75 before any
    /// permanent code).
    Deliver {
        /// The recipients (user names), each delivered in turn.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Envelope sender, for mbox From lines.
        #[arg(long, short = 'f', value_name = "ADDRESS")]
        sender: Option<String>,
    },
    /// Write the commented default configuration, or create the data dir.
    ///
    /// With --config FILE (e.g. /etc/pop3d/pop3d.toml): that file only. Without: the data
    /// dir, as the first start creates it. Never overwrites (exit 73).
    Init,
    /// Validate the configuration, users file and certificate; print the effective settings.
    ///
    /// Creates nothing: a data dir not created yet is reported with the defaults it will get
    /// (exit 0).
    CheckConfig,
    /// Copy Maildirs or mboxes into the PostgreSQL store, keeping every UIDL.
    ///
    /// Idempotent and resumable: a message already copied (same UIDL) is not copied again,
    /// so run it again after an interruption, or once more just before switching over. The
    /// source is read under its lock and never changed. Needs `[mail] format = "postgresql"`.
    /// Exit codes: 0 done; 75 temporary (database down, maildrop in use): run it again;
    /// 65 a source that cannot be read as a maildrop; 67 invalid user name; 78 no PostgreSQL
    /// store configured.
    Migrate {
        /// The user whose maildrop to copy.
        #[arg(required_unless_present = "all", conflicts_with = "all", value_name = "NAME")]
        name: Option<String>,
        /// Every user of the users file (`[users] file`, or --users).
        #[arg(long)]
        all: bool,
        /// maildir:PATH or mbox:PATH; %u, %n, %d and %h as in `[mail] location`
        /// (e.g. maildir:/var/mail/%u).
        #[arg(long, value_name = "FORMAT:PATH")]
        from: String,
        /// With --all: the users file to take the names from [default: `[users] file`].
        #[arg(long, value_name = "FILE", requires = "all")]
        users: Option<PathBuf>,
    },
    /// Ask the running server (through `[metrics] listen`) whether it is healthy.
    ///
    /// Prints its health and a summary of its connections and logins. Exit codes: 0 healthy;
    /// 1 unhealthy (the reason is printed); 69 the server cannot be asked (metrics off, or
    /// nothing answers on the metrics address).
    Status,
    /// Manage the PostgreSQL database of `[postgresql] url`.
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbAction {
    /// Create or upgrade the schema to this version's (idempotent: safe on every deploy).
    ///
    /// Exit codes: 0 done (or nothing to do); 75 the database cannot be reached (or the
    /// connection was lost), try again later; 78 no or invalid `[postgresql]` section, or the
    /// server refused (credentials, permissions), or the schema is newer than this pop3d.
    Migrate,
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Add a user (password hashed with ARGON2ID) and create the Maildir.
    Add {
        name: String,
        /// Read the password from standard input (first line) instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password.
    Passwd {
        name: String,
        /// Read the password from standard input (first line) instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user from the users file (the mail stays).
    Del { name: String },
    /// List users and their password schemes.
    List,
    /// Print a password hash as the users file takes it (`{SCHEME}hash`, like `doveadm pw`),
    /// changing no file.
    Hash {
        /// ARGON2ID, SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, PBKDF2, SCRAM-SHA-256, SSHA512 or
        /// SSHA256.
        #[arg(long, default_value = "ARGON2ID")]
        scheme: String,
        /// Read the password from standard input (first line) instead of generating one
        /// (printed on standard error).
        #[arg(long)]
        password_stdin: bool,
    },
}
