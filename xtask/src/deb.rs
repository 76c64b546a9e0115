//! `cargo xtask deb [--check]`: the Debian packages `pop3d` and `pop3`, built with `dpkg-deb`
//! from a staging tree into `target/debian/`.
//!
//! - `pop3d`: `/usr/sbin/pop3d`; its man pages and completions (`cargo xtask dist`); the
//!   systemd units of `dist/systemd/` (paths set for the package); `/etc/pop3d/pop3d.toml`
//!   (`dist/debian/pop3d.toml`, a conffile); maintainer scripts (`dist/debian/pop3d.*`): a
//!   `pop3d` system user, `/var/lib/pop3d` and an empty users file, all removed on purge
//!   except the user (Debian policy).
//! - `pop3`: `/usr/bin/pop3`, its man pages and completions, the systemd user units.
//!
//! `--check` (as root, on a Debian machine: CI) runs lintian when it is installed (errors
//! fail, the rest is printed), installs both packages with `dpkg -i`, checks the packaged
//! configuration, adds a user and delivers to them with the packaged binary, starts the
//! packaged server (as root, dropping to the packaged user), fetches the message with the
//! packaged `pop3`, then purges both and checks that nothing but the system user is left.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::loadtest::{free_port, sh};
use crate::{cargo_with, root, run, Result};

/// Entry point.
pub fn deb(args: &[String]) -> Result {
    let check = match args {
        [] => false,
        [flag] if flag == "--check" => true,
        _ => return Err("usage: cargo xtask deb [--check]".into()),
    };
    run(cargo_with(&[
        "build",
        "--release",
        "--locked",
        "-p",
        "pop3d",
        "-p",
        "pop3-cli",
        "--bin",
        "pop3d",
        "--bin",
        "pop3",
    ]))?;
    crate::dist::dist(&[])?;
    let out = root().join("target").join("debian");
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let version = format!("{}-1", workspace_version()?);
    let arch = sh("dpkg --print-architecture")?;
    let debs = [
        build(&out, "pop3d", &version, &arch, stage_pop3d)?,
        build(&out, "pop3", &version, &arch, stage_pop3)?,
    ];
    for deb in &debs {
        eprintln!("xtask: built {}", deb.display());
    }
    if check {
        lintian(&debs)?;
        install_serve_fetch_purge(&debs)?;
    }
    Ok(())
}

/// The version of the binaries (crates/pop3d's, which every published crate shares).
fn workspace_version() -> Result<String> {
    let manifest =
        fs::read_to_string(root().join("crates/pop3d/Cargo.toml")).map_err(|e| e.to_string())?;
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \"")?.strip_suffix('"'))
        .map(str::to_owned)
        .ok_or_else(|| "crates/pop3d/Cargo.toml: no version".into())
}

/// Puts `contents` at `path` (absolute, as installed) under `stage`, with `mode`.
fn put(stage: &Path, path: &str, contents: &[u8], mode: u32) -> Result {
    let target = stage.join(path.trim_start_matches('/'));
    fs::create_dir_all(target.parent().unwrap()).map_err(|e| e.to_string())?;
    fs::write(&target, contents).map_err(|e| format!("{}: {e}", target.display()))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())
}

fn read(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = root().join(path);
    fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// gzip -9n, as Debian wants man pages and changelogs (no timestamp: reproducible).
fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write as _;
    let mut child = Command::new("gzip")
        .args(["-9n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("gzip: {e}"))?;
    child.stdin.take().unwrap().write_all(data).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    Ok(out.stdout)
}

/// The man pages and completions of `command` from `target/dist`.
fn docs_and_completions(stage: &Path, command: &str) -> Result {
    let dist = root().join("target/dist");
    for entry in fs::read_dir(dist.join("man")).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mine = name.strip_suffix(".1").is_some_and(|n| {
            n == command || n.strip_prefix(command).is_some_and(|rest| rest.starts_with('-'))
        });
        if mine {
            let page = gzip(&fs::read(&path).map_err(|e| e.to_string())?)?;
            put(stage, &format!("/usr/share/man/man1/{name}.gz"), &page, 0o644)?;
        }
    }
    let completions = dist.join("completions");
    let bash = read(completions.join(format!("bash/{command}.bash")))?;
    put(stage, &format!("/usr/share/bash-completion/completions/{command}"), &bash, 0o644)?;
    let zsh = read(completions.join(format!("zsh/_{command}")))?;
    put(stage, &format!("/usr/share/zsh/vendor-completions/_{command}"), &zsh, 0o644)?;
    let fish = read(completions.join(format!("fish/{command}.fish")))?;
    put(stage, &format!("/usr/share/fish/vendor_completions.d/{command}.fish"), &fish, 0o644)
}

/// `/usr/share/doc/PACKAGE`: copyright (machine-readable) and a changelog.
fn doc_files(stage: &Path, package: &str, version: &str) -> Result {
    let mit = String::from_utf8_lossy(&read("LICENSE-MIT")?).into_owned();
    let mit: String =
        mit.lines().map(|l| if l.is_empty() { " .\n".into() } else { format!(" {l}\n") }).collect();
    let copyright = format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: pop3\n\n\
         Files: *\nCopyright: 2026 the pop3 authors\nLicense: MIT or Apache-2.0\n\n\
         License: MIT\n{mit}\n\
         License: Apache-2.0\n On Debian systems, the complete text of the Apache License 2.0 \
         can be found\n in /usr/share/common-licenses/Apache-2.0.\n"
    );
    put(stage, &format!("/usr/share/doc/{package}/copyright"), copyright.as_bytes(), 0o644)?;
    let date = sh("date -R")?;
    let changelog = format!(
        "{package} ({version}) unstable; urgency=medium\n\n  * Built from the source tree by \
         cargo xtask deb.\n\n -- pop3 maintainers <maintainers@pop3.example.org>  {date}\n"
    );
    let changelog = gzip(changelog.as_bytes())?;
    put(stage, &format!("/usr/share/doc/{package}/changelog.Debian.gz"), &changelog, 0o644)
}

/// `binary` without its symbols and debug information (`strip --strip-unneeded`, as
/// dh_strip does).
fn stripped(binary: &Path) -> Result<Vec<u8>> {
    let copy = binary.with_extension("stripped");
    let status = Command::new("strip")
        .arg("--strip-unneeded")
        .arg("-o")
        .arg(&copy)
        .arg(binary)
        .status()
        .map_err(|e| format!("strip: {e}"))?;
    if !status.success() {
        return Err(format!("strip {}: {status}", binary.display()));
    }
    let data = fs::read(&copy).map_err(|e| e.to_string())?;
    let _ = fs::remove_file(&copy);
    Ok(data)
}

/// What the package depends on: the C library version the binary needs, and libgcc_s.
fn depends(binary: &Path) -> Result<String> {
    let glibc = sh(&format!(
        "objdump -T '{}' | grep -o 'GLIBC_[0-9.]*' | sort -V | tail -1",
        binary.display()
    ))?;
    let glibc = glibc.trim_start_matches("GLIBC_");
    Ok(format!("libc6 (>= {glibc}), libgcc-s1"))
}

fn stage_pop3d(stage: &Path) -> Result<String> {
    let binary = root().join("target/release/pop3d");
    put(stage, "/usr/sbin/pop3d", &stripped(&binary)?, 0o755)?;
    docs_and_completions(stage, "pop3d")?;
    let unit = String::from_utf8_lossy(&read("dist/systemd/pop3d.service")?)
        .replace("/usr/local/bin/pop3d", "/usr/sbin/pop3d")
        .replace("ReadWritePaths=/var/vmail", "ReadWritePaths=/var/lib/pop3d");
    put(stage, "/lib/systemd/system/pop3d.service", unit.as_bytes(), 0o644)?;
    for socket in ["pop3d.socket", "pop3d-tls.socket", "pop3d-lmtp.socket"] {
        let text = read(format!("dist/systemd/{socket}"))?;
        put(stage, &format!("/lib/systemd/system/{socket}"), &text, 0o644)?;
    }
    put(stage, "/etc/pop3d/pop3d.toml", &read("dist/debian/pop3d.toml")?, 0o644)?;
    put(stage, "/DEBIAN/conffiles", b"/etc/pop3d/pop3d.toml\n", 0o644)?;
    for script in ["postinst", "prerm", "postrm"] {
        put(
            stage,
            &format!("/DEBIAN/{script}"),
            &read(format!("dist/debian/pop3d.{script}"))?,
            0o755,
        )?;
    }
    Ok(format!(
        "Section: mail\nDepends: {}, adduser\n\
         Description: POP3 server for Maildir, mbox and PostgreSQL mailboxes\n \
         pop3d serves POP3 (RFC 1939) with STLS and POP3S, SASL (SCRAM-SHA-256,\n \
         OAuth 2.0 bearer tokens), users from a Dovecot passwd-file, PostgreSQL\n \
         or LDAP, and an LMTP delivery listener.\n",
        depends(&binary)?
    ))
}

fn stage_pop3(stage: &Path) -> Result<String> {
    let binary = root().join("target/release/pop3");
    put(stage, "/usr/bin/pop3", &stripped(&binary)?, 0o755)?;
    docs_and_completions(stage, "pop3")?;
    let example = read("dist/pop3/config.example.toml")?;
    put(stage, "/usr/share/doc/pop3/examples/config.toml", &example, 0o644)?;
    for entry in fs::read_dir(root().join("dist/systemd/user")).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read(&path).map_err(|e| e.to_string())?;
        put(stage, &format!("/usr/lib/systemd/user/{name}"), &text, 0o644)?;
    }
    Ok(format!(
        "Section: mail\nDepends: {}\n\
         Description: crash-safe POP3 mail retriever\n \
         pop3 fetches mail over POP3 into Maildir, mbox or an MDA, exactly once\n \
         even when the server or the machine fails mid-fetch, with OAuth 2.0 for\n \
         Gmail and Microsoft 365 and a daemon mode.\n",
        depends(&binary)?
    ))
}

/// Stages `package` with `stage_files` (which returns the control fields it decides) and
/// builds `OUT/PACKAGE_VERSION_ARCH.deb`.
fn build(
    out: &Path,
    package: &str,
    version: &str,
    arch: &str,
    stage_files: fn(&Path) -> Result<String>,
) -> Result<PathBuf> {
    let stage = out.join(format!("{package}-stage"));
    let fields = stage_files(&stage)?;
    doc_files(&stage, package, version)?;
    let size = sh(&format!("du -sk --exclude=DEBIAN '{}' | cut -f1", stage.display()))?;
    let control = format!(
        "Package: {package}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: pop3 \
         maintainers <maintainers@pop3.example.org>\nInstalled-Size: {size}\nPriority: optional\n{fields}"
    );
    put(&stage, "/DEBIAN/control", control.as_bytes(), 0o644)?;
    let deb = out.join(format!("{package}_{version}_{arch}.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group", "-Zxz"])
        .arg(&stage)
        .arg(&deb)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("dpkg-deb: {e}"))?;
    if !status.success() {
        return Err(format!("dpkg-deb --build {package}: {status}"));
    }
    Ok(deb)
}

/// lintian's findings, printed; an error (E:) fails. Skipped loudly without lintian, failed
/// under CI=true.
fn lintian(debs: &[PathBuf]) -> Result {
    if Command::new("lintian").arg("--version").output().is_err() {
        if std::env::var("CI").as_deref() == Ok("true") {
            return Err("lintian is missing and CI=true (apt-get install lintian)".into());
        }
        eprintln!("xtask: SKIPPED: lintian is not installed; NOT RUN");
        return Ok(());
    }
    let out = Command::new("lintian")
        .args(["--allow-root", "--no-tag-display-limit"])
        .args(debs)
        .output()
        .map_err(|e| e.to_string())?;
    let findings = String::from_utf8_lossy(&out.stdout);
    eprintln!("xtask: lintian:\n{findings}");
    let errors: Vec<&str> = findings.lines().filter(|l| l.starts_with("E:")).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("lintian errors:\n{}", errors.join("\n")))
    }
}

/// Installs, serves, fetches and purges (root only).
fn install_serve_fetch_purge(debs: &[PathBuf]) -> Result {
    if !sh("id -u")?.eq("0") {
        return Err("deb --check installs packages: run it as root (CI does)".into());
    }
    let step = |what: &str, cmd: &str| -> Result<String> {
        eprintln!("==> {what}: {cmd}");
        sh(cmd)
    };
    let paths: Vec<String> = debs.iter().map(|d| format!("'{}'", d.display())).collect();
    step("install", &format!("dpkg -i {}", paths.join(" ")))?;
    let result = (|| -> Result {
        let pop3d = "/usr/sbin/pop3d --config /etc/pop3d/pop3d.toml";
        step("check the packaged configuration", &format!("{pop3d} check-config"))?;
        let owner = step("the users file belongs to the server", "stat -c %U:%a /etc/pop3d/users")?;
        if owner != "pop3d:600" {
            return Err(format!("/etc/pop3d/users is {owner}, not pop3d:600"));
        }
        step(
            "add a user",
            &format!("echo packaged-secret | {pop3d} user add alice --password-stdin"),
        )?;
        step(
            "deliver",
            &format!("printf 'Subject: packaged\\n\\nfrom the package\\n' | {pop3d} deliver alice"),
        )?;
        let port = free_port()?;
        let mut server = Command::new("/usr/sbin/pop3d")
            .args(["--config", "/etc/pop3d/pop3d.toml", "serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let _ = server.kill();
                return Err("the packaged pop3d does not listen".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let user = step(
            "the server runs as the packaged user",
            &format!("ps -o user= -p {}", server.id()),
        )?;
        let home = std::env::temp_dir().join(format!("pop3-deb-{}", std::process::id()));
        let fetched = step(
            "fetch with the packaged pop3",
            &format!(
                "HOME='{0}' XDG_STATE_HOME='{0}/state' POP3_PASSWORD=packaged-secret \
                 /usr/bin/pop3 fetch pop3://alice@127.0.0.1:{port} --no-tls --to maildir:'{0}/Mail' \
                 && cat '{0}'/Mail/new/*",
                home.display()
            ),
        );
        let _ = server.kill();
        let _ = server.wait();
        let _ = fs::remove_dir_all(&home);
        if user != "pop3d" {
            return Err(format!("the packaged server runs as {user:?}, not pop3d"));
        }
        let fetched = fetched?;
        if !fetched.contains("from the package") {
            return Err(format!("fetched mail is not the delivered message: {fetched}"));
        }
        eprintln!("xtask: the packaged pop3 fetched the message the packaged pop3d served");
        Ok(())
    })();
    step("purge", "dpkg --purge pop3d pop3")?;
    result?;
    let left = sh(
        "ls -d /etc/pop3d /var/lib/pop3d /usr/sbin/pop3d /usr/bin/pop3 /lib/systemd/system/pop3d.service \
         2>/dev/null || true",
    )?;
    if !left.is_empty() {
        return Err(format!("left after purge: {left}"));
    }
    sh("getent passwd pop3d")
        .map_err(|_| "the pop3d system user is gone (policy keeps it)".to_owned())?;
    eprintln!(
        "xtask: purged; nothing left but the pop3d system user (kept, as Debian policy asks)"
    );
    Ok(())
}
