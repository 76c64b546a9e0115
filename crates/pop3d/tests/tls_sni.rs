//! Several certificates chosen by SNI (`[[tls.sni]]`), checked with `openssl s_client
//! -servername` (skipped loudly without openssl, failed under CI=true), and reloaded on SIGHUP.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{peer, Daemon};

/// A self-signed pair for `name`, written as NAME.pem and NAME.key in `dir`.
fn pair(dir: &Path, name: &str) {
    let certified = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), certified.cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), certified.signing_key.serialize_pem()).unwrap();
}

/// What `openssl s_client ARGS` prints (it sends QUIT once connected).
fn s_client(args: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .arg("s_client")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"QUIT\r\n").unwrap();
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
}

/// The subject alternative names of the certificate in an `s_client` output, as `openssl
/// x509 -noout -ext subjectAltName` prints them.
fn sans(s_client_output: &str) -> String {
    let start = s_client_output.find("-----BEGIN CERTIFICATE-----").expect("a certificate");
    let end = s_client_output.find("-----END CERTIFICATE-----").unwrap() + 25;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    x509.stdin.take().unwrap().write_all(&s_client_output.as_bytes()[start..end]).unwrap();
    String::from_utf8_lossy(&x509.wait_with_output().unwrap().stdout).into_owned()
}

/// The names of the certificate served on `addr` (implicit TLS) for `servername`.
fn served_names(addr: &str, servername: Option<&str>) -> String {
    match servername {
        Some(name) => sans(&s_client(&["-connect", addr, "-servername", name])),
        None => sans(&s_client(&["-connect", addr, "-noservername"])),
    }
}

#[test]
fn certificates_are_chosen_by_sni_with_a_default_and_reloaded_on_sighup() {
    if !peer("openssl", "openssl") {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    for name in ["mail.example.org", "wild.example.net"] {
        pair(certs.path(), name);
    }
    let dir = certs.path().display().to_string();
    let mut daemon = Daemon::start_configured(|config| {
        format!(
            "{config}\n[[tls.sni]]\nnames = [\"mail.example.org\"]\n\
             cert = \"{dir}/mail.example.org.pem\"\nkey = \"{dir}/mail.example.org.key\"\n\n\
             [[tls.sni]]\nnames = [\"*.example.net\"]\n\
             cert = \"{dir}/wild.example.net.pem\"\nkey = \"{dir}/wild.example.net.key\"\n"
        )
    });
    let tls = daemon.tls.clone();
    // RFC 6066 §3: the name the client asked for picks the certificate.
    assert!(served_names(&tls, Some("mail.example.org")).contains("DNS:mail.example.org"));
    assert!(served_names(&tls, Some("MAIL.Example.org")).contains("DNS:mail.example.org"));
    assert!(served_names(&tls, Some("pop.example.net")).contains("DNS:wild.example.net"));
    // No SNI, or a name nobody listed: the default pair (the data dir's, for localhost).
    assert!(served_names(&tls, None).contains("DNS:localhost"));
    assert!(served_names(&tls, Some("other.test")).contains("DNS:localhost"));
    // STLS on the plain port takes the same certificates.
    let plain = daemon.plain.clone();
    let stls =
        s_client(&["-starttls", "pop3", "-connect", &plain, "-servername", "mail.example.org"]);
    assert!(sans(&stls).contains("DNS:mail.example.org"), "{stls}");

    // A new certificate for mail.example.org, then SIGHUP: served from then on.
    pair(certs.path(), "mail.example.org");
    let renewed = std::fs::read_to_string(certs.path().join("mail.example.org.pem")).unwrap();
    let pid = rustix::process::Pid::from_child(&daemon.child);
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.log().contains("SIGHUP: TLS certificate reloaded") {
        assert!(Instant::now() < deadline, "no reload: {}", daemon.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = s_client(&["-connect", &tls, "-servername", "mail.example.org"]);
    let body = |pem: &str| pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>();
    assert!(body(&out).contains(&body(&renewed)), "the renewed certificate is served");
    assert!(daemon.stop().success());
}
