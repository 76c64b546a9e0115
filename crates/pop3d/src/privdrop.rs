//! Dropping root privileges: after the listeners are bound, and before operator commands run
//! as root create files the server must own.
//!
//! Runs while the process has a single thread (before the tokio runtime starts): the
//! `set_thread_*` system calls then change the credentials of the whole process.

use rustix::process::{Gid, Uid};

/// The uid and gid of `user` from `/etc/passwd` (a name or a numeric uid).
pub fn lookup(user: &str) -> Result<(Uid, Gid), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 4 || (fields[0] != user && fields[2] != user) {
            continue;
        }
        let uid = fields[2].parse().map_err(|_| format!("/etc/passwd: bad uid for {user}"))?;
        let gid = fields[3].parse().map_err(|_| format!("/etc/passwd: bad gid for {user}"))?;
        return Ok((Uid::from_raw(uid), Gid::from_raw(gid)));
    }
    Err(format!("run_as = {user:?}: no such user in /etc/passwd"))
}

/// True if this process runs as root (and so may switch users or give files away).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Switches to `user` if running as root; a no-op (with a note) otherwise.
pub fn drop_to(user: &str) -> Result<(), String> {
    if !is_root() {
        eprintln!("pop3d: not running as root; run_as = {user:?} ignored");
        return Ok(());
    }
    switch_to(user)
}

/// For operator commands (`deliver`, `user add`) run as root: switches to the server's
/// `run_as` user before they create Maildirs and messages, so that everything they create
/// belongs to the user the server reads it as. Silently a no-op when not root.
pub fn drop_for_files(user: &str) -> Result<(), String> {
    if is_root() {
        switch_to(user)
    } else {
        Ok(())
    }
}

fn switch_to(user: &str) -> Result<(), String> {
    let (uid, gid) = lookup(user)?;
    if uid.is_root() {
        return Err(format!("run_as = {user:?} is root"));
    }
    rustix::thread::set_thread_groups(&[gid]).map_err(|e| format!("setgroups: {e}"))?;
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(|e| format!("setresgid: {e}"))?;
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(|e| format!("setresuid: {e}"))?;
    if rustix::process::geteuid() != uid || rustix::thread::set_thread_uid(Uid::ROOT).is_ok() {
        return Err("privileges were not dropped".into());
    }
    Ok(())
}
