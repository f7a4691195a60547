//! The `plexus` command: runs the server, or manages it offline.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// Rust allocations go to mimalloc, built without transparent huge pages
/// (with them, a fresh server took 28 MB rather than 19). With glibc's
/// malloc a held sync cost 11 KB of RSS; with mimalloc's size-segregated
/// pages about 4 (`tools/loadgen idle`, 10,000 connections). Freed memory
/// goes back to the system on the allocator's next activity in that thread,
/// or when the thread ends (see the runtime's `thread_keep_alive`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// glibc, which still serves SQLite: allocations of 1 MiB and more come
/// straight from mmap, and at most 4 arenas.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; it is called once
    // at start, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

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

    // Idle blocking threads end after a second, not ten: a thread that
    // hashed a password holds the freed 19 MiB argon2 buffer in its
    // allocator heap until it ends or allocates again.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .build()
    {
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
                // The appservice registration files it names are checked too.
                plexus::appservice::registration::load(
                    &config.appservice.registration_files,
                    &config.server.server_name,
                )?;
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
