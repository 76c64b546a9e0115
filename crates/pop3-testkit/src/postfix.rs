//! A private Postfix instance (Debian's `postfix`: its own configuration and queue
//! directories, smtpd on a free loopback port) that relays the domain `example.test` to a
//! transport (pop3d's LMTP listener in the tests): the MTA in front of pop3d, and the one
//! `pop3 fetch --to smtp:` hands mail to.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A private Postfix instance, stopped on drop (also when the test fails).
#[derive(Debug)]
pub struct Postfix {
    config: PathBuf,
    /// Where its smtpd listens (`127.0.0.1:PORT`).
    pub smtpd: String,
}

impl Postfix {
    /// Configures and starts an instance under `dir` that relays `example.test` to
    /// `transport` (e.g. `lmtp:inet:127.0.0.1:PORT`), and waits until smtpd answers.
    pub fn start(dir: &Path, transport: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        // Postfix's daemons run as mail_owner: they must reach the directories.
        for d in [dir.parent().unwrap(), dir] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let config = dir.join("etc");
        let queue = dir.join("queue");
        let data = dir.join("data");
        for d in [&config, &queue, &data] {
            std::fs::create_dir_all(d).unwrap();
        }
        // Postfix checks that its data directory belongs to mail_owner.
        let out = Command::new("chown").args(["-R", "postfix"]).arg(&data).output().unwrap();
        assert!(out.status.success(), "chown postfix: {}", String::from_utf8_lossy(&out.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {queue}\n\
             data_directory = {data}\n\
             mail_owner = postfix\n\
             myhostname = mx.postfix.test\n\
             mydomain = postfix.test\n\
             mydestination =\n\
             inet_interfaces = loopback-only\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             smtpd_relay_restrictions = permit_mynetworks, reject\n\
             virtual_mailbox_domains = example.test\n\
             virtual_transport = {transport}\n\
             maillog_file = {dir}/maillog\n\
             maillog_file_prefixes = {dir}\n\
             alias_maps =\n\
             alias_database =\n\
             local_recipient_maps =\n\
             smtputf8_enable = no\n\
             biff = no\n\
             smtpd_reject_unlisted_recipient = no\n\
             lmtp_connect_timeout = 10s\n\
             queue_run_delay = 1s\n\
             minimal_backoff_time = 1s\n\
             maximal_backoff_time = 2s\n",
            queue = queue.display(),
            data = data.display(),
            dir = dir.display(),
        );
        std::fs::write(config.join("main.cf"), main_cf).unwrap();
        // The services a relay to LMTP needs; smtpd on the free port, no chroot.
        let master_cf = format!(
            "127.0.0.1:{port} inet n - n - - smtpd\n\
             pickup unix n - n 60 1 pickup\n\
             cleanup unix n - n - 0 cleanup\n\
             qmgr unix n - n 300 1 qmgr\n\
             rewrite unix - - n - - trivial-rewrite\n\
             bounce unix - - n - 0 bounce\n\
             defer unix - - n - 0 bounce\n\
             trace unix - - n - 0 bounce\n\
             verify unix - - n - 1 verify\n\
             flush unix n - n 1000? 0 flush\n\
             proxymap unix - - n - - proxymap\n\
             smtp unix - - n - - smtp\n\
             relay unix - - n - - smtp\n\
             showq unix n - n - - showq\n\
             error unix - - n - - error\n\
             retry unix - - n - - error\n\
             discard unix - - n - - discard\n\
             local unix - n n - - local\n\
             virtual unix - n n - - virtual\n\
             lmtp unix - - n - - lmtp\n\
             anvil unix - - n - 1 anvil\n\
             scache unix - - n - 1 scache\n\
             postlog unix-dgram n - n - 1 postlogd\n"
        );
        std::fs::write(config.join("master.cf"), master_cf).unwrap();
        let postfix = Self { config, smtpd: format!("127.0.0.1:{port}") };
        for args in [&["check"][..], &["start"][..]] {
            let out = postfix.command(args);
            assert!(
                out.status.success(),
                "postfix {args:?}: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                postfix.log()
            );
        }
        // smtpd answers once master has started it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&postfix.smtpd).is_err() {
            assert!(Instant::now() < deadline, "Postfix smtpd did not start\n{}", postfix.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        postfix
    }

    /// `postfix -c CONFIG ARGS` (flush, stop...).
    pub fn command(&self, args: &[&str]) -> std::process::Output {
        Command::new("postfix").arg("-c").arg(&self.config).args(args).output().unwrap()
    }

    /// Its mail log so far (for failure messages).
    pub fn log(&self) -> String {
        let dir = self.config.parent().unwrap();
        std::fs::read_to_string(dir.join("maillog")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.command(&["stop"]);
    }
}
