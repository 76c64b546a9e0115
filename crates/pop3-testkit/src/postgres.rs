//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary directory, `pg_ctl
//! start` on a free loopback port with trust authentication, stopped and removed when the
//! last test of the binary lets go of it. Each test gets a database of its own
//! ([`Cluster::database`]), so tests sharing the cluster cannot see each other's rows.
//!
//! `POP3_TEST_POSTGRES_URL` (a `postgresql://` URL of a role with CREATEDB) reuses a running server
//! instead. Without either, [`cluster`] skips loudly, and fails under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use postgres::{Client, NoTls};

/// A PostgreSQL server for tests: started here (and stopped on drop), or named by
/// `POP3_TEST_POSTGRES_URL`.
#[derive(Debug)]
pub struct Cluster {
    /// A superuser's URL to its `postgres` database.
    admin_url: String,
    /// The cluster this process started, if it did.
    owned: Option<Owned>,
}

#[derive(Debug)]
struct Owned {
    pg_ctl: PathBuf,
    data: PathBuf,
    /// The user the server runs as when the tests run as root (initdb refuses root).
    user: Option<String>,
    /// `pg_ctl start`'s arguments after `-D DATA` (port, socket directory, settings, log).
    start_args: Vec<std::ffi::OsString>,
    // Last: removed after the server stopped.
    _dir: tempfile::TempDir,
}

/// The cluster shared by the tests of this binary that are running now.
static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());

/// The shared test cluster, started on first use; `None` (after a loud SKIPPED line naming
/// `test`) if PostgreSQL is not installed. Panics under `CI=true` when it is missing, and
/// whenever it is installed but does not start.
pub fn cluster(test: &str) -> Option<Arc<Cluster>> {
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cluster) = shared.upgrade() {
        return Some(cluster);
    }
    let cluster = if let Ok(url) = std::env::var("POP3_TEST_POSTGRES_URL") {
        Cluster { admin_url: url, owned: None }
    } else {
        let Some(bin) = find_bin_dir() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test} needs PostgreSQL (initdb, pg_ctl: Debian package postgresql) and CI=true"
            );
            eprintln!(
                "SKIPPED: {test} needs PostgreSQL (apt-get install postgresql, or set \
                 POP3_TEST_POSTGRES_URL); NOT RUN"
            );
            return None;
        };
        Cluster::start(&bin)
    };
    let cluster = Arc::new(cluster);
    *shared = Arc::downgrade(&cluster);
    Some(cluster)
}

/// [`find_bin_dir`], or `None` after a loud SKIPPED line (a panic under CI=true).
fn find_bin(test: &str) -> Option<PathBuf> {
    let bin = find_bin_dir();
    if bin.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test} needs PostgreSQL (initdb, pg_ctl: Debian package postgresql) and CI=true"
        );
        eprintln!("SKIPPED: {test} needs PostgreSQL (apt-get install postgresql); NOT RUN");
    }
    bin
}

/// The directory holding `initdb` and `pg_ctl`: on PATH, or Debian's
/// /usr/lib/postgresql/VERSION/bin (the newest).
fn find_bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    });
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A command for a PostgreSQL program: as `user` through runuser(1) when given.
fn pg_command(program: &Path, user: Option<&str>) -> Command {
    match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn run(mut command: Command, what: &str) {
    let out = command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The unprivileged user the cluster runs as when the tests run as root.
fn server_user() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let exists = |name: &str| passwd.lines().any(|l| l.split(':').next() == Some(name));
    let user =
        ["postgres", "nobody"].into_iter().find(|u| exists(u)).expect("no postgres or nobody user");
    Some(user.to_owned())
}

impl Cluster {
    fn start(bin: &Path) -> Cluster {
        Self::start_with(bin, None)
    }

    /// Starts a cluster; with `tls`, `ssl = on` with its server certificate and key.
    fn start_with(bin: &Path, tls: Option<&crate::server::TestCa>) -> Cluster {
        let dir = tempfile::Builder::new().prefix("pop3-test-pg-").tempdir().expect("temp dir");
        let user = server_user();
        let owner = user.as_ref().map(|user| {
            let ids = Command::new("id").args(["-u", user]).output().expect("id -u");
            let gids = Command::new("id").args(["-g", user]).output().expect("id -g");
            let parse = |o: &std::process::Output| -> u32 {
                String::from_utf8_lossy(&o.stdout).trim().parse().expect("numeric id")
            };
            (rustix::fs::Uid::from_raw(parse(&ids)), rustix::fs::Gid::from_raw(parse(&gids)))
        });
        let chown = |path: &Path| {
            if let Some((uid, gid)) = owner {
                rustix::fs::chown(path, Some(uid), Some(gid)).expect("chown for the cluster");
            }
        };
        chown(dir.path());
        let mut tls_options = String::new();
        if let Some(ca) = tls {
            use std::os::unix::fs::PermissionsExt;
            let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
            std::fs::write(&cert, &ca.cert_pem).expect("write server.crt");
            std::fs::write(&key, &ca.key_pem).expect("write server.key");
            // PostgreSQL refuses a key that others can read.
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
            chown(&cert);
            chown(&key);
            tls_options = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert.display(),
                key.display()
            );
        }
        let data = dir.path().join("data");
        let mut initdb = pg_command(&bin.join("initdb"), user.as_deref());
        initdb.arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        run(initdb, "initdb");
        // A port the kernel just handed out; released here, taken by the server right after.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off{tls_options}",
            dir.path().display()
        );
        let pg_ctl = bin.join("pg_ctl");
        let start_args: Vec<std::ffi::OsString> = vec![
            "-l".into(),
            dir.path().join("log").into(),
            "-w".into(),
            "-t".into(),
            "60".into(),
            "-o".into(),
            options.into(),
            "start".into(),
        ];
        let mut start = pg_command(&pg_ctl, user.as_deref());
        start.arg("-D").arg(&data).args(&start_args);
        let owned = Owned { pg_ctl, data, user, start_args, _dir: dir };
        let cluster = Cluster {
            admin_url: format!("postgresql://postgres@127.0.0.1:{port}/postgres"),
            owned: Some(owned),
        };
        // From here on, a failure still stops the server (Drop).
        run(start, "pg_ctl start");
        cluster
    }

    /// A cluster of the test's own, not shared with the other tests of the binary: for a test
    /// that stops and restarts the server ([`Cluster::stop`], [`Cluster::start_again`]).
    /// Skips and fails like [`cluster`]; never reuses `POP3_TEST_POSTGRES_URL`'s server.
    pub fn private(test: &str) -> Option<Cluster> {
        Some(Cluster::start(&find_bin(test)?))
    }

    /// [`Cluster::private`] with TLS: `ssl = on` with a server certificate for `localhost`
    /// and `127.0.0.1` issued by the returned test CA.
    pub fn private_tls(test: &str) -> Option<(Cluster, crate::server::TestCa)> {
        let bin = find_bin(test)?;
        let ca = crate::server::TestCa::generate();
        Some((Cluster::start_with(&bin, Some(&ca)), ca))
    }

    fn owned(&self) -> &Owned {
        self.owned.as_ref().expect("a cluster this process started (Cluster::private)")
    }

    /// The PID of the server's postmaster (the parent of every backend), from
    /// `postmaster.pid`: for measuring the database's CPU time.
    pub fn server_pid(&self) -> Option<u32> {
        let pid_file = std::fs::read_to_string(self.owned().data.join("postmaster.pid")).ok()?;
        pid_file.lines().next()?.trim().parse().ok()
    }

    /// Stops the server (`pg_ctl stop -m fast`: sessions are disconnected, as in a
    /// database failover or restart).
    pub fn stop(&self) {
        let owned = self.owned();
        let mut stop = pg_command(&owned.pg_ctl, owned.user.as_deref());
        stop.arg("-D").arg(&owned.data).args(["-m", "fast", "-w", "stop"]);
        run(stop, "pg_ctl stop");
    }

    /// Starts the stopped server again, on the same port.
    pub fn start_again(&self) {
        let owned = self.owned();
        let mut start = pg_command(&owned.pg_ctl, owned.user.as_deref());
        start.arg("-D").arg(&owned.data).args(&owned.start_args);
        run(start, "pg_ctl start");
    }

    /// A URL to a new, empty database of this cluster, for one test.
    pub fn database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name =
            format!("pop3_test_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut admin =
            Client::connect(&self.admin_url, NoTls).expect("connect to the test cluster");
        // An identifier cannot be a bound parameter; the name is digits and underscores only.
        admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).expect("CREATE DATABASE");
        database_url(&self.admin_url, &name)
    }
}

/// `admin_url` (`postgresql://authority[/database][?query]`) with `name` as its database.
fn database_url(admin_url: &str, name: &str) -> String {
    let (head, query) = match admin_url.split_once('?') {
        Some((head, query)) => (head, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let authority = match head.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or("")),
        None => head.to_owned(),
    };
    format!("{authority}/{name}{query}")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(owned) = &self.owned {
            let mut stop = pg_command(&owned.pg_ctl, owned.user.as_deref());
            stop.arg("-D").arg(&owned.data).args(["-m", "immediate", "-w", "stop"]);
            // Best effort: a server that never started has nothing to stop.
            let _ = stop.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn the_database_of_a_url_is_replaced_and_its_options_kept() {
        let url = |admin| database_url(admin, "t_1");
        assert_eq!(
            url("postgresql://postgres@127.0.0.1:5432/postgres"),
            "postgresql://postgres@127.0.0.1:5432/t_1"
        );
        assert_eq!(url("postgresql://u:p@h"), "postgresql://u:p@h/t_1");
        assert_eq!(
            url("postgresql://u@h/db?host=/run/postgresql"),
            "postgresql://u@h/t_1?host=/run/postgresql"
        );
    }
}
