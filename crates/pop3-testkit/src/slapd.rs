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

fn free_port() -> u16 {
    // A port the kernel just handed out; released here, taken by slapd right after.
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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
        slapd.spawn();
        Some(slapd)
    }

    fn spawn(&mut self) {
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
        self.wait_ready(&[plain, tls]);
    }

    /// Starts slapd again after [`Slapd::kill`], on the same ports with the same data: a
    /// directory that came back.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn wait_ready(&mut self, ports: &[u16]) {
        let deadline = Instant::now() + Duration::from_secs(15);
        for port in ports {
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                    panic!("slapd exited ({status}): {}", self.log());
                }
                assert!(Instant::now() < deadline, "slapd did not listen: {}", self.log());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
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
    /// nothing, like a stalled directory.
    pub fn pause(&self) {
        rustix::process::kill_process(self.pid(), rustix::process::Signal::STOP).unwrap();
    }

    /// SIGCONT after [`Slapd::pause`].
    pub fn resume(&self) {
        rustix::process::kill_process(self.pid(), rustix::process::Signal::CONT).unwrap();
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
