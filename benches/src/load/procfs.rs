//! CPU time and proportional memory of a process and all its descendants, from `/proc`
//! (Linux). A server that forks per session (Dovecot) is measured as a whole: CPU of
//! children that have exited is in their parent's `cutime`/`cstime`.

use std::collections::HashMap;
use std::fs;

/// `pid` and every live descendant.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(fields) = stat_fields(p) {
                if let Some(ppid) = fields.get(1).and_then(|s| s.parse::<u32>().ok()) {
                    children.entry(ppid).or_default().push(p);
                }
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend_from_slice(c);
        }
        i += 1;
    }
    out
}

/// The fields of `/proc/PID/stat` after the command name: `[state, ppid, ...]`.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_ascii_whitespace().map(str::to_owned).collect())
}

/// CPU seconds used by `pid` and its descendants, reaped ones included.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let ticks = clock_ticks();
    let mut total = 0u64;
    let mut found = false;
    for p in tree(pid) {
        if let Some(f) = stat_fields(p) {
            // utime, stime, cutime, cstime: fields 14-17 of stat(5), 11-14 here.
            for i in 11..=14 {
                total += f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            }
            found = true;
        }
    }
    found.then(|| total as f64 / ticks)
}

/// CPU seconds used by this process (all threads).
pub fn self_cpu_seconds() -> f64 {
    cpu_seconds_of(std::process::id()).unwrap_or(0.0)
}

fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let f = stat_fields(pid)?;
    let t: u64 = (11..=12).filter_map(|i| f.get(i)?.parse::<u64>().ok()).sum();
    Some(t as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}

/// Proportional set size of `pid` and its descendants, in KiB (`Pss:` of
/// `/proc/PID/smaps_rollup`), and the number of processes counted.
pub fn pss_kib(pid: u32) -> Option<(u64, usize)> {
    let mut total = 0;
    let mut count = 0;
    for p in tree(pid) {
        let Ok(text) = fs::read_to_string(format!("/proc/{p}/smaps_rollup")) else { continue };
        if let Some(kib) = text
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            total += kib;
            count += 1;
        }
    }
    (count > 0).then_some((total, count))
}

/// Resident memory of `pid` and its descendants from `/proc/PID/status`, in KiB: the sum of
/// `VmRSS` (now) and the sum of `VmHWM` (each process's peak), and the number of processes.
/// RSS counts shared pages once per process; [`pss_kib`] shares them out.
pub fn rss_kib(pid: u32) -> Option<(u64, u64, usize)> {
    let (mut rss, mut hwm, mut count) = (0, 0, 0);
    for p in tree(pid) {
        let Ok(text) = fs::read_to_string(format!("/proc/{p}/status")) else { continue };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        };
        if let (Some(r), Some(h)) = (field("VmRSS:"), field("VmHWM:")) {
            rss += r;
            hwm += h;
            count += 1;
        }
    }
    (count > 0).then_some((rss, hwm, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_this_process() {
        let me = std::process::id();
        assert!(tree(me).contains(&me));
        assert!(cpu_seconds(me).is_some());
        let (kib, n) = pss_kib(me).expect("smaps_rollup");
        assert!(kib > 0 && n >= 1);
        let (rss, hwm, n) = rss_kib(me).expect("status");
        assert!(rss > 0 && hwm >= rss && n >= 1, "{rss} {hwm} {n}");
    }
}
