//! The size and snapshot cache `.pop3-storage.sizes`, and the directory stamps that say
//! whether its snapshot is current.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::name::{base_of, Entry};
use super::Sub;
use crate::error::IoContext;
use crate::util::{checksum64, fnv64};
use crate::Result;

/// The size (and last snapshot) cache inside the Maildir.
pub const CACHE_FILE: &str = ".pop3-storage.sizes";
pub(super) const CACHE_TMP: &str = ".pop3-storage.sizes.tmp";
pub(super) const CACHE_VERSION: u8 = 3;
pub(super) const CACHE_MAGIC: &[u8] = b"pop3-storage-sizes 3\n";
/// Format 1 (sizes by BASE, FNV-1a-64 checksum, no listing) is read for its sizes and
/// rewritten in the current format.
pub(super) const CACHE_MAGIC_V1: &[u8] = b"pop3-storage-sizes 1\n";

/// Directory modification times are trusted only once they are this old (seconds): a change
/// within the same timestamp tick as the recorded one could otherwise keep the same mtime.
/// Two seconds covers every file system's granularity (FAT's is 2 s, ext3's 1 s).
pub(super) const SETTLE_SECS: i64 = 2;

/// What identifies the state of `new/` and `cur/`: device, inode, mtime and ctime (s, ns) of
/// each. Creating, removing or renaming a file in a directory updates its mtime and ctime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DirStamps([i64; 12]);

impl DirStamps {
    /// The stamps now, and whether they are settled (both mtimes at least [`SETTLE_SECS`]
    /// in the past). `None` if a directory cannot be `stat`ed (e.g. no `new/`).
    pub(super) fn take(root: &Path) -> Option<(Self, bool)> {
        use std::os::unix::fs::MetadataExt;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        let now = i64::try_from(now).ok()?;
        let mut v = [0i64; 12];
        let mut settled = true;
        for (i, sub) in [Sub::New, Sub::Cur].into_iter().enumerate() {
            let m = fs::metadata(root.join(sub.dir())).ok()?;
            v[i * 6..i * 6 + 6].copy_from_slice(&[
                m.dev() as i64,
                m.ino() as i64,
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            ]);
            // A modification time in the future (clock stepped back) is not settled either.
            settled &= now - m.mtime() >= SETTLE_SECS;
        }
        Some((Self(v), settled))
    }
}

/// One line of the cache: `<size> <stored length or -> <n|c> <NAME>` (format 3) or
/// `<size> <stored length> <BASE>` (format 1: no directory, `name` is BASE).
#[derive(Debug, Clone, Copy)]
pub(super) struct CacheLine<'a> {
    pub(super) size: u64,
    pub(super) raw: Option<u64>,
    pub(super) sub: Option<Sub>,
    pub(super) name: &'a [u8],
}

/// (line number, start, end) of a line in the cache file.
pub(super) type IndexedLine = (usize, usize, usize);

/// The per-Maildir cache (format in `docs/storage.md`): the snapshot of the last open that
/// listed the directories (names in order, sizes, stored lengths) and the directories'
/// [`DirStamps`] when they were settled.
///
/// ```text
/// pop3-storage-sizes 3
/// dirs <12 numbers: DirStamps> | dirs -
/// <rfc1939 size> <stored length or -> <n|c> <NAME>
/// ...
/// checksum <16 hex digits: checksum64 of every byte above this line>
/// ```
#[derive(Debug, Default)]
pub(super) struct SizeCache {
    /// The cache file as read.
    pub(super) bytes: Vec<u8>,
    pub(super) version: u8,
    /// The directories' stamps when the listing was written, if they were settled.
    pub(super) stamps: Option<DirStamps>,
    /// Where the entry lines are in `bytes` (after the header, before the checksum).
    pub(super) body_start: usize,
    pub(super) body_end: usize,
    /// The next line to try (its offset in `bytes` and its number): the cache is written in
    /// snapshot order, so a listing matches it line by line, parsing each line once as it
    /// is reached, without hashing.
    pub(super) pos: usize,
    pub(super) line_no: usize,
    /// Number of entry lines in the file.
    pub(super) lines: usize,
    /// Which lines this open used; a line never used describes a message that is gone.
    pub(super) used: Vec<bool>,
    pub(super) used_count: usize,
    /// BASE → line; built on the first out-of-order lookup.
    pub(super) index: Option<HashMap<Vec<u8>, IndexedLine>>,
    /// Entries computed by this open.
    pub(super) added: HashMap<Vec<u8>, (u64, u64)>,
    /// The file must be rewritten: missing, corrupt, an old format, new or changed entries.
    pub(super) dirty: bool,
}

impl SizeCache {
    pub(super) fn load(root: &Path) -> Self {
        let mut cache = Self::default();
        match fs::read(root.join(CACHE_FILE)) {
            Ok(bytes) => match Self::validate(&bytes) {
                Some((body, version, stamps)) => {
                    cache.lines = memchr::memchr_iter(b'\n', &bytes[body.clone()]).count();
                    cache.used = vec![false; cache.lines];
                    (cache.pos, cache.body_start, cache.body_end) =
                        (body.start, body.start, body.end);
                    (cache.version, cache.stamps) = (version, stamps);
                    cache.bytes = bytes;
                    // A format 1 cache is used for sizes, and rewritten in the current format.
                    cache.dirty = version != CACHE_VERSION;
                }
                None => cache.dirty = true, // corrupt: rebuild
            },
            Err(_) => cache.dirty = true,
        }
        cache
    }

    /// Checks the magic line, the `dirs` line and the checksum: the range of the entry lines,
    /// the format version and the stamps. The entry lines are parsed as they are used.
    #[allow(clippy::type_complexity)]
    pub(super) fn validate(
        bytes: &[u8],
    ) -> Option<(std::ops::Range<usize>, u8, Option<DirStamps>)> {
        let (version, rest) = if let Some(rest) = bytes.strip_prefix(CACHE_MAGIC) {
            (CACHE_VERSION, rest)
        } else {
            (1, bytes.strip_prefix(CACHE_MAGIC_V1)?)
        };
        let trailer_at = bytes.len().checked_sub(26)?; // "checksum " + 16 + "\n"
        let trailer = &bytes[trailer_at..];
        let sum = trailer.strip_prefix(b"checksum ")?.strip_suffix(b"\n")?;
        let sum = u64::from_str_radix(std::str::from_utf8(sum).ok()?, 16).ok()?;
        let covered = &bytes[..trailer_at];
        let expected = if version == 1 { fnv64(covered) } else { checksum64(covered) };
        if sum != expected || covered.last() != Some(&b'\n') {
            return None;
        }
        let mut body_start = bytes.len() - rest.len();
        let mut stamps = None;
        if version == CACHE_VERSION {
            let end = memchr::memchr(b'\n', rest)?;
            let fields = rest[..end].strip_prefix(b"dirs ")?;
            if fields != b"-" {
                let mut v = [0i64; 12];
                let mut it = fields.split(|&b| b == b' ');
                for slot in &mut v {
                    *slot = std::str::from_utf8(it.next()?).ok()?.parse().ok()?;
                }
                if it.next().is_some() {
                    return None;
                }
                stamps = Some(DirStamps(v));
            }
            body_start += end + 1;
        }
        (body_start <= trailer_at).then_some((body_start..trailer_at, version, stamps))
    }

    /// Parses one entry line (without its newline).
    pub(super) fn parse_line(version: u8, line: &[u8]) -> Option<CacheLine<'_>> {
        let num = |p: &[u8]| -> Option<u64> {
            if p.is_empty() || p.len() > 19 || !p.iter().all(u8::is_ascii_digit) {
                return None;
            }
            Some(p.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
        };
        let field = |rest: &[u8]| -> Option<(usize, usize)> {
            let sp = rest.iter().position(|&b| b == b' ')?;
            Some((sp, sp + 1))
        };
        let (end, next) = field(line)?;
        let size = num(&line[..end])?;
        let mut rest = &line[next..];
        let (end, next) = field(rest)?;
        let raw = match &rest[..end] {
            b"-" if version != 1 => None,
            r => Some(num(r)?),
        };
        rest = &rest[next..];
        let sub = if version == 1 {
            None
        } else {
            let (sub, name) = match rest {
                [b'n', b' ', name @ ..] => (Sub::New, name),
                [b'c', b' ', name @ ..] => (Sub::Cur, name),
                _ => return None,
            };
            rest = name;
            Some(sub)
        };
        if rest.is_empty() {
            return None;
        }
        Some(CacheLine { size, raw, sub, name: rest })
    }

    pub(super) fn mark_used(&mut self, line_no: usize) {
        if let Some(u) = self.used.get_mut(line_no) {
            if !*u {
                *u = true;
                self.used_count += 1;
            }
        }
    }

    /// The cached size and stored length of the message with this BASE, if any. A line for
    /// the same BASE under another name (flags changed, moved to `cur/`) still gives the
    /// size; the cache is then rewritten so its listing is current.
    pub(super) fn get(&mut self, sub: Sub, name: &[u8], base: &[u8]) -> Option<(u64, Option<u64>)> {
        // The usual case first: the same name (one comparison), else the same BASE.
        let matches = |l: &CacheLine<'_>| match l.sub {
            Some(_) => l.name == name || base_of(l.name) == base,
            None => l.name == base,
        };
        let mut found = None;
        if self.pos < self.body_end {
            let rest = &self.bytes[self.pos..self.body_end];
            let len = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            match Self::parse_line(self.version, &rest[..len]) {
                Some(l) if matches(&l) => found = Some((self.line_no, l)),
                Some(_) => {}              // out of order: the index below
                None => self.dirty = true, // malformed despite the checksum: never used
            }
            if found.is_some() || self.dirty {
                self.pos += len + 1;
                self.line_no += 1;
            }
        }
        if found.is_none() {
            let (bytes, version) = (&self.bytes, self.version);
            let (start, end) = (self.body_start, self.body_end);
            let index = self.index.get_or_insert_with(|| {
                let (mut map, mut at) = (HashMap::new(), start);
                for (line_no, nl) in memchr::memchr_iter(b'\n', &bytes[start..end]).enumerate() {
                    let nl = start + nl;
                    if let Some(l) = Self::parse_line(version, &bytes[at..nl]) {
                        let key = if l.sub.is_some() { base_of(l.name) } else { l.name };
                        map.entry(key.to_vec()).or_insert((line_no, at, nl));
                    }
                    at = nl + 1;
                }
                map
            });
            if let Some(&(line_no, at, nl)) = index.get(base) {
                // Resume line-by-line matching after it (a message inserted or removed in
                // the middle costs one lookup, not one per following message).
                (self.pos, self.line_no) = (nl + 1, line_no + 1);
                found = Self::parse_line(version, &bytes[at..nl]).map(|l| (line_no, l));
            }
        }
        if let Some((line_no, l)) = found {
            if l.sub != Some(sub) || l.name != name {
                self.dirty = true;
            }
            let hit = (l.size, l.raw);
            self.mark_used(line_no);
            return Some(hit);
        }
        self.dirty = true; // a message the cache does not list
        self.added.get(base).map(|&(size, raw)| (size, Some(raw)))
    }

    pub(super) fn insert(&mut self, base: &[u8], size: u64, raw: u64) {
        self.added.insert(base.to_vec(), (size, raw));
        self.dirty = true;
    }

    /// Whether the cache must be rewritten: new or changed entries, entries for messages
    /// that no longer exist (stale), or a corrupt, missing or format 1 file.
    pub(super) fn needs_save(&self) -> bool {
        self.dirty || self.used_count != self.lines
    }

    /// The cached snapshot (names, entries in order, sizes), used as is when the directories'
    /// stamps are those recorded. `None` if any line does not parse.
    pub(super) fn listing(&self) -> Option<(Vec<u8>, Vec<Entry>, Vec<u64>)> {
        if self.version != CACHE_VERSION {
            return None;
        }
        let body = &self.bytes[self.body_start..self.body_end];
        let mut names = Vec::with_capacity(body.len());
        let mut entries = Vec::with_capacity(self.lines);
        let mut sizes = Vec::with_capacity(self.lines);
        let mut at = 0;
        for nl in memchr::memchr_iter(b'\n', body) {
            let l = Self::parse_line(self.version, &body[at..nl])?;
            at = nl + 1;
            let (Ok(len), Ok(base_len)) =
                (l.name.len().try_into(), base_of(l.name).len().try_into())
            else {
                return None;
            };
            let start = names.len();
            names.extend_from_slice(l.name);
            let (sub, raw_len) = (l.sub?, l.raw);
            entries.push(Entry { sub, start, len, base_len, secs: 0, usec: 0, raw_len });
            sizes.push(l.size);
        }
        Some((names, entries, sizes))
    }

    /// Writes the cache: `stamps` (if the directories were settled) and the snapshot. A name
    /// containing a newline cannot be written: its message is left out and the listing is
    /// then not trusted (`dirs -`). Written to a temporary file, fsynced and renamed over
    /// the old one, so a reader sees the old or the new cache, never a mix; a torn file
    /// fails its checksum and is rebuilt.
    pub(super) fn save(
        root: &Path,
        mut stamps: Option<DirStamps>,
        names: &[u8],
        entries: &[Entry],
        sizes: &[u64],
    ) -> Result<()> {
        let mut lines = Vec::with_capacity(entries.len() * 64);
        for (e, size) in entries.iter().zip(sizes) {
            let name = e.name(names);
            if name.contains(&b'\n') {
                stamps = None;
                continue;
            }
            let sub = match e.sub {
                Sub::New => 'n',
                Sub::Cur => 'c',
            };
            match e.raw_len {
                Some(raw) => write!(lines, "{size} {raw} {sub} "),
                None => write!(lines, "{size} - {sub} "),
            }
            .expect("writing to a Vec");
            lines.extend_from_slice(name);
            lines.push(b'\n');
        }
        let mut out = Vec::with_capacity(lines.len() + 300);
        out.extend_from_slice(CACHE_MAGIC);
        out.extend_from_slice(b"dirs");
        match stamps {
            Some(DirStamps(v)) => v.iter().for_each(|n| {
                write!(out, " {n}").expect("writing to a Vec");
            }),
            None => out.extend_from_slice(b" -"),
        }
        out.push(b'\n');
        out.extend_from_slice(&lines);
        drop(lines);
        let sum = checksum64(&out);
        out.extend_from_slice(format!("checksum {sum:016x}\n").as_bytes());
        let tmp = root.join(CACHE_TMP);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .ctx("create", &tmp)?;
        f.write_all(&out).ctx("write", &tmp)?;
        f.sync_all().ctx("fsync", &tmp)?;
        let dest = root.join(CACHE_FILE);
        fs::rename(&tmp, &dest).ctx("rename size cache to", &dest)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maildir::name::Listing;
    use std::path::PathBuf;

    /// A snapshot as `list_and_size` leaves it: names, entries, sizes.
    fn snapshot(items: &[(Sub, &str, u64, Option<u64>)]) -> (Vec<u8>, Vec<Entry>, Vec<u64>) {
        let mut l = Listing::default();
        for &(sub, name, _, raw) in items {
            l.push(sub, name.as_bytes());
            l.entries.last_mut().unwrap().raw_len = raw;
        }
        (l.names, l.entries, items.iter().map(|i| i.2).collect())
    }

    fn cache_file(dir: &Path) -> PathBuf {
        dir.join(CACHE_FILE)
    }

    #[test]
    fn cache_round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (names, entries, sizes) = snapshot(&[
            (Sub::New, "1.a.h", 12, Some(10)),
            (Sub::Cur, "2.b h:2,S", 3, Some(2)),
            (Sub::Cur, "3.c,S=5,W=6:2,", 6, Some(5)),
            (Sub::New, "4.d,W=9", 9, None),
        ]);
        let stamps = DirStamps([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, -12]);
        SizeCache::save(dir.path(), Some(stamps), &names, &entries, &sizes).unwrap();
        let mut loaded = SizeCache::load(dir.path());
        assert!(!loaded.dirty);
        assert_eq!(loaded.stamps, Some(stamps));
        let (n2, e2, s2) = loaded.listing().unwrap();
        assert_eq!(n2, names);
        assert_eq!(s2, sizes);
        let summary = |n: &[u8], e: &[Entry]| -> Vec<(Sub, Vec<u8>, Option<u64>)> {
            e.iter().map(|e| (e.sub, e.name(n).to_vec(), e.raw_len)).collect()
        };
        assert_eq!(summary(&n2, &e2), summary(&names, &entries));
        // Line by line, in order.
        assert_eq!(loaded.get(Sub::New, b"1.a.h", b"1.a.h"), Some((12, Some(10))));
        assert_eq!(loaded.get(Sub::Cur, b"2.b h:2,S", b"2.b h"), Some((3, Some(2))));
        assert_eq!(loaded.get(Sub::Cur, b"3.c,S=5,W=6:2,", b"3.c,S=5,W=6"), Some((6, Some(5))));
        assert_eq!(loaded.get(Sub::New, b"4.d,W=9", b"4.d,W=9"), Some((9, None)));
        assert!(!loaded.needs_save());
        assert_eq!(loaded.get(Sub::New, b"5.e", b"5.e"), None);
        assert!(loaded.needs_save(), "a message the cache does not list");
        // Out of file order (messages added before others): found through the index.
        let mut loaded = SizeCache::load(dir.path());
        assert_eq!(loaded.get(Sub::Cur, b"2.b h:2,S", b"2.b h"), Some((3, Some(2))));
        assert_eq!(loaded.get(Sub::New, b"1.a.h", b"1.a.h"), Some((12, Some(10))));
        assert_eq!(loaded.get(Sub::Cur, b"3.c,S=5,W=6:2,", b"3.c,S=5,W=6"), Some((6, Some(5))));
        assert_eq!(loaded.get(Sub::New, b"4.d,W=9", b"4.d,W=9"), Some((9, None)));
        assert_eq!(loaded.used_count, 4);
        assert!(!loaded.needs_save());
        // A line no message used is stale; the same line found twice counts once.
        let mut loaded = SizeCache::load(dir.path());
        assert_eq!(loaded.get(Sub::New, b"1.a.h", b"1.a.h"), Some((12, Some(10))));
        assert_eq!(loaded.get(Sub::New, b"1.a.h", b"1.a.h"), Some((12, Some(10))));
        assert_eq!(loaded.used_count, 1);
        assert!(loaded.needs_save());
        // Moved to cur/ with flags: same size, but the listing must be rewritten.
        let mut loaded = SizeCache::load(dir.path());
        assert_eq!(loaded.get(Sub::Cur, b"1.a.h:2,S", b"1.a.h"), Some((12, Some(10))));
        assert!(loaded.dirty);
        // Flip one digit: the checksum catches it and the cache is rebuilt.
        let p = cache_file(dir.path());
        let good = fs::read(&p).unwrap();
        let mut bytes = good.clone();
        let at = bytes.len() - 40;
        bytes[at] ^= 1;
        fs::write(&p, &bytes).unwrap();
        let loaded = SizeCache::load(dir.path());
        assert!(loaded.dirty && loaded.lines == 0 && loaded.stamps.is_none());
        fs::write(&p, &good[..good.len() - 5]).unwrap();
        assert!(SizeCache::load(dir.path()).dirty);
        // Malformed lines with a valid checksum (a bug, or an edit that fixed the sum):
        // never used, the lines around them still are, no listing is served from the file,
        // and it is rewritten.
        let mut odd = CACHE_MAGIC.to_vec();
        odd.extend_from_slice(b"dirs -\n12 10 n 1.a.h\n12 x n 1.b.h\n12 10 q 1.c.h\n3 2 c 2.b h\n");
        let sum = checksum64(&odd);
        odd.extend_from_slice(format!("checksum {sum:016x}\n").as_bytes());
        fs::write(&p, &odd).unwrap();
        let mut loaded = SizeCache::load(dir.path());
        assert!(loaded.listing().is_none());
        assert_eq!(loaded.get(Sub::New, b"1.a.h", b"1.a.h"), Some((12, Some(10))));
        assert_eq!(loaded.get(Sub::New, b"1.b.h", b"1.b.h"), None);
        assert_eq!(loaded.get(Sub::New, b"1.c.h", b"1.c.h"), None);
        assert_eq!(loaded.get(Sub::Cur, b"2.b h", b"2.b h"), Some((3, Some(2))));
        assert!(loaded.needs_save());
        // A bad `dirs` line is a corrupt file.
        for dirs in [&b"dirs 1 2 3\n"[..], b"dirs x\n", b"dirz -\n", b""] {
            let mut bad = CACHE_MAGIC.to_vec();
            bad.extend_from_slice(dirs);
            bad.extend_from_slice(b"12 10 n 1.a.h\n");
            let sum = checksum64(&bad);
            bad.extend_from_slice(format!("checksum {sum:016x}\n").as_bytes());
            fs::write(&p, &bad).unwrap();
            assert!(SizeCache::load(dir.path()).dirty, "{:?}", String::from_utf8_lossy(dirs));
        }
    }

    #[test]
    fn names_with_newlines_are_left_out_and_the_listing_untrusted() {
        let dir = tempfile::tempdir().unwrap();
        let (names, entries, sizes) =
            snapshot(&[(Sub::New, "1.a", 1, Some(1)), (Sub::New, "2.b\nc", 2, Some(2))]);
        let stamps = DirStamps([1; 12]);
        SizeCache::save(dir.path(), Some(stamps), &names, &entries, &sizes).unwrap();
        let mut loaded = SizeCache::load(dir.path());
        assert_eq!(loaded.stamps, None);
        assert_eq!(loaded.lines, 1);
        assert_eq!(loaded.get(Sub::New, b"1.a", b"1.a"), Some((1, Some(1))));
    }

    #[test]
    fn format_1_cache_sizes_are_used_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let mut v1 = b"pop3-storage-sizes 1\n12 10 1.a.h\n3 2 2.b h\n".to_vec();
        let sum = fnv64(&v1);
        v1.extend_from_slice(format!("checksum {sum:016x}\n").as_bytes());
        fs::write(cache_file(dir.path()), &v1).unwrap();
        let mut loaded = SizeCache::load(dir.path());
        assert!(loaded.listing().is_none() && loaded.stamps.is_none());
        assert_eq!(loaded.get(Sub::New, b"1.a.h", b"1.a.h"), Some((12, Some(10))));
        assert_eq!(loaded.get(Sub::Cur, b"2.b h:2,S", b"2.b h"), Some((3, Some(2))));
        assert!(loaded.needs_save(), "format 1 is rewritten in the current format");
        // A format 1 magic with a current checksum is corrupt.
        let (names, entries, sizes) = snapshot(&[(Sub::New, "1.a.h", 12, Some(10))]);
        SizeCache::save(dir.path(), None, &names, &entries, &sizes).unwrap();
        let mut mixed = fs::read(cache_file(dir.path())).unwrap();
        mixed[..CACHE_MAGIC_V1.len()].copy_from_slice(CACHE_MAGIC_V1);
        fs::write(cache_file(dir.path()), &mixed).unwrap();
        assert_eq!(SizeCache::load(dir.path()).lines, 0);
    }
}
