//! replay-log: read a dm-log-writes log and replay a range of its entries
//! onto a copy of the logged device, for the lost-writes test
//! (kola-tests/09-lost-writes.sh). Runs in the test guest; std only.
//!
//!   replay-log list LOG                 one line per entry:
//!                                       INDEX FLAGS SECTOR NR_SECTORS [MARK]
//!   replay-log replay LOG DEV FROM TO   write entries FROM..TO (TO excluded)
//!                                       onto DEV
//!
//! The log format (drivers/md/dm-log-writes.c): block 0 holds the super
//! (magic, version, number of entries, sector size, little-endian); each
//! entry is one block with {sector, nr_sectors, flags, data_len}, a mark's
//! text inline after it, then nr_sectors blocks of written data (none for a
//! discard or a mark). The kernel logs a write when the flush that makes it
//! durable completes, so replaying a prefix of the entries gives a state the
//! disk could have been in at a power cut. Discards are not replayed: the
//! old data stays, which a device may also do.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

const MAGIC: u64 = 0x006a_7366_7773_6872;
pub const FLUSH: u64 = 1;
pub const FUA: u64 = 2;
pub const DISCARD: u64 = 4;
pub const MARK: u64 = 8;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub sector: u64,
    pub nr_sectors: u64,
    pub flags: u64,
    pub mark: Option<String>,
    /// Byte offset of the entry's data in the log.
    pub data_at: u64,
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The sector size and the entries of a log.
pub fn parse<R: Read + Seek>(log: &mut R) -> Result<(u64, Vec<Entry>), String> {
    let mut sup = [0u8; 28];
    log.read_exact(&mut sup).map_err(|e| format!("reading the super block: {e}"))?;
    if le64(&sup, 0) != MAGIC {
        return Err(format!("not a dm-log-writes log (magic {:#x})", le64(&sup, 0)));
    }
    if le64(&sup, 8) != 1 {
        return Err(format!("log version {} is not 1", le64(&sup, 8)));
    }
    let count = le64(&sup, 16);
    let bs = u32::from_le_bytes(sup[24..28].try_into().unwrap()) as u64;
    if !(512..=65536).contains(&bs) || !bs.is_power_of_two() {
        return Err(format!("bad sector size {bs}"));
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut at = bs;
    let mut head = vec![0u8; bs as usize];
    for i in 0..count {
        log.seek(SeekFrom::Start(at)).map_err(|e| e.to_string())?;
        log.read_exact(&mut head).map_err(|e| format!("entry {i} at byte {at}: {e}"))?;
        let (sector, nr_sectors, flags, data_len) = (le64(&head, 0), le64(&head, 8), le64(&head, 16), le64(&head, 24));
        let mark = (flags & MARK != 0).then(|| {
            let n = (data_len as usize).min(bs as usize - 32);
            String::from_utf8_lossy(&head[32..32 + n]).into_owned()
        });
        at += bs;
        entries.push(Entry { sector, nr_sectors, flags, mark, data_at: at });
        if flags & (DISCARD | MARK) == 0 {
            at += nr_sectors * bs;
        }
    }
    Ok((bs, entries))
}

/// Write entries `from..to` onto `dev`.
pub fn replay(log: &File, bs: u64, entries: &[Entry], from: usize, to: usize, dev: &File) -> Result<(), String> {
    let mut buf = Vec::new();
    for (i, e) in entries.iter().enumerate().take(to).skip(from) {
        if e.flags & (DISCARD | MARK) != 0 || e.nr_sectors == 0 {
            continue;
        }
        buf.resize((e.nr_sectors * bs) as usize, 0);
        log.read_exact_at(&mut buf, e.data_at).map_err(|err| format!("entry {i}: reading its data: {err}"))?;
        dev.write_all_at(&buf, e.sector * bs).map_err(|err| format!("entry {i}: writing sector {}: {err}", e.sector))?;
    }
    dev.sync_all().map_err(|e| e.to_string())
}

fn flags_text(f: u64) -> String {
    let mut s: Vec<&str> = [(FLUSH, "flush"), (FUA, "fua"), (DISCARD, "discard"), (MARK, "mark")]
        .iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if s.is_empty() {
        s.push("write");
    }
    s.join(",")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let fail = |m: String| -> ! {
        eprintln!("replay-log: {m}");
        std::process::exit(1)
    };
    let open_log = |p: &str| File::open(p).unwrap_or_else(|e| fail(format!("{p}: {e}")));
    match args.get(1).map(String::as_str) {
        Some("list") if args.len() == 3 => {
            let mut log = open_log(&args[2]);
            let (_, entries) = parse(&mut log).unwrap_or_else(|e| fail(format!("{}: {e}", args[2])));
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for (i, e) in entries.iter().enumerate() {
                let _ = writeln!(out, "{i} {} {} {}{}", flags_text(e.flags), e.sector, e.nr_sectors, e.mark.as_ref().map(|m| format!(" {m}")).unwrap_or_default());
            }
        }
        Some("replay") if args.len() == 6 => {
            let mut log = open_log(&args[2]);
            let (bs, entries) = parse(&mut log).unwrap_or_else(|e| fail(format!("{}: {e}", args[2])));
            let num = |s: &str| s.parse::<usize>().unwrap_or_else(|_| fail(format!("{s}: not an entry index")));
            let (from, to) = (num(&args[4]), num(&args[5]));
            if from > to || to > entries.len() {
                fail(format!("range {from}..{to} is not within the {} entries", entries.len()));
            }
            let dev = OpenOptions::new().write(true).open(&args[3]).unwrap_or_else(|e| fail(format!("{}: {e}", args[3])));
            replay(&log, bs, &entries, from, to, &dev).unwrap_or_else(|e| fail(e));
        }
        _ => fail("usage: replay-log list LOG | replay-log replay LOG DEV FROM TO".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log as the kernel writes it: super, a write of two sectors, a
    /// flush, a mark, a discard, a FUA write of one sector.
    fn sample() -> Vec<u8> {
        let bs = 512usize;
        let mut log = vec![0u8; bs];
        log[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        log[8..16].copy_from_slice(&1u64.to_le_bytes());
        log[16..24].copy_from_slice(&5u64.to_le_bytes());
        log[24..28].copy_from_slice(&512u32.to_le_bytes());
        let mut entry = |sector: u64, nr: u64, flags: u64, inline: &[u8], data: &[u8]| {
            let mut h = vec![0u8; bs];
            h[0..8].copy_from_slice(&sector.to_le_bytes());
            h[8..16].copy_from_slice(&nr.to_le_bytes());
            h[16..24].copy_from_slice(&flags.to_le_bytes());
            h[24..32].copy_from_slice(&(inline.len() as u64).to_le_bytes());
            h[32..32 + inline.len()].copy_from_slice(inline);
            log.extend_from_slice(&h);
            log.extend_from_slice(data);
        };
        entry(2, 2, 0, b"", &[b'a'; 1024]);
        entry(0, 0, FLUSH, b"", b"");
        entry(0, 0, MARK, b"swapped", b"");
        entry(1, 4, DISCARD, b"", b"");
        entry(0, 1, FUA, b"", &[b'b'; 512]);
        log
    }

    #[test]
    fn parses_every_kind_of_entry() {
        let (bs, e) = parse(&mut std::io::Cursor::new(sample())).unwrap();
        assert_eq!(bs, 512);
        let kinds: Vec<(u64, u64, u64)> = e.iter().map(|e| (e.flags, e.sector, e.nr_sectors)).collect();
        assert_eq!(kinds, vec![(0, 2, 2), (FLUSH, 0, 0), (MARK, 0, 0), (DISCARD, 1, 4), (FUA, 0, 1)]);
        assert_eq!(e[2].mark.as_deref(), Some("swapped"));
        // The FUA write's data follows its header, after the other entries.
        assert_eq!(e[4].data_at, 512 * 8);
    }

    #[test]
    fn replays_a_prefix_then_the_rest() {
        let dir = std::env::temp_dir().join(format!("replay-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("log"), sample()).unwrap();
        std::fs::write(dir.join("dev"), vec![0u8; 8 * 512]).unwrap();
        let log = File::open(dir.join("log")).unwrap();
        let (bs, e) = parse(&mut File::open(dir.join("log")).unwrap()).unwrap();
        let dev = OpenOptions::new().write(true).open(dir.join("dev")).unwrap();
        replay(&log, bs, &e, 0, 2, &dev).unwrap();
        let d = std::fs::read(dir.join("dev")).unwrap();
        assert!(d[1024..2048].iter().all(|&b| b == b'a') && d[..1024].iter().all(|&b| b == 0));
        replay(&log, bs, &e, 2, e.len(), &dev).unwrap();
        let d = std::fs::read(dir.join("dev")).unwrap();
        assert!(d[..512].iter().all(|&b| b == b'b') && d[512..1024].iter().all(|&b| b == 0));
        let bad = parse(&mut std::io::Cursor::new(vec![0u8; 512])).unwrap_err();
        assert!(bad.contains("not a dm-log-writes log"), "{bad}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
