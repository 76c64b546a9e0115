//! A private Dante SOCKS5 server (`danted` from Debian's `dante-server`) on a loopback port,
//! with its own config and log file, killed on drop. Without danted: [`available`] prints
//! SKIPPED, or fails under CI=true.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DANTED: &str = "/usr/sbin/danted";

/// True if danted is installed; otherwise a loud SKIPPED line for `test`, or a panic under
/// CI=true (CI installs dante-server, see `.ci/run`).
pub fn available(test: &str) -> bool {
    if Path::new(DANTED).exists() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: danted not installed (apt-get install dante-server), and CI=true"
    );
    eprintln!("SKIPPED: {test}: danted not installed (apt-get install dante-server); NOT RUN");
    false
}

/// A running danted.
pub struct Dante {
    child: Child,
    /// Its loopback port.
    pub port: u16,
    log: PathBuf,
}

impl Dante {
    /// A danted in `dir` passing every connection from the loopback.
    pub fn start(dir: &Path) -> Self {
        Self::with_rules(dir, "")
    }

    /// A danted in `dir` applying `rules` (`socks block { ... }`, say) before the one that
    /// passes every connection from the loopback; connections and errors are logged.
    pub fn with_rules(dir: &Path, rules: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.join("danted.log");
        let config = format!(
            "logoutput: {log}\ninternal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\n\
             socksmethod: none\nclientmethod: none\nuser.unprivileged: nobody\n\
             client pass {{\n    from: 127.0.0.0/8 to: 0.0.0.0/0\n}}\n{rules}\n\
             socks pass {{\n    from: 127.0.0.0/8 to: 0.0.0.0/0\n    command: connect\n    \
             log: connect error\n}}\n",
            log = log.display()
        );
        let conf = dir.join("danted.conf");
        std::fs::write(&conf, config).unwrap();
        let child = Command::new(DANTED)
            .arg("-f")
            .arg(&conf)
            .args(["-N", "1", "-p"])
            .arg(dir.join("danted.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let dante = Self { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "danted did not start: {}", dante.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        dante
    }

    /// What danted logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many connections to `port` on 127.0.0.1 danted logged (passed or blocked): lines
    /// such as `pass(1): tcp/connect [: CLIENT PROXY -> PROXY-OUT 127.0.0.1.PORT`, the
    /// destination last.
    pub fn connections_to(&self, port: u16) -> usize {
        let destination = format!("127.0.0.1.{port}");
        let log = self.log();
        log.lines()
            .filter(|l| l.contains("tcp/connect"))
            .filter(|l| l.split_whitespace().last() == Some(destination.as_str()))
            .count()
    }
}

impl Drop for Dante {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
