//! The real HAProxy (Debian's `haproxy`) in front of pop3d nodes, with `send-proxy-v2`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// HAProxy's binary, or `None` after a loud SKIPPED line (a panic under CI=true).
pub fn binary() -> Option<PathBuf> {
    let found = pop3_testkit::peer::find("haproxy");
    if found.is_none() {
        // Says SKIPPED, or panics under CI=true.
        super::peer("haproxy", "haproxy");
    }
    found
}

/// One listening port of HAProxy and the servers it balances (round robin) behind it.
pub struct Frontend<'a> {
    /// The frontend and backend name in the configuration (and in HAProxy's log).
    pub name: &'a str,
    /// The loopback port HAProxy listens on.
    pub port: u16,
    /// The servers' `host:port`, named `n1`, `n2`... in order.
    pub servers: &'a [&'a str],
}

/// HAProxy in the foreground (`-db`) with its own configuration file; killed on drop.
pub struct Haproxy {
    child: Child,
    dir: tempfile::TempDir,
}

impl Haproxy {
    /// Each frontend on 127.0.0.1 relaying in TCP mode to its servers, each server line ending
    /// in `server_options` (`send-proxy-v2`, `check`...). A connection to a server that
    /// refuses it is retried, on another server (`option redispatch`), so that a client
    /// does not pay for a dead server its health checks have not caught yet.
    pub fn start(binary: &Path, frontends: &[Frontend<'_>], server_options: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("haproxy.cfg");
        let mut config = "global\n    maxconn 100\n\
             defaults\n    mode tcp\n    balance roundrobin\n    retries 3\n    \
             option redispatch\n    timeout connect 5s\n    timeout client 30s\n    \
             timeout server 30s\n    unique-id-format %[uuid()]\n"
            .to_owned();
        for f in frontends {
            config += &format!(
                "frontend {name}\n    bind 127.0.0.1:{port}\n    default_backend {name}\n\
                 backend {name}\n",
                name = f.name,
                port = f.port
            );
            for (i, server) in f.servers.iter().enumerate() {
                config += &format!("    server n{} {server} {server_options}\n", i + 1);
            }
        }
        std::fs::write(&cfg, config).unwrap();
        let check = Command::new(binary).arg("-c").arg("-f").arg(&cfg).output().unwrap();
        assert!(check.status.success(), "haproxy -c: {}", text(&check));
        let stderr = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
        let child = Command::new(binary)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let proxy = Self { child, dir };
        // Listening once its first frontend accepts a connection. (HAProxy may relay this
        // probe: pop3d then gets a header and a client that hangs up, which it logs and
        // forgets.)
        let port = frontends[0].port;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not listen: {}", proxy.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    /// What HAProxy printed (its alerts and warnings; `-db` keeps them on standard error).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command's standard output and error, for failure messages.
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `curl -s -S --max-time 30 ARGS`.
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl").args(["-s", "-S", "--max-time", "30"]).args(args).output().unwrap()
}
