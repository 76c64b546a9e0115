//! The `maildrop_open` bench's three cases, timed in CPU time as well as wall-clock time.
//!
//! On a machine shared with other work, wall-clock times swing with the load; the CPU time
//! of the opening thread (user + system, `CLOCK_THREAD_CPUTIME_ID`) does not count the time
//! spent waiting for a core, so the cold/warm ratio stays comparable.
//!
//! ```text
//! cargo run --release -p pop3-storage --example maildrop_open_cpu [-- WARM_ITERS COLD_ITERS]
//! ```
//!
//! Generates 10,000 messages of 50 KiB (Postfix-style names, half in `new/`, half in `cur/`)
//! in a temporary directory, as the bench does.

#![forbid(unsafe_code)]

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use pop3_storage::maildir::CACHE_FILE;
use pop3_storage::{Maildir, Maildrop};
use rustix::time::{clock_gettime, ClockId};

const MESSAGES: usize = 10_000;
const SIZE: usize = 50 * 1024;

fn generate(root: &Path) {
    for d in ["new", "cur", "tmp"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    let mut body = Vec::with_capacity(SIZE);
    body.extend_from_slice(
        b"Return-Path: <a@example.org>\nFrom: a@example.org\nTo: b@example.com\nSubject: bench\n\n",
    );
    let mut i = 0;
    while body.len() < SIZE {
        body.extend_from_slice(
            format!("body line {i:06}: the quick brown fox jumps over the lazy dog\n").as_bytes(),
        );
        i += 1;
    }
    body.truncate(SIZE - 1);
    body.push(b'\n');
    for n in 0..MESSAGES {
        let name = format!("{}.V801I{n:x}M{n}.mx.example.com", 1_700_000_000 + n);
        let path = if n % 2 == 0 {
            root.join("new").join(name)
        } else {
            root.join("cur").join(format!("{name}:2,S"))
        };
        fs::write(path, &body).unwrap();
    }
    let past = SystemTime::now() - Duration::from_secs(60);
    for d in ["new", "cur"] {
        fs::File::open(root.join(d)).unwrap().set_modified(past).unwrap();
    }
}

fn cpu_ms() -> f64 {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

/// Runs `prepare` then an open `n` times; prints min and median of CPU and wall time.
fn measure(name: &str, n: usize, md: &Maildir, prepare: &dyn Fn()) -> f64 {
    let (mut cpu, mut wall) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        prepare();
        let (t, c) = (Instant::now(), cpu_ms());
        let d = md.open().unwrap();
        assert_eq!(d.messages().len(), MESSAGES);
        black_box(d.messages()[MESSAGES - 1].size);
        drop(d);
        cpu.push(cpu_ms() - c);
        wall.push(t.elapsed().as_secs_f64() * 1e3);
    }
    for v in [&mut cpu, &mut wall] {
        v.sort_by(f64::total_cmp);
    }
    let median = |v: &[f64]| v[v.len() / 2];
    println!(
        "{name:12} n={n:4}   cpu ms: min {:8.3} median {:8.3}   wall ms: min {:8.3} median {:8.3}",
        cpu[0],
        median(&cpu),
        wall[0],
        median(&wall)
    );
    median(&cpu)
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("a count"));
    let warm_iters = args.next().unwrap_or(100);
    let cold_iters = args.next().unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let md = Maildir::new(dir.path());
    let cache = dir.path().join(CACHE_FILE);
    let cold = measure("cold", cold_iters, &md, &|| {
        let _ = fs::remove_file(&cache);
    });
    drop(md.open().unwrap());
    let warm = measure("warm", warm_iters, &md, &|| {});
    let touch = dir.path().join("cur/.touch");
    let relist = measure("warm_relist", warm_iters, &md, &|| {
        fs::write(&touch, b"").unwrap();
        fs::remove_file(&touch).unwrap();
    });
    println!(
        "median CPU time, % of cold: warm {:.2} %, warm_relist {:.2} %",
        100.0 * warm / cold,
        100.0 * relist / cold
    );
}
