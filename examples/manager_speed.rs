//! How fast a manager is: `cargo run --release --example manager_speed`.
//! Prints the manager's start time, a dict operation from a child, and the
//! same through one batched round trip, beside Python's Manager in the same
//! run when python3 is there.

use std::time::Instant;

use multiproc::manager::DictProxy;
use multiproc::{Manager, Process};

fn ops_in_child(d: DictProxy<u64, u64>, n: u64) -> (f64, f64) {
    let t = Instant::now();
    for i in 0..n {
        d.insert(i % 100, i).unwrap();
    }
    let single = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let keys: Vec<u64> = (0..100).collect();
    let t = Instant::now();
    let rounds = n / 100;
    for _ in 0..rounds {
        d.get_many(keys.iter()).unwrap();
    }
    let batched = t.elapsed().as_secs_f64() * 1e6 / (rounds * 100) as f64;
    (single, batched)
}

const PY: &str = r#"
import time, multiprocessing as mp
def child(d, n, q):
    t = time.perf_counter()
    for i in range(n):
        d[i % 100] = i
    q.put((time.perf_counter() - t) * 1e6 / n)
if __name__ == "__main__":
    mp.set_start_method("forkserver")
    t = time.perf_counter()
    m = mp.Manager()
    start = (time.perf_counter() - t) * 1e3
    d = m.dict(); q = mp.Queue()
    p = mp.Process(target=child, args=(d, 5000, q)); p.start(); p.join()
    print(f"{start:.2f} {q.get():.1f}")
    m.shutdown()
"#;

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    // Warm up the fork server so the start time is the manager's own.
    Process::new(|| (), ()).start()?.join()?;
    let mut starts = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let m = Manager::new()?;
        m.dict::<u8, u8>()?; // first round trip: the server is really up
        starts.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        m.shutdown()?;
        eprintln!("shutdown took {:?}", t.elapsed());
    }
    starts.sort_by(f64::total_cmp);
    let m = Manager::new()?;
    let d = m.dict::<u64, u64>()?;
    let (single, batched) = Process::new(ops_in_child, (d, 20_000)).start()?.join()?;
    println!(
        "multiproc: manager start {:.2} ms (median of 5), dict op from a child {single:.1} µs, batched {batched:.2} µs/op",
        starts[2]
    );
    match std::process::Command::new("python3")
        .args(["-c", PY])
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let mut it = text.split_whitespace();
            println!(
                "python:    manager start {} ms, dict op from a child {} µs",
                it.next().unwrap_or("?"),
                it.next().unwrap_or("?")
            );
        }
        _ => println!("python3 not available"),
    }
    Ok(())
}
