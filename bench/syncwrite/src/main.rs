//! `syncwrite MODE`: appends 18,000 records of 120 bytes to a file at workload 1's pace
//! (a spin of 110 µs between appends) while a second thread fdatasyncs it every 5 ms,
//! as the log's group commit does, and prints the time spent in `write`. MODE: `nosync`
//! (no syncing thread), `append` (a plain append-only file), `fallocate` (blocks
//! preallocated, size kept), `presized` (the file written with zeros and synced first,
//! records written over them: no append changes the file's size). It answers whether a
//! sync in flight makes appends wait, and (with the machine's busy time printed) what a
//! sync costs in CPU, the kernel's threads included.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "append".into());
    let dir = std::env::temp_dir().join(format!("syncwrite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("f.log");
    let presized = mode == "presized";
    let file =
        std::fs::OpenOptions::new().append(!presized).write(true).create(true).mode(0o644).open(&path).expect("open");
    if presized {
        (&file).write_all(&vec![0u8; 8 << 20]).expect("zeros");
        file.sync_all().expect("sync");
    }
    if mode == "fallocate" {
        use std::os::fd::AsRawFd;
        let keep_size = nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE;
        nix::fcntl::fallocate(file.as_raw_fd(), keep_size, 0, 64 << 20).expect("fallocate");
    }
    let file = Arc::new(file);
    let (stop, syncs) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU32::new(0)));
    let syncer = {
        let (file, stop, syncs, sync) = (file.clone(), stop.clone(), syncs.clone(), mode != "nosync");
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if sync {
                    file.sync_data().expect("fdatasync");
                    syncs.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let record = [b'x'; 120];
    let mut took = Vec::with_capacity(18_000);
    let busy_before = busy_jiffies();
    for i in 0..18_000u64 {
        let t = Instant::now();
        if presized {
            use std::os::unix::fs::FileExt;
            file.write_all_at(&record, i * 120).expect("write");
        } else {
            (&*file).write_all(&record).expect("append");
        }
        took.push(t.elapsed().as_nanos() as u64);
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_micros(110) {}
    }
    let busy = busy_jiffies() - busy_before;
    stop.store(true, Ordering::Relaxed);
    syncer.join().expect("syncer");
    let _ = std::fs::remove_dir_all(&dir);
    took.sort_unstable();
    let n = took.len();
    let us = |ns: u64| ns as f64 / 1e3;
    println!(
        "{mode:10} syncs {:4}  write median {:.1} us, p90 {:.1}, p99 {:.1}, total {:.1} ms; machine busy {busy} jiffies",
        syncs.load(Ordering::Relaxed),
        us(took[n / 2]),
        us(took[n * 9 / 10]),
        us(took[n * 99 / 100]),
        took.iter().sum::<u64>() as f64 / 1e6
    );
}

/// The machine's busy time so far (user, nice, system, irq, softirq), in clock ticks.
fn busy_jiffies() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let cpu = stat.lines().next().expect("a cpu line");
    let v: Vec<u64> = cpu.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    v[0] + v[1] + v[2] + v[5] + v[6]
}
