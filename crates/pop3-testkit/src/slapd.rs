//! A throwaway OpenLDAP `slapd` for tests: a slapd.conf-style configuration and an MDB
//! database in a temporary directory, users loaded with `slapadd` (passwords hashed by
//! `slappasswd`, `{SSHA}`), listening on loopback ports only: `ldap://` (StartTLS offered) and
//! `ldaps://`, with a certificate from a [`TestCa`] generated at run time. The system's slapd
//! instance, if any, is neither used nor needed.
//!
//! Like some directories, it allows unauthenticated binds (a DN with an empty password
//! succeeds without checking anything, RFC 4513 §5.1.2), so that tests show that a server
//! refuses empty passwords itself.
//!
//! Without slapd installed, [`Slapd::start`] skips loudly, and fails under `CI=true`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::peer::free_port;
use crate::server::TestCa;

/// The directory's suffix.
pub const BASE: &str = "dc=example,dc=org";
/// Where the users are.
pub const PEOPLE: &str = "ou=people,dc=example,dc=org";
/// The service account that may search.
pub const SERVICE_DN: &str = "cn=pop3d,ou=services,dc=example,dc=org";
/// Its password.
pub const SERVICE_PASSWORD: &str = "service-secret";

/// A user of the test directory: `uid=NAME,ou=people,dc=example,dc=org`, an `inetOrgPerson`
/// with `posixAccount` (for `homeDirectory`).
#[derive(Debug, Clone)]
pub struct LdapUser<'a> {
    /// The `uid`.
    pub name: &'a str,
    /// The password, stored as `{SSHA}` by `slappasswd`.
    pub password: &'a str,
    /// The `homeDirectory`.
    pub home: &'a str,
    /// The `mail` (two users may share one, for a filter that matches both).
    pub mail: &'a str,
}

/// A running slapd, killed and removed on drop.
#[derive(Debug)]
pub struct Slapd {
    child: Option<Child>,
    /// `ldap://127.0.0.1:PORT` (StartTLS available).
    pub ldap_url: String,
    /// `ldaps://127.0.0.1:PORT`.
    pub ldaps_url: String,
    /// The CA that issued slapd's certificate, PEM.
    pub ca_file: PathBuf,
    log: PathBuf,
    binary: PathBuf,
    conf: PathBuf,
    ports: [u16; 2],
    // Last: removed after slapd stopped.
    dir: tempfile::TempDir,
}

fn find(program: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.exists())
}

/// `password` hashed as `{SSHA}` by `slappasswd`.
fn ssha(slappasswd: &Path, password: &str) -> String {
    let out = Command::new(slappasswd)
        .args(["-h", "{SSHA}", "-s", password])
        .output()
        .expect("slappasswd runs");
    assert!(out.status.success(), "slappasswd: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl Slapd {
    /// Starts a slapd with `users`; `None` (after a loud SKIPPED line naming `test`) if slapd
    /// is not installed. Panics under `CI=true` when it is missing, and whenever it is
    /// installed but does not start.
    pub fn start(test: &str, users: &[LdapUser<'_>]) -> Option<Self> {
        let (Some(slapd), Some(slapadd), Some(slappasswd)) =
            (find("slapd"), find("slapadd"), find("slappasswd"))
        else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test} needs OpenLDAP (slapd, slapadd, slappasswd: Debian packages slapd and \
                 ldap-utils) and CI=true"
            );
            eprintln!("SKIPPED: {test} needs OpenLDAP (apt-get install slapd ldap-utils); NOT RUN");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let ca = TestCa::generate();
        let write = |name: &str, text: &str| {
            let path = root.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let ca_file = write("ca.pem", &ca.ca_pem);
        let cert = write("server.pem", &ca.cert_pem);
        let key = write("server-key.pem", &ca.key_pem);
        std::fs::create_dir(root.join("db")).unwrap();
        let d = root.display();
        let conf = write(
            "slapd.conf",
            &format!(
                "include /etc/ldap/schema/core.schema\n\
                 include /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/inetorgperson.schema\n\
                 include /etc/ldap/schema/nis.schema\n\
                 pidfile {d}/slapd.pid\n\
                 argsfile {d}/slapd.args\n\
                 modulepath /usr/lib/ldap\n\
                 moduleload back_mdb\n\
                 allow bind_anon_dn\n\
                 TLSCACertificateFile {}\n\
                 TLSCertificateFile {}\n\
                 TLSCertificateKeyFile {}\n\
                 database mdb\n\
                 maxsize 10485760\n\
                 suffix \"{BASE}\"\n\
                 rootdn \"cn=admin,{BASE}\"\n\
                 directory {d}/db\n\
                 access to attrs=userPassword by self read by anonymous auth by * none\n\
                 access to * by self read by dn.exact=\"{SERVICE_DN}\" read by anonymous read \
                 by * none\n",
                ca_file.display(),
                cert.display(),
                key.display(),
            ),
        );
        let mut ldif = format!(
            "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=services,{BASE}\nobjectClass: organizationalUnit\nou: services\n\n\
             dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
             cn: pop3d\nuserPassword: {}\n\n",
            ssha(&slappasswd, SERVICE_PASSWORD)
        );
        for (i, user) in users.iter().enumerate() {
            ldif.push_str(&format!(
                "dn: uid={name},{PEOPLE}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n\
                 uid: {name}\ncn: {name}\nsn: {name}\nmail: {mail}\nuidNumber: {id}\n\
                 gidNumber: {id}\nhomeDirectory: {home}\nuserPassword: {pw}\n\n",
                name = user.name,
                mail = user.mail,
                id = 10_000 + i,
                home = user.home,
                pw = ssha(&slappasswd, user.password),
            ));
        }
        let ldif_path = write("users.ldif", &ldif);
        let out = Command::new(&slapadd)
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&ldif_path)
            .output()
            .expect("slapadd runs");
        assert!(out.status.success(), "slapadd: {}", String::from_utf8_lossy(&out.stderr));
        let (plain, tls) = (free_port(), free_port());
        let ldap_url = format!("ldap://127.0.0.1:{plain}");
        let ldaps_url = format!("ldaps://127.0.0.1:{tls}");
        let conf = conf.clone();
        let log = root.join("slapd.log");
        let mut slapd = Self {
            child: None,
            ldap_url,
            ldaps_url,
            ca_file,
            log,
            binary: slapd,
            conf,
            ports: [plain, tls],
            dir,
        };
        slapd.start_on_free_ports();
        Some(slapd)
    }

    /// Spawns slapd on the ports chosen, and again on new ones if another process took one of
    /// them between the choice and slapd's bind (tests run in parallel).
    fn start_on_free_ports(&mut self) {
        for _ in 0..5 {
            if self.try_spawn() {
                return;
            }
            let (plain, tls) = (free_port(), free_port());
            self.ports = [plain, tls];
            self.ldap_url = format!("ldap://127.0.0.1:{plain}");
            self.ldaps_url = format!("ldaps://127.0.0.1:{tls}");
        }
        panic!("slapd found no free ports in 5 tries: {}", self.log());
    }

    fn spawn(&mut self) {
        assert!(
            self.try_spawn(),
            "slapd could not listen again on {:?}: {}",
            self.ports,
            self.log()
        );
    }

    /// Spawns slapd and waits until it listens on both ports itself; false if it exited
    /// because a port was taken.
    fn try_spawn(&mut self) -> bool {
        let log_file =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let [plain, tls] = self.ports;
        let urls = format!("ldap://127.0.0.1:{plain}/ ldaps://127.0.0.1:{tls}/");
        // -d: in the foreground (no fork), so the child is slapd itself: kill and SIGSTOP
        // reach it. Level 0 logs little beyond errors.
        let child = Command::new(&self.binary)
            .arg("-f")
            .arg(&self.conf)
            .args(["-h", &urls, "-d", "0"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("slapd starts");
        self.child = Some(child);
        self.wait_ready(&[plain, tls])
    }

    /// Starts slapd again after [`Slapd::kill`], on the same ports with the same data: a
    /// directory that came back.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Waits until slapd itself listens on every port: a connection that succeeds is not
    /// enough, as another process may hold the port (then slapd's bind fails and it exits:
    /// false).
    fn wait_ready(&mut self, ports: &[u16]) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        let pid = self.child.as_ref().map(Child::id).expect("spawned");
        for port in ports {
            while !listens(pid, *port) {
                if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                    if ports.iter().any(|&p| listens_anyone(p)) {
                        // Another process has one of the ports (slapd -d 0 says nothing).
                        self.child = None;
                        return false;
                    }
                    panic!("slapd exited ({status}): {}", self.log());
                }
                assert!(Instant::now() < deadline, "slapd did not listen: {}", self.log());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        true
    }

    /// slapd's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The temporary directory (configuration, database, certificates).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn pid(&self) -> rustix::process::Pid {
        let child = self.child.as_ref().expect("slapd is running");
        rustix::process::Pid::from_child(child)
    }

    /// slapd's process id (for its CPU time in a benchmark), while it runs.
    pub fn process_id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops slapd at once (SIGKILL): a directory that went away.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: slapd keeps its sockets (connections are accepted by the kernel) but answers
    /// nothing, like a stalled directory. Returns once every thread of slapd is stopped: the
    /// signal only asks, and on a busy machine a running worker may still answer a request
    /// that arrives in the meantime.
    pub fn pause(&self) {
        rustix::process::kill_process(self.pid(), rustix::process::Signal::STOP).unwrap();
        self.wait_for_threads(|state| state == 'T', "stopped");
    }

    /// SIGCONT after [`Slapd::pause`]; returns once no thread is stopped any more.
    pub fn resume(&self) {
        rustix::process::kill_process(self.pid(), rustix::process::Signal::CONT).unwrap();
        self.wait_for_threads(|state| state != 'T', "running again");
    }

    /// Waits (at most 10 s) until every thread's state in /proc satisfies `done`.
    fn wait_for_threads(&self, done: impl Fn(char) -> bool, what: &str) {
        let tasks = format!("/proc/{}/task", self.pid().as_raw_nonzero());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let states: Vec<char> = std::fs::read_dir(&tasks)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
                // The state follows the command name, which is in parentheses.
                .filter_map(|stat| stat.rsplit_once(')')?.1.trim_start().chars().next())
                .collect();
            if !states.is_empty() && states.iter().all(|&s| done(s)) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "slapd not {what}: {states:?}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused slapd must be woken up to die cleanly; SIGKILL works either way.
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::io::stderr().flush();
    }
}

/// The inodes of the sockets listening on 127.0.0.1:`port`, from /proc/net/tcp
/// (local_address `0100007F:PORT` in hex, state `0A`, the inode in the tenth column).
fn listening_inodes(port: u16) -> Vec<String> {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else { return Vec::new() };
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 9 && f[1] == local && f[3] == "0A")
        .map(|f| format!("socket:[{}]", f[9]))
        .collect()
}

/// Whether any process listens on 127.0.0.1:`port`.
fn listens_anyone(port: u16) -> bool {
    !listening_inodes(port).is_empty()
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port`.
fn listens(pid: u32, port: u16) -> bool {
    let inodes = listening_inodes(port);
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| inodes.iter().any(|inode| target.to_string_lossy() == inode.as_str()))
}
