//! fetchmail polling alice with STLS (the server's certificate checked) and an MDA that
//! stores each message in a file of its own, for the interop and cluster tests.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fetchmail home: its rc file, id file and the directory its MDA writes to.
pub struct Fetchmail {
    home: PathBuf,
    out_dir: PathBuf,
    mda: PathBuf,
}

impl Fetchmail {
    /// A home under `home` (created), with the MDA script.
    pub fn new(home: &Path) -> Self {
        let out_dir = home.join("out");
        std::fs::create_dir_all(&out_dir).unwrap();
        let mda = home.join("mda.sh");
        // One file per message: each MDA run is a shell of its own ($$), at its own time.
        let script = format!("#!/bin/sh\ncat > \"{}/msg.$$.$(date +%s%N)\"\n", out_dir.display());
        std::fs::write(&mda, script).unwrap();
        std::fs::set_permissions(&mda, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { home: home.to_owned(), out_dir, mda }
    }

    /// One verbose poll of alice (password `secret`) on 127.0.0.1:`port` with UIDLs and
    /// STLS checked against `cert`; `options` end the poll line (`keep fetchall`, ...).
    pub fn poll(&self, port: &str, cert: &Path, options: &str) -> Output {
        let rc = self.home.join("fetchmailrc");
        std::fs::write(
            &rc,
            format!(
                "set no bouncemail\n\
                 poll localhost via 127.0.0.1 protocol pop3 service {port} uidl\n\
                   user \"alice\" there with password \"secret\" is \"alice\" here\n\
                   sslproto 'TLS1.2+' sslcertck sslcertfile \"{cert}\" sslcommonname localhost\n\
                   mda \"{mda}\" {options}\n",
                cert = cert.display(),
                mda = self.mda.display(),
            ),
        )
        .unwrap();
        // fetchmail refuses an rc file that others can read.
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
        Command::new("fetchmail")
            .args(["--nodetach", "--nosyslog", "-v", "-f"])
            .arg(&rc)
            .arg("--pidfile")
            .arg(self.home.join("pid"))
            .arg("--idfile")
            .arg(self.home.join("ids"))
            .env("HOME", &self.home)
            .env("FETCHMAILHOME", &self.home)
            .output()
            .unwrap()
    }

    /// The messages the MDA stored since the last call, taken away.
    pub fn take(&self) -> Vec<Vec<u8>> {
        let mut messages = Vec::new();
        for entry in std::fs::read_dir(&self.out_dir).unwrap() {
            let path = entry.unwrap().path();
            messages.push(std::fs::read(&path).unwrap());
            std::fs::remove_file(path).unwrap();
        }
        messages
    }
}
