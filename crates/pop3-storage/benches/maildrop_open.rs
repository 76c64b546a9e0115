//! `maildrop_open/{cold,warm,warm_relist}`: opening a Maildir of 10,000 messages of 50 KiB.
//!
//! * cold: no cache, every message is read once to compute its RFC 1939 size (and the cache
//!   is written).
//! * warm: the cache is valid and `new/` and `cur/` have not changed since it was written
//!   (their device, inode, mtime and ctime are those recorded, and were settled then), so the
//!   open `stat`s the two directories and reads only the cache file.
//! * warm_relist: the cache is valid but `cur/` changed just before each open (a dotfile is
//!   created and removed, which changes its mtime but not the messages), so the open lists
//!   `new/` and `cur/` and matches every name against the cache; no message is read.
//!
//! The messages are Postfix-style names without `,W=`, so the cache is what both warm cases
//! depend on. Generated into a temporary directory at bench time; the directories are then
//! dated a minute back, as in a Maildir that has not changed for a while.

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use pop3_storage::maildir::CACHE_FILE;
use pop3_storage::{Maildir, Maildrop};

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
        // Half read by a client (cur/ with flags), half still new.
        let name = format!("{}.V801I{n:x}M{n}.mx.example.com", 1_700_000_000 + n);
        let path = if n % 2 == 0 {
            root.join("new").join(name)
        } else {
            root.join("cur").join(format!("{name}:2,S"))
        };
        fs::write(path, &body).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let past = SystemTime::now() - Duration::from_secs(60);
    for d in ["new", "cur"] {
        fs::File::open(dir.path().join(d)).unwrap().set_modified(past).unwrap();
    }
    let md = Maildir::new(dir.path());
    let open = |md: &Maildir| {
        let d = md.open().unwrap();
        assert_eq!(d.messages().len(), MESSAGES);
        black_box(d.messages()[MESSAGES - 1].size)
    };
    let mut g = c.benchmark_group("maildrop_open");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    g.bench_function("cold", |b| {
        b.iter(|| {
            let _ = fs::remove_file(dir.path().join(CACHE_FILE));
            open(&md)
        })
    });
    open(&md); // writes the cache
    g.bench_function("warm", |b| b.iter(|| open(&md)));
    let touch = dir.path().join("cur/.touch");
    g.bench_function("warm_relist", |b| {
        b.iter(|| {
            fs::write(&touch, b"").unwrap();
            fs::remove_file(&touch).unwrap();
            open(&md)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
