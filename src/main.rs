//! The `plexus` command: runs the server, or manages it offline.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// Rust allocations go to mimalloc. With glibc's malloc, memory freed by
/// one connection's buffers was rarely reused exactly, and a held sync cost
/// 11 KB of RSS; with mimalloc's size-segregated pages it costs under 5 KB
/// (`tools/loadgen idle`, 10,000 connections).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's options, by their index in `mi_option_e` (mimalloc 3's
/// `mimalloc.h`; libmimalloc-sys names only some of them).
const MI_OPTION_PURGE_DELAY: libc::c_int = 15;

unsafe extern "C" {
    fn mi_option_set(option: libc::c_int, value: libc::c_long);
}

/// Tunes both allocators for a server that should stay small when idle.
///
/// mimalloc: free memory goes back to the system at once rather than after
/// a delay that only later allocations would notice (an idle server kept
/// the 19 MiB argon2 buffer of its last login: 50 MB RSS instead of 21),
/// and arenas are committed page by page as they are used (fresh server
/// 28 MB → 20 MB).
///
/// glibc, which still serves SQLite: allocations of 1 MiB and more come
/// straight from mmap, and at most 4 arenas.
fn tune_allocator() {
    // SAFETY: these calls only change allocator parameters; they run once
    // at start, before any other thread exists.
    unsafe {
        mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
            libc::mallopt(libc::M_ARENA_MAX, 4);
        }
    }
}

use plexus::{Server, Services, config::Config};

#[derive(Parser)]
#[command(name = "plexus", version, about = "A Matrix homeserver")]
struct Cli {
    /// Configuration file (TOML). Without one, embedded defaults are used.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Check the configuration file and exit.
    CheckConfig,
    /// Manage accounts without a running server.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// TLS material for the federation listener.
    Tls {
        #[command(subcommand)]
        command: TlsCommand,
    },
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Write a self-signed certificate for the server name (development
    /// only: other servers must turn `verify_tls` off or trust it).
    SelfSigned {
        /// Directory for `federation.crt` and `federation.key`.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account.
    Add {
        /// The user name (localpart), e.g. `alice`.
        name: String,
        /// The password; without it the account can only be used once one is set.
        #[arg(long)]
        password: Option<String>,
        /// Make the account a server administrator.
        #[arg(long)]
        admin: bool,
    },
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let config = match &cli.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => Config::default(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.logging.level));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::CheckConfig => {
                eprintln!("configuration is valid");
                Ok(())
            }
            Command::User { command: UserCommand::Add { name, password, admin } } => {
                add_user(config, &name, password, admin).await
            }
            Command::Tls { command: TlsCommand::SelfSigned { out } } => {
                let (host, _) = plexus::federation::resolve::split_host_port(config.server.server_name.as_str());
                let (cert, key) =
                    plexus::federation::tls::write_self_signed(vec![host], &out).map_err(|e| anyhow::anyhow!(e))?;
                eprintln!(
                    "wrote {} and {}; set federation.tls_cert and federation.tls_key to them",
                    cert.display(),
                    key.display()
                );
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = Server::start(config).await?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
        _ = terminate() => tracing::info!("terminated; shutting down"),
    }
    server.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminate() {
    std::future::pending().await
}

async fn add_user(config: Config, name: &str, password: Option<String>, admin: bool) -> anyhow::Result<()> {
    let services = Services::open(config).await?;
    let user_id = services.users.create_user_directly(name, password, admin).await?;
    services.db.close();
    eprintln!("created {user_id}{}", if admin { " (admin)" } else { "" });
    Ok(())
}
