//! /etc merge benchmark: an /etc of N files (default 20,000) with 5,000
//! modified, 500 added, 500 removed; prints plan and apply times and the
//! peak RSS. Run by bench/run (`cargo run --release --example etcmerge-bench`).

use std::path::Path;
use std::time::Instant;

use cap_std_ext::cap_std::{ambient_authority, fs::Dir};

fn put(p: &Path, content: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// This process's peak RSS (`VmHWM`), in KiB. Unlike getrusage's
/// `ru_maxrss`, it counts only this program image, never the memory of the
/// process it was spawned from.
fn maxrss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).expect("VmHWM in /proc/self/status");
    line.trim().trim_end_matches("kB").trim().parse().unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--merge") {
        return merge(Path::new(&args[2]), args[3].parse().unwrap());
    }
    let n: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(20_000);
    let base = tempfile::Builder::new().prefix("treeboot-etcbench-").tempdir_in("/var/tmp").unwrap();
    let (old, cur, new, out) = (base.path().join("old"), base.path().join("cur"), base.path().join("new"), base.path().join("out"));
    std::fs::create_dir_all(&out).unwrap();
    let _ = &out;
    let t = Instant::now();
    for i in 0..n {
        let rel = format!("d{:03}/f{i:05}.conf", i % 200);
        let body = format!("# default config {i}\nkey{i}=value\n{}\n", "x".repeat(200 + i % 300));
        for d in [&old, &cur, &new] {
            put(&d.join(&rel), body.as_bytes());
        }
    }
    for i in 0..5_000 {
        let rel = format!("d{:03}/f{i:05}.conf", i % 200);
        // Same size, different content: the worst case for the comparison.
        let mut body = std::fs::read(cur.join(&rel)).unwrap();
        body[2] = b'X';
        std::fs::write(cur.join(&rel), body).unwrap();
    }
    for i in 5_000..5_500 {
        std::fs::remove_file(cur.join(format!("d{:03}/f{i:05}.conf", i % 200))).unwrap();
    }
    for i in 0..500 {
        put(&cur.join(format!("d{:03}/added{i:04}.conf", i % 200)), b"added\n");
    }
    eprintln!("built trees in {:.1}s", t.elapsed().as_secs_f64());
    // The merge runs in a child process of its own, so that its peak RSS is
    // not the building's.
    let out_s = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--merge")
        .arg(base.path())
        .arg(n.to_string())
        .output()
        .unwrap();
    assert!(out_s.status.success(), "{}", String::from_utf8_lossy(&out_s.stderr));
    print!("{}", String::from_utf8_lossy(&out_s.stdout));
    let _ = std::process::Command::new("chattr").args(["-R", "-i"]).arg(base.path()).status();
}

fn merge(base: &Path, n: usize) {
    let (old, cur, new, out) = (base.join("old"), base.join("cur"), base.join("new"), base.join("out"));
    let dir = |p: &Path| Dir::open_ambient_dir(p, ambient_authority()).unwrap();
    let t = Instant::now();
    let plan = treeboot::etcmerge::plan(dir(&old), dir(&cur), dir(&new)).unwrap();
    let plan_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    // What deploy does: copy the defaults the merge keeps, then apply.
    treeboot::etcmerge::copy_defaults_for(&plan, dir(&new), dir(&out), "etc").unwrap();
    let copy_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let stats = treeboot::etcmerge::apply(&plan, dir(&cur), dir(&out.join("etc"))).unwrap();
    let apply_s = t.elapsed().as_secs_f64();
    println!(
        "etcmerge files={n} modified={} added={} removed={} plan_ms={:.0} copy_defaults_ms={:.0} apply_ms={:.0} peak_rss_kib={}",
        plan.summary.modified,
        plan.summary.added,
        plan.summary.removed,
        plan_s * 1e3,
        copy_s * 1e3,
        apply_s * 1e3,
        maxrss_kib()
    );
    assert_eq!(stats.removed, 500);
}
