//! What every example shares: the common flags, logging, and serving until SIGINT/SIGTERM.
//! (`examples/support/` has no `main.rs`, so cargo does not take it for an example.)
//! Each example uses only part of it.
#![allow(dead_code)]

use ringsocket::{App, Server};

/// The flags every example takes: `--host` (default 127.0.0.1), `--port` (default 3000),
/// `--workers` (default: the CPUs this process may use), plus the example's own.
pub struct Args {
    pub host: String,
    pub port: u16,
    pub workers: Option<usize>,
    extra: Vec<(String, String)>,
    switches: Vec<String>,
}

impl Args {
    /// Parses the command line; `extra` names the example's own flags (each takes a value).
    /// A bad or unknown flag prints the usage and exits with status 2.
    pub fn parse(name: &str, extra: &[&str]) -> Self {
        Self::parse_with_switches(name, extra, &[])
    }

    /// As [`parse`](Self::parse), with `switches`: the example's own flags that take no value.
    pub fn parse_with_switches(name: &str, extra: &[&str], switches: &[&str]) -> Self {
        let mut args = Args {
            host: "127.0.0.1".into(),
            port: 3000,
            workers: None,
            extra: Vec::new(),
            switches: Vec::new(),
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            if switches.contains(&flag.as_str()) {
                args.switches.push(flag);
                continue;
            }
            let value = it
                .next()
                .unwrap_or_else(|| usage(name, extra, &format!("{flag} needs a value")));
            match flag.as_str() {
                "--host" => args.host = value,
                "--port" => {
                    args.port = value
                        .parse()
                        .unwrap_or_else(|_| usage(name, extra, "bad --port"))
                }
                "--workers" => {
                    args.workers = Some(
                        value
                            .parse()
                            .unwrap_or_else(|_| usage(name, extra, "bad --workers")),
                    )
                }
                other if extra.contains(&other) => args.extra.push((flag, value)),
                _ => usage(name, extra, &format!("unknown flag {flag}")),
            }
        }
        args
    }

    /// Whether one of the example's own switches was given.
    pub fn has(&self, switch: &str) -> bool {
        self.switches.iter().any(|s| s == switch)
    }

    /// The value of one of the example's own flags, parsed; exits with the usage if invalid.
    pub fn get<T: std::str::FromStr>(&self, name: &str, flag: &str) -> Option<T> {
        let (_, value) = self.extra.iter().rev().find(|(f, _)| f == flag)?;
        Some(
            value
                .parse()
                .unwrap_or_else(|_| usage(name, &[flag], &format!("bad {flag}"))),
        )
    }
}

fn usage(name: &str, extra: &[&str], problem: &str) -> ! {
    let own: String = extra.iter().map(|f| format!(" [{f} V]")).collect();
    eprintln!("{name}: {problem}\nusage: {name} [--host H] [--port P] [--workers N]{own}");
    std::process::exit(2);
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// Listens, prints the `listening on ADDR` line, and runs until SIGINT/SIGTERM (then a
/// graceful shutdown: clients get 1001).
pub fn serve(name: &str, app: App, args: &Args) {
    serve_server(name, Server::new(app), args);
}

/// As [`serve`], for a server the example has configured itself.
pub fn serve_server(name: &str, mut server: Server, args: &Args) {
    if let Some(workers) = args.workers {
        server = server.workers(workers);
    }
    let server = match server.listen((args.host.as_str(), args.port)) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("{name}: cannot listen on {}:{}: {e}", args.host, args.port);
            std::process::exit(1);
        }
    };
    // Before the ready line, so a supervisor that signals as soon as it sees it is honoured.
    if let Err(e) = server.watch_signals() {
        eprintln!("{name}: cannot watch SIGINT/SIGTERM: {e}");
    }
    println!(
        "listening on {} ({} workers, {})",
        server.local_addr(),
        server.workers(),
        server.driver()
    );
    server.run();
}
