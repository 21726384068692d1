//! Shared pieces of ringsocket's benchmark: the load generator's JSON report (written by
//! `loadgen --json`, read by the `bench` runner), the small `/proc` and `getrusage` helpers
//! both binaries use, and what the peer servers share (listener, signal handling).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};

/// A nonblocking `SO_REUSEPORT` listener (backlog 1024), so every worker of a peer server can
/// have its own: monoio's and tokio's `from_std` both keep the descriptor's mode, and both need
/// it nonblocking.
///
/// # Errors
///
/// Socket, bind or listen errors.
pub fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The WebSocket upgrade as the raw ceilings (`raw-echo`, `uring-echo`) answer it: find the
/// end of the request head, take its `Sec-WebSocket-Key`, answer 101. Nothing else of HTTP.
pub mod upgrade {
    /// Largest upgrade request head accepted.
    pub const MAX_HEAD: usize = 8 * 1024;
    /// Answer to a head over [`MAX_HEAD`].
    pub const HEAD_TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    /// Answer to a request without `Sec-WebSocket-Key`.
    pub const BAD_REQUEST: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

    /// End of the head (index just past `\r\n\r\n`), searching from a little before `from`
    /// (where the previous read ended).
    pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
        let start = from.saturating_sub(3);
        buf[start..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| start + i + 4)
    }

    /// The `Sec-WebSocket-Key` header's value.
    pub fn websocket_key(head: &[u8]) -> Option<&[u8]> {
        head.split(|&b| b == b'\n').skip(1).find_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let (name, value) = line.split_at(colon);
            name.eq_ignore_ascii_case(b"sec-websocket-key")
                .then(|| value[1..].trim_ascii())
                .filter(|v| !v.is_empty())
        })
    }

    /// The 101 answer to a request carrying `key`.
    pub fn switching_protocols(key: &[u8]) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            ringsocket::proto::accept_key(key)
        )
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nsec-websocket-key:  dGhlIHNhbXBsZSBub25jZQ== \r\n\r\nrest";

        #[test]
        fn head_end_is_found_across_reads() {
            assert_eq!(find_head_end(REQUEST, 0), Some(REQUEST.len() - 4));
            // The previous read ended inside the terminator.
            assert_eq!(
                find_head_end(REQUEST, REQUEST.len() - 6),
                Some(REQUEST.len() - 4)
            );
            assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r", 0), None);
        }

        #[test]
        fn key_and_answer_follow_rfc_6455() {
            let key = websocket_key(REQUEST);
            assert_eq!(key, Some(&b"dGhlIHNhbXBsZSBub25jZQ=="[..]));
            assert_eq!(
                websocket_key(b"GET / HTTP/1.1\r\nSec-WebSocket-Key: \r\n\r\n"),
                None
            );
            assert_eq!(
                switching_protocols(b"dGhlIHNhbXBsZSBub25jZQ=="),
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
            );
        }
    }
}

/// One load generator run, as printed by `loadgen --json` (a single JSON object on stdout).
///
/// Fields that do not apply to a mode (latency in `idle`, RSS growth in `echo`, the server
/// fields without `--server-pid`) are `null`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadgenReport {
    /// `echo`, `idle` or `connect`.
    pub mode: String,
    /// Connections asked for (`connect`: concurrent tasks).
    pub connections: usize,
    /// Connections that completed their handshake during ramp-up (`connect`: tasks).
    pub open: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Whether echoes were expected verbatim (still masked): the raw TCP echo ceiling.
    pub raw: bool,
    /// Echoes (`connect`: completed connect-upgrade-echo-close cycles) in the counted window.
    pub messages: u64,
    /// Length of the counted window (`idle`: the hold).
    pub seconds: f64,
    /// `messages / seconds`.
    pub msgs_per_sec: f64,
    /// Send to full echo (`connect`: the whole cycle), in microseconds.
    pub p50_us: Option<f64>,
    /// 90th percentile, microseconds.
    pub p90_us: Option<f64>,
    /// 99th percentile, microseconds.
    pub p99_us: Option<f64>,
    /// 99.9th percentile, microseconds.
    pub p999_us: Option<f64>,
    /// Largest sample, microseconds.
    pub max_us: Option<f64>,
    /// Mean, microseconds.
    pub mean_us: Option<f64>,
    /// Connection errors of any kind (connect, handshake, I/O, protocol, wrong payload),
    /// counted from the first connection attempt to the end of the counted window.
    pub errors: u64,
    /// The first few distinct error messages.
    pub error_samples: Vec<String>,
    /// Payloads compared byte for byte with what was sent.
    pub verified: u64,
    /// Seconds spent opening and handshaking the connections before anything was timed.
    pub ramp_s: f64,
    /// Warm-up seconds (not counted).
    pub warmup_s: f64,
    /// The server's CPU time (user + system, all threads) over the counted window.
    pub server_cpu_s: Option<f64>,
    /// `server_cpu_s / seconds` in percent (100 = one core).
    pub server_cpu_pct: Option<f64>,
    /// `messages / server_cpu_s`.
    pub msgs_per_server_cpu_s: Option<f64>,
    /// Server RSS before the first connection, KiB.
    pub server_rss_start_kb: Option<u64>,
    /// Server RSS at the end of the counted window (`idle`: with every connection open), KiB.
    pub server_rss_end_kb: Option<u64>,
    /// `idle`: server RSS growth per open connection, bytes.
    pub bytes_per_conn: Option<f64>,
    /// The load generator's own CPU time over the counted window.
    pub loadgen_cpu_s: f64,
    /// `loadgen_cpu_s / seconds` in percent (100 = its whole core).
    pub loadgen_cpu_pct: f64,
    /// Non-idle time of the whole machine (every CPU, `/proc/stat`) over the counted window:
    /// what exceeds server + loadgen is other processes (noise).
    pub machine_busy_s: Option<f64>,
    /// Interrupt time (irq + softirq) of the whole machine over the counted window (included
    /// in `machine_busy_s`).
    pub machine_irq_s: Option<f64>,
    /// Steal time of the whole machine over the counted window (the hypervisor ran others).
    pub machine_steal_s: Option<f64>,
}

/// Makes SIGINT and SIGTERM end the process at once with status 0, even where the parent left
/// them ignored (a non-interactive shell's `&` ignores SIGINT in the child).
pub fn exit_on_signals() -> std::io::Result<()> {
    extern "C" fn on_signal(_: libc::c_int) {
        // SAFETY: _exit is async-signal-safe; nothing else runs in the handler.
        unsafe { libc::_exit(0) }
    }
    let handler = on_signal as extern "C" fn(libc::c_int);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs a handler that only calls _exit.
        if unsafe { libc::signal(signal, handler as libc::sighandler_t) } == libc::SIG_ERR {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The io_uring setup the load generator and `raw-echo` use, the same flags ringsocket's
/// workers ask for: completions post without interrupting the thread (`COOP_TASKRUN`) and
/// their task work runs only when the thread waits (`SINGLE_ISSUER | DEFER_TASKRUN`).
///
/// On loopback the sender runs the receiver's wake-up in its own context: with a plain ring
/// on the load generator, every echo the server writes also costs the *server* an
/// inter-processor interrupt to kick the load generator's thread (`kick_process` from
/// `io_poll_wake`, about a fifth of the server's CPU on the 2-core VM). A real client on
/// another machine costs the server nothing of the sort, so the load generator must not
/// either. The caller falls back to a plain ring where the kernel refuses these flags.
pub fn tuned_uring() -> io_uring::Builder {
    let mut builder = io_uring::IoUring::builder();
    builder
        .setup_coop_taskrun()
        .setup_single_issuer()
        .setup_defer_taskrun();
    builder
}

/// Process statistics from `/proc` and `getrusage`, and process set-up helpers.
pub mod sys {
    use std::io;

    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of `/proc/PID/stat` times.
    pub fn clock_ticks() -> f64 {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if ticks > 0 {
            ticks as f64
        } else {
            100.0
        }
    }

    /// CPU time (utime + stime, every thread) of process `pid`, in seconds.
    pub fn process_cpu_s(pid: u32) -> io::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The command name is in parentheses and may hold spaces: split after the last ')'.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or_else(|| io::Error::other("malformed /proc/PID/stat"))?;
        // Fields after the name start at field 3 (state); utime and stime are fields 14, 15.
        let mut fields = rest.split_ascii_whitespace().skip(11);
        let mut next = || -> io::Result<u64> {
            fields
                .next()
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| io::Error::other("malformed /proc/PID/stat"))
        };
        let ticks = next()? + next()?;
        Ok(ticks as f64 / clock_ticks())
    }

    /// Resident set size (`VmRSS`) of process `pid`, in KiB.
    pub fn process_rss_kb(pid: u32) -> io::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| io::Error::other("no VmRSS in /proc/PID/status"))
    }

    /// Whole-machine CPU times since boot, in seconds, summed over every CPU (`/proc/stat`).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct MachineTimes {
        /// user + nice + system + irq + softirq + steal: every CPU-second not idle. Guest
        /// time is inside user. Tick-based accounting charges interrupt work that lands in a
        /// process's context (loopback TCP processing) to that process as well, so this is
        /// what the processes' utime + stime must be compared with.
        pub busy: f64,
        /// irq + softirq alone.
        pub irq: f64,
        /// steal: the hypervisor ran something else.
        pub steal: f64,
    }

    /// See [`MachineTimes`].
    pub fn machine_times() -> io::Result<MachineTimes> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let line = stat
            .lines()
            .find(|l| l.starts_with("cpu "))
            .ok_or_else(|| io::Error::other("no cpu line in /proc/stat"))?;
        let v: Vec<u64> = line
            .split_ascii_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0) as f64;
        let ticks = clock_ticks();
        // user nice system idle iowait irq softirq steal guest guest_nice
        Ok(MachineTimes {
            busy: (at(0) + at(1) + at(2) + at(5) + at(6) + at(7)) / ticks,
            irq: (at(5) + at(6)) / ticks,
            steal: at(7) / ticks,
        })
    }

    /// This process's CPU time (user + system, every thread), in seconds.
    pub fn self_cpu_s() -> f64 {
        // SAFETY: getrusage writes into the zeroed struct we pass.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut usage);
            usage
        };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(usage.ru_utime) + tv(usage.ru_stime)
    }

    /// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
    pub fn raise_nofile_limit() -> io::Result<u64> {
        // SAFETY: plain syscalls on a local struct.
        unsafe {
            let mut lim: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return Err(io::Error::last_os_error());
            }
            if lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(lim.rlim_cur as u64)
        }
    }

    /// The CPUs this process may run on (`sched_getaffinity`, so `taskset` and cpusets count).
    pub fn allowed_cpus() -> Vec<usize> {
        // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this process.
        let cpus: Vec<usize> = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
                (0..libc::CPU_SETSIZE as usize)
                    .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
                    .collect()
            } else {
                Vec::new()
            }
        };
        if cpus.is_empty() {
            (0..std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
                .collect()
        } else {
            cpus
        }
    }

    /// Pins the calling thread (and whatever it spawns or execs later) to one CPU.
    ///
    /// Only a raw syscall: safe to call between `fork` and `exec` (`pre_exec`).
    pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
        // SAFETY: cpu_set_t is plain data; CPU_SET bounds-checks against its size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}
