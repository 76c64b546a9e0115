//! Users from LDAP, end to end: the real `pop3d` against a real OpenLDAP slapd started by the
//! test (its own configuration, loopback ports, a test CA): bind by DN template over StartTLS,
//! search-then-bind over LDAPS with the home attribute driving the mail location, lookups by
//! `pop3d deliver` and LMTP, and every failure mode (wrong password, unknown user, empty password,
//! directory killed, stalled, garbage) answered without a hang and never with a login.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::lmtp::{stuffed, Lmtp};
use common::{output_ok, run, Daemon, Session};
use pop3_testkit::slapd::{LdapUser, Slapd, PEOPLE, SERVICE_DN, SERVICE_PASSWORD};

const USERS: &[LdapUser<'static>] = &[
    LdapUser {
        name: "alice",
        password: "alice pw",
        home: "/nonexistent",
        mail: "alice@example.org",
    },
    LdapUser { name: "bob", password: "bob pw", home: "/nonexistent", mail: "shared@example.org" },
    LdapUser {
        name: "bert",
        password: "bert pw",
        home: "/nonexistent",
        mail: "shared@example.org",
    },
];

/// A data dir (from `pop3d init`) with this `[ldap]` section and quick failure delays (the
/// test's logins all come from 127.0.0.1).
fn data_dir(ldap: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    output_ok(&run(&["init"], &data, b""), "init");
    let config = std::fs::read_to_string(data.join("pop3d.toml")).unwrap();
    let config = config
        .replace("auth_failure_delay_ms = 2000", "auth_failure_delay_ms = 10")
        .replace("auth_penalty_initial_ms = 2000", "auth_penalty_initial_ms = 10")
        .replace("auth_penalty_max_ms = 15000", "auth_penalty_max_ms = 20")
        + "\n"
        + ldap;
    assert!(config.contains("auth_penalty_max_ms = 20"));
    std::fs::write(data.join("pop3d.toml"), config).unwrap();
    (dir, data)
}

/// `[ldap]` by DN template over StartTLS.
fn template_section(slapd: &Slapd, timeout: u64) -> String {
    format!(
        "[ldap]\nurl = \"{}\"\nstarttls = true\nca_file = \"{}\"\n\
         bind_dn = \"uid=%u,{PEOPLE}\"\ntimeout = {timeout}\n",
        slapd.ldap_url,
        slapd.ca_file.display()
    )
}

/// `pop3d check-config`: exit code and standard error.
fn check_config(data: &Path) -> (Option<i32>, String) {
    let out = run(&["check-config"], data, b"");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A one-line AUTH PLAIN: the reply.
fn auth_plain(addr: &str, user: &str, password: &str) -> String {
    use base64::Engine as _;
    let blob = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    let mut s = Session::connect(addr);
    let reply = s.cmd(&format!("AUTH PLAIN {blob}"));
    s.cmd("QUIT");
    reply
}

/// A login that must end within `bound`: the reply and how long it took.
fn timed_login(addr: &str, user: &str, password: &str, bound: Duration) -> String {
    let started = Instant::now();
    let reply = Session::login(addr, user, password);
    let took = started.elapsed();
    assert!(took < bound, "{user}: answered after {took:?} ({reply})");
    reply
}

#[test]
fn bind_by_dn_template_over_starttls() {
    let Some(slapd) = Slapd::start("pop3d [ldap] bind_dn", USERS) else { return };
    let (dir, data) = data_dir(&template_section(&slapd, 5));
    let (code, err) = check_config(&data);
    assert_eq!(code, Some(0), "check-config: {err}");

    // Local delivery looks the recipient up in the directory.
    output_ok(&run(&["deliver", "alice"], &data, b"Subject: hi\n\nhello\n"), "deliver alice");
    let unknown = run(&["deliver", "mallory"], &data, b"Subject: hi\n\nhello\n");
    assert_eq!(unknown.status.code(), Some(67), "unknown user: {unknown:?}");
    // Users are managed in the directory.
    let managed = run(&["user", "add", "carol", "--password-stdin"], &data, b"pw\n");
    assert_eq!(managed.status.code(), Some(78), "{managed:?}");

    let daemon = Daemon::serve(dir, data);
    let addr = daemon.plain.clone();
    let ok = Session::login(&addr, "alice", "alice pw");
    assert!(ok.starts_with("+OK maildrop has 1 "), "{ok}\n{}", daemon.log());
    let wrong = Session::login(&addr, "alice", "not it");
    let unknown = Session::login(&addr, "mallory", "not it");
    assert!(wrong.starts_with("-ERR [AUTH]"), "{wrong}");
    assert_eq!(wrong, unknown, "an unknown user looks like a wrong password");
    // A name that would change the DN is escaped into one RDN value.
    let sneaky = Session::login(&addr, "alice,ou=people", "alice pw");
    assert!(sneaky.starts_with("-ERR [AUTH]"), "{sneaky}");

    // This slapd lets a DN with an empty password bind (an unauthenticated bind, RFC 4513
    // §5.1.2), as ldapwhoami shows; pop3d must refuse it before asking.
    if let Some(whoami) = ["/usr/bin/ldapwhoami"].iter().find(|p| Path::new(p).exists()) {
        let out = std::process::Command::new(whoami)
            .args(["-x", "-H", &slapd.ldap_url, "-D", &format!("uid=alice,{PEOPLE}"), "-w", ""])
            .output()
            .unwrap();
        assert!(out.status.success(), "slapd accepts unauthenticated binds: {out:?}");
    }
    // `PASS ` with an empty argument reaches the users backend (PLAIN refuses it earlier).
    let empty = Session::login(&addr, "alice", "");
    assert_eq!(empty, wrong, "an empty password is a wrong one");
    assert!(auth_plain(&addr, "alice", "").starts_with("-ERR"), "empty PLAIN password");
    let plain = auth_plain(&addr, "alice", "alice pw");
    assert!(plain.starts_with("+OK"), "AUTH PLAIN: {plain}");
    // Mechanisms that need a stored secret fail alone; a digest is never a login.
    let mut s = Session::connect(&addr);
    let apop = s.cmd("APOP alice 0123456789abcdef0123456789abcdef");
    assert!(apop.starts_with("-ERR"), "APOP: {apop}");
    s.cmd("QUIT");
    assert!(Session::login(&addr, "alice", "alice pw").starts_with("+OK"), "still served");
}

#[test]
fn search_then_bind_over_ldaps_with_the_home_attribute() {
    let homes = tempfile::tempdir().unwrap();
    let carol_home = homes.path().join("carol");
    let users = [
        LdapUser {
            name: "carol",
            password: "carol pw",
            home: carol_home.to_str().unwrap(),
            mail: "carol@example.org",
        },
        USERS[1].clone(),
        USERS[2].clone(),
    ];
    let Some(slapd) = Slapd::start("pop3d [ldap] search-then-bind", &users) else { return };
    let password_file = slapd.dir().join("service.pw");
    std::fs::write(&password_file, format!("{SERVICE_PASSWORD}\n")).unwrap();
    let section = format!(
        "[ldap]\nurl = \"{}\"\nca_file = \"{}\"\nbase = \"{PEOPLE}\"\n\
         filter = \"(&(objectClass=inetOrgPerson)(|(uid=%u)(mail=%u)))\"\n\
         search_dn = \"{SERVICE_DN}\"\nsearch_password_file = \"{}\"\n\
         home_attribute = \"homeDirectory\"\n",
        slapd.ldaps_url,
        slapd.ca_file.display(),
        password_file.display()
    );
    let (dir, data) = data_dir(&section);
    let config = std::fs::read_to_string(data.join("pop3d.toml")).unwrap();
    let config = config.replace("location = \"mail/%u\"", "location = \"%h/Maildir\"")
        + "\n[lmtp]\nlisten = [\"127.0.0.1:0\"]\n";
    std::fs::write(data.join("pop3d.toml"), config).unwrap();
    let (code, err) = check_config(&data);
    assert_eq!(code, Some(0), "check-config: {err}");

    // deliver finds carol's home in the directory: the mail goes under it.
    output_ok(&run(&["deliver", "carol"], &data, b"Subject: hi\n\nhello\n"), "deliver carol");
    let delivered = std::fs::read_dir(carol_home.join("Maildir/new")).unwrap().count();
    assert_eq!(delivered, 1);

    let daemon = Daemon::serve(dir, data);
    // LMTP looks recipients up in the directory too.
    let lmtp = daemon.announced("pop3d: LMTP on ").expect("pop3d announces its LMTP listener");
    let mut c = Lmtp::connect(&lmtp);
    assert!(c.cmd("LHLO test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<sender@example.net>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<mallory@example.org>").starts_with("550"), "unknown recipient");
    assert!(c.cmd("RCPT TO:<carol@example.org>").starts_with("250"), "{}", daemon.log());
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(&stuffed(b"Subject: by LMTP\r\n\r\nhello\r\n"));
    assert!(c.line().starts_with("250"), "delivered to carol");
    let addr = daemon.plain.clone();
    let ok = Session::login(&addr, "carol", "carol pw");
    assert!(ok.starts_with("+OK maildrop has 2 "), "{ok}\n{}", daemon.log());
    let wrong = Session::login(&addr, "carol", "nope");
    let unknown = Session::login(&addr, "mallory", "nope");
    assert!(wrong.starts_with("-ERR [AUTH]"), "{wrong}");
    assert_eq!(wrong, unknown, "an unknown user looks like a wrong password");
    // A filter wildcard in the name is escaped: it matches no one.
    assert!(Session::login(&addr, "*", "carol pw").starts_with("-ERR [AUTH]"));
    // Two entries match: refused, and the log says why.
    let both = Session::login(&addr, "shared@example.org", "bob pw");
    assert!(both.starts_with("-ERR [AUTH]"), "{both}");
    assert!(daemon.log().contains("several entries match"), "{}", daemon.log());
    assert!(Session::login(&addr, "bob", "bob pw").starts_with("+OK"), "{}", daemon.log());
}

#[test]
fn a_dead_stalled_or_garbled_directory_is_a_temporary_failure_never_a_login() {
    let Some(mut slapd) = Slapd::start("pop3d [ldap] failures", USERS) else { return };
    // The timeout is 1 s: every answer below must come well within a few.
    let (dir, data) = data_dir(&template_section(&slapd, 1));
    let daemon = Daemon::serve(dir, data.clone());
    let addr = daemon.plain.clone();
    let bound = Duration::from_secs(4);
    assert!(timed_login(&addr, "alice", "alice pw", bound).starts_with("+OK"));

    // Stalled: the kernel still accepts connections, slapd answers nothing.
    slapd.pause();
    let stalled = timed_login(&addr, "alice", "alice pw", bound);
    assert!(stalled.starts_with("-ERR [SYS/TEMP]"), "stalled: {stalled}");
    let stalled = timed_login(&addr, "bob", "wrong", bound);
    assert!(stalled.starts_with("-ERR [SYS/TEMP]"), "stalled: {stalled}");
    slapd.resume();
    let back = timed_login(&addr, "alice", "alice pw", bound);
    assert!(back.starts_with("+OK"), "after SIGCONT: {back}\n{}", daemon.log());

    // Killed: connections are refused.
    let ldap_url = slapd.ldap_url.clone();
    slapd.kill();
    let dead = timed_login(&addr, "alice", "alice pw", bound);
    assert!(dead.starts_with("-ERR [SYS/TEMP]"), "killed: {dead}");
    let deliver = run(&["deliver", "alice"], &data, b"Subject: hi\n\nhello\n");
    assert_eq!(deliver.status.code(), Some(75), "deliver retries later: {deliver:?}");
    let (code, err) = check_config(&data);
    assert_eq!(code, Some(75), "unreachable: {err}");
    assert!(err.contains("connecting to") && err.contains(&ldap_url), "{err}");
    // Back again: the broken connections were dropped, new ones are made; no restart.
    slapd.restart();
    let back = timed_login(&addr, "alice", "alice pw", bound);
    assert!(back.starts_with("+OK"), "after a restart: {back}\n{}", daemon.log());
    drop(daemon);

    // Garbage: a peer that answers junk to anything.
    let junk = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let junk_url = format!("ldap://{}", junk.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in junk.incoming() {
            let Ok(mut stream) = stream else { break };
            std::thread::spawn(move || {
                let mut buf = [0; 512];
                let _ = stream.read(&mut buf);
                let _ = stream
                    .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n\x30\x84\xff\xff\xff\xffjunk");
                std::thread::sleep(Duration::from_secs(5));
            });
        }
    });
    for starttls in [true, false] {
        let section = format!(
            "[ldap]\nurl = \"{junk_url}\"\nstarttls = {starttls}\nbind_dn = \"uid=%u,{PEOPLE}\"\n\
             timeout = 1\n"
        );
        let (dir, data) = data_dir(&section);
        let (code, err) = check_config(&data);
        assert_eq!(code, Some(75), "garbage (starttls = {starttls}): {err}");
        let daemon = Daemon::serve(dir, data);
        let garbled = timed_login(&daemon.plain, "alice", "alice pw", bound);
        assert!(garbled.starts_with("-ERR [SYS/TEMP]"), "garbage: {garbled}\n{}", daemon.log());
    }
}

#[test]
fn check_config_says_what_is_wrong() {
    let Some(slapd) = Slapd::start("pop3d [ldap] check-config", USERS) else { return };
    let wrong_pw = slapd.dir().join("wrong.pw");
    std::fs::write(&wrong_pw, "not the service password\n").unwrap();
    let search = |url: &str, ca: bool, password_file: &Path, base: &str| {
        let ca =
            if ca { format!("ca_file = \"{}\"\n", slapd.ca_file.display()) } else { String::new() };
        format!(
            "[ldap]\nurl = \"{url}\"\n{ca}base = \"{base}\"\nfilter = \"(uid=%u)\"\n\
             search_dn = \"{SERVICE_DN}\"\nsearch_password_file = \"{}\"\n",
            password_file.display()
        )
    };
    let (_dir, data) = data_dir(&search(&slapd.ldaps_url, true, &wrong_pw, PEOPLE));
    let (code, err) = check_config(&data);
    assert_eq!(code, Some(78), "bad service password: {err}");
    assert!(err.contains("invalid credentials") && err.contains(SERVICE_DN), "{err}");

    let right_pw = slapd.dir().join("right.pw");
    std::fs::write(&right_pw, SERVICE_PASSWORD).unwrap();
    let (_dir, data) =
        data_dir(&search(&slapd.ldaps_url, true, &right_pw, "ou=nowhere,dc=example,dc=org"));
    let (code, err) = check_config(&data);
    assert_eq!(code, Some(78), "bad base: {err}");
    assert!(err.contains("ou=nowhere") && err.contains("does not exist"), "{err}");

    // Without the CA, slapd's certificate is not trusted.
    let (_dir, data) = data_dir(&search(&slapd.ldaps_url, false, &right_pw, PEOPLE));
    let (code, err) = check_config(&data);
    assert_eq!(code, Some(78), "untrusted certificate: {err}");
    assert!(err.contains("invalid peer certificate: UnknownIssuer"), "{err}");

    let (_dir, data) = data_dir(&search(&slapd.ldaps_url, true, &right_pw, PEOPLE));
    let (code, err) = check_config(&data);
    assert_eq!(code, Some(0), "all good: {err}");
}
