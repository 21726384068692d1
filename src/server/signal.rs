//! SIGINT/SIGTERM -> graceful shutdown, through a self-pipe (the only thing a signal handler
//! may safely do is write a byte).

use std::{
    io,
    sync::{
        atomic::{AtomicI32, Ordering},
        Mutex, OnceLock, Weak,
    },
};

use super::Shutdown;

static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
static WATCHERS: Mutex<Vec<Weak<Shutdown>>> = Mutex::new(Vec::new());
static INSTALLED: OnceLock<io::Result<()>> = OnceLock::new();

extern "C" fn on_signal(_signal: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a live local.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
}

/// Makes SIGINT and SIGTERM start a graceful shutdown of `shutdown`; a second signal while
/// shutting down exits the process at once (status 130).
pub(crate) fn watch(shutdown: Weak<Shutdown>) -> io::Result<()> {
    WATCHERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(shutdown);
    match INSTALLED.get_or_init(install) {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    }
}

fn install() -> io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (read_fd, write_fd) = (fds[0], fds[1]);
    PIPE_WRITE.store(write_fd, Ordering::Relaxed);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a plain handler and an empty mask is valid; the
        // handler only calls write(2).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    std::thread::Builder::new()
        .name("ringsocket-signals".into())
        .spawn(move || {
            let mut seen = 0u32;
            loop {
                let mut byte = 0u8;
                // SAFETY: reading one byte into a live local from our own pipe.
                let n = unsafe { libc::read(read_fd, (&mut byte as *mut u8).cast(), 1) };
                if n <= 0 {
                    if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return;
                }
                seen += 1;
                if seen > 1 {
                    tracing::warn!("second signal: exiting without waiting for the drain");
                    std::process::exit(130);
                }
                tracing::info!("signal received: shutting down gracefully");
                let watchers = WATCHERS.lock().unwrap_or_else(|e| e.into_inner());
                for shutdown in watchers.iter().filter_map(Weak::upgrade) {
                    shutdown.trigger();
                }
            }
        })?;
    Ok(())
}
