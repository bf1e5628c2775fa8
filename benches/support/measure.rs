//! Run the real `exposure-monitor` binary as a child process and measure it: wall time, CPU
//! time and peak resident memory, so a budget benchmark measures exactly what an operator's cron
//! job would run, and nothing of the benchmark harness (servers, generators) counts against the
//! program's memory.
//!
//! Peak memory is the child's own high-water mark (`VmHWM` of its address space, sampled every
//! few milliseconds until it exits), not `wait4`'s `ru_maxrss`: Linux carries the spawning
//! process's high-water mark across `exec` into `ru_maxrss`, so a benchmark holding a million
//! generated posts would have its own memory charged to the program (every figure came out as
//! the harness's size, whatever the program did).

#![allow(dead_code)] // each benchmark uses a different part

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one measured run of the binary did.
#[derive(Debug)]
pub struct Measured {
    pub exit_code: Option<i32>,
    pub wall: Duration,
    /// Peak resident set size of the child, in KiB (its `VmHWM`, last sampled at most
    /// [`SAMPLE_EVERY`] before it exited).
    pub peak_rss_kib: u64,
    /// CPU time of the child (user + system, all its threads), from the same `wait4`.
    pub cpu: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl Measured {
    pub fn peak_rss_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }

    /// Panic with the child's output unless it exited 0.
    pub fn assert_success(&self, what: &str) {
        assert_eq!(self.exit_code, Some(0), "{what} failed\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
    }
}

/// The release binary built for this benchmark (`cargo bench` builds it).
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_exposure-monitor")
}

/// The program as a command, run under the profiler command line in the environment variable
/// `wrap_var` when it is set (split on whitespace, e.g. `valgrind --tool=callgrind`); the
/// figures measured are then the wrapper's, not the program's.
pub fn program(wrap_var: &str) -> Command {
    let wrap = std::env::var(wrap_var).unwrap_or_default();
    let mut words = wrap.split_whitespace();
    match words.next() {
        Some(profiler) => {
            let mut c = Command::new(profiler);
            c.args(words).arg(binary());
            c
        }
        None => Command::new(binary()),
    }
}

/// Run `cmd` to completion, capturing its output, and measure it.
pub fn run(cmd: &mut Command) -> Measured {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn the measured command");
    // Drain the pipes on their own threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    let pid = child.id() as libc::pid_t;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // `MEASURE_RSS_TRACE=FILE`: also write "seconds VmRSS-KiB VmHWM-KiB threads" every 100 ms,
    // to see what grows when (profiling; off by default).
    let mut trace = std::env::var_os("MEASURE_RSS_TRACE").and_then(|p| std::fs::File::create(p).ok());
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            let mut n = 0u64;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let path = format!("/proc/{pid}/status");
                peak = peak.max(vm_hwm_kib(&path));
                if let Some(f) = trace.as_mut() {
                    if n % 20 == 0 {
                        if let Ok(status) = std::fs::read_to_string(&path) {
                            let field = |k: &str| status_field(&status, k).unwrap_or(0);
                            let line = format!(
                                "{:.2} {} {} {}\n",
                                start.elapsed().as_secs_f64(),
                                field("VmRSS:"),
                                field("VmHWM:"),
                                field("Threads:")
                            );
                            std::io::Write::write_all(f, line.as_bytes()).ok();
                        }
                    }
                    n += 1;
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            peak
        })
    };
    // Wait for the exit without reaping (WNOWAIT), so the pid cannot be reused while the
    // sampler may still read it; then stop the sampler and reap with `wait4` for the CPU times.
    loop {
        // SAFETY: `siginfo_t` is plain data the kernel fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        assert_eq!(r, 0, "waitid on the measured child: {}", std::io::Error::last_os_error());
        break;
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    let peak_rss_kib = sampler.join().unwrap_or(0);
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain data the kernel fills in; `pid` is our own un-reaped child
    // (std's `Child` is never waited on afterwards, so nothing reaps it twice).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let wall = start.elapsed();
    assert_eq!(reaped, pid, "wait4 on the measured child: {}", std::io::Error::last_os_error());
    std::mem::forget(child);
    let exit_code = if libc::WIFEXITED(status) { Some(libc::WEXITSTATUS(status)) } else { None };
    Measured {
        exit_code,
        wall,
        peak_rss_kib,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

/// How often [`run`] samples the child's high-water mark.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// Peak resident memory of this process so far, in KiB (`VmHWM`), for in-process benchmarks.
pub fn own_peak_rss_kib() -> u64 {
    vm_hwm_kib("/proc/self/status")
}

/// `VmHWM` from a `/proc/<pid>/status` file, in KiB (0 once the process has exited).
fn vm_hwm_kib(status: &str) -> u64 {
    std::fs::read_to_string(status).ok().and_then(|s| status_field(&s, "VmHWM:")).unwrap_or(0)
}

/// The number after `key` (e.g. `VmRSS:`) in the text of a `/proc/<pid>/status` file.
fn status_field(status: &str, key: &str) -> Option<u64> {
    status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}
