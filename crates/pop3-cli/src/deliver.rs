//! Local delivery: Maildir (idempotent, named after the account and UIDL), mbox (through
//! pop3-storage) or an MDA command. Every delivery is durable when `finish` returns.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use sha2::{Digest, Sha256};

/// Where mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Maildir (created if missing).
    Maildir(PathBuf),
    /// An mbox file (created if missing).
    Mbox(PathBuf),
    /// A command run with `sh -c`, the message on its standard input; exit status 0 means
    /// delivered.
    Mda(String),
}

impl Target {
    /// Parses `maildir:DIR`, `mbox:FILE` or `mda:COMMAND` (`~/` expanded).
    pub fn parse(text: &str) -> Result<Self, String> {
        let expand = |p: &str| -> PathBuf {
            match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
                (Some(rest), Some(home)) => Path::new(&home).join(rest),
                _ => PathBuf::from(p),
            }
        };
        if let Some(dir) = text.strip_prefix("maildir:") {
            Ok(Self::Maildir(expand(dir)))
        } else if let Some(file) = text.strip_prefix("mbox:") {
            Ok(Self::Mbox(expand(file)))
        } else if let Some(cmd) = text.strip_prefix("mda:") {
            Ok(Self::Mda(cmd.to_owned()))
        } else {
            Err(format!("--to {text}: expected maildir:DIR, mbox:FILE or mda:COMMAND"))
        }
    }
}

/// A prepared target for one run.
#[derive(Debug)]
pub struct Deliverer {
    target: Target,
    /// Names of our messages already in the Maildir's cur/ (moved there by a mail reader).
    in_cur: HashSet<String>,
    host: String,
    account: String,
}

/// One message being delivered.
#[derive(Debug)]
pub enum Delivery {
    /// Already in the Maildir (an earlier run delivered it and died before saving state).
    Present,
    /// Writing a Maildir message to `tmp`.
    Maildir { file: File, tmp: PathBuf, new: PathBuf, new_dir: PathBuf },
    /// Spooling for mbox.
    Mbox { file: File },
    /// Feeding an MDA.
    Mda { child: Child },
}

impl Deliverer {
    /// Prepares `target` for `account`, creating a missing Maildir.
    pub fn new(target: Target, account: &str) -> io::Result<Self> {
        let mut in_cur = HashSet::new();
        if let Target::Maildir(dir) = &target {
            for sub in ["tmp", "new", "cur"] {
                std::fs::create_dir_all(dir.join(sub))?;
            }
            for entry in std::fs::read_dir(dir.join("cur"))? {
                let name = entry?.file_name();
                let name = name.to_string_lossy();
                if name.contains(".P3U") {
                    in_cur.insert(name.split(':').next().unwrap_or_default().to_owned());
                }
            }
        }
        if let Target::Mbox(path) = &target {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
        }
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .replace('/', "\\057")
            .replace(':', "\\072")
            .replace('.', "_");
        Ok(Self { target, in_cur, host, account: account.to_owned() })
    }

    /// The Maildir base name of a message: stable for one account and UIDL, so a message
    /// delivered before a crash is recognised instead of delivered twice.
    fn base_name(&self, uid: &str, seen: u64) -> String {
        let digest = Sha256::digest(format!("{}\0{uid}", self.account).as_bytes());
        let hash: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
        format!("{seen}.P3U{hash}.{}", if self.host.is_empty() { "localhost" } else { &self.host })
    }

    /// Starts delivering the message `uid`, first seen at `seen`.
    pub fn start(&self, uid: &str, seen: u64) -> io::Result<Delivery> {
        match &self.target {
            Target::Maildir(dir) => {
                let base = self.base_name(uid, seen);
                let new = dir.join("new").join(&base);
                let tmp = dir.join("tmp").join(&base);
                if self.in_cur.contains(&base) || new.exists() {
                    // A run killed between linking into new/ and unlinking tmp/ left its tmp
                    // file behind; the message is delivered, so the leftover goes.
                    match std::fs::remove_file(&tmp) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                    return Ok(Delivery::Present);
                }
                let file = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
                Ok(Delivery::Maildir { file, tmp, new, new_dir: dir.join("new") })
            }
            Target::Mbox(path) => {
                let dir =
                    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                Ok(Delivery::Mbox { file: tempfile_in(dir)? })
            }
            Target::Mda(command) => {
                let child = Command::new("sh")
                    .arg("-c")
                    .arg(command)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .spawn()?;
                Ok(Delivery::Mda { child })
            }
        }
    }

    /// Durably finishes a delivery.
    pub fn finish(&self, delivery: Delivery) -> io::Result<()> {
        match delivery {
            Delivery::Present => Ok(()),
            Delivery::Maildir { file, tmp, new, new_dir } => {
                file.sync_all()?;
                drop(file);
                match std::fs::hard_link(&tmp, &new) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                std::fs::remove_file(&tmp)?;
                File::open(&new_dir)?.sync_all()
            }
            Delivery::Mbox { mut file } => {
                let Target::Mbox(path) = &self.target else { unreachable!() };
                file.rewind()?;
                pop3_storage::Mbox::new(path)
                    .deliver(&mut file, &pop3_storage::Envelope::default())
                    .map_err(|e| io::Error::other(e.to_string()))
            }
            Delivery::Mda { mut child } => {
                drop(child.stdin.take());
                let status = child.wait()?;
                if status.success() {
                    Ok(())
                } else {
                    Err(io::Error::other(format!("the MDA failed: {status}")))
                }
            }
        }
    }
}

impl Delivery {
    /// True when nothing needs to be written (already delivered).
    pub fn is_present(&self) -> bool {
        matches!(self, Self::Present)
    }

    /// Writes a chunk of the message.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Self::Present => Ok(()),
            Self::Maildir { file, .. } | Self::Mbox { file } => file.write_all(data),
            Self::Mda { child } => match child.stdin.as_mut() {
                Some(stdin) => stdin.write_all(data),
                None => Err(io::ErrorKind::BrokenPipe.into()),
            },
        }
    }

    /// Abandons a delivery (the download failed).
    pub fn abort(self) {
        match self {
            Self::Maildir { tmp, .. } => {
                let _ = std::fs::remove_file(tmp);
            }
            Self::Mda { mut child } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            _ => {}
        }
    }
}

/// An unnamed temporary file (removed when closed).
fn tempfile_in(dir: &Path) -> io::Result<File> {
    for attempt in 0..100u32 {
        let name = dir.join(format!(".pop3-spool.{}.{attempt}", std::process::id()));
        match OpenOptions::new().read(true).write(true).create_new(true).open(&name) {
            Ok(file) => {
                std::fs::remove_file(&name)?;
                return Ok(file);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("cannot create a spool file"))
}
