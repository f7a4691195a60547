//! `loadgen`: measures a Matrix homeserver through the standard client-server
//! API only, so the same run measures Plexus, Synapse or any other server.
//! Every scenario prints a human summary and one JSON line. Every loop is
//! bounded in count and time.

mod client;
mod scenarios;
mod stats;

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug, Clone)]
#[command(name = "loadgen", about = "Load generator for Matrix homeservers")]
pub struct Cli {
    /// The homeserver's client-server API base URL.
    #[arg(long, default_value = "http://127.0.0.1:8008")]
    pub base_url: String,
    /// Registration token, when the server registers by token.
    #[arg(long)]
    pub registration_token: Option<String>,
    /// PID of the server process, to read its memory from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// How clients receive events: long-poll `/sync` or the Plexus WebSocket extension.
    #[arg(long, value_enum, default_value_t = Transport::Longpoll)]
    pub transport: Transport,
    /// A label for the JSON output (the server's name).
    #[arg(long, default_value = "server")]
    pub label: String,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Longpoll,
    Ws,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// Two users in one room; B waits in sync; A sends N messages one at a time.
    Latency {
        #[arg(long, default_value_t = 200)]
        messages: usize,
    },
    /// One room with M members all syncing; one sender at R messages/s.
    Fanout {
        #[arg(long, default_value_t = 100)]
        members: usize,
        #[arg(long, default_value_t = 5.0)]
        rate: f64,
        #[arg(long, default_value_t = 50)]
        messages: usize,
    },
    /// P sender/receiver pairs in their own rooms, W sends in flight each, for T seconds.
    Throughput {
        #[arg(long, default_value_t = 10)]
        pairs: usize,
        #[arg(long, default_value_t = 4)]
        in_flight: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// C concurrent syncs held open for S seconds; server memory before and during.
    Idle {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// A user in R rooms with E messages each: time a fresh /sync, and /messages over 1,000 events.
    InitialSync {
        #[arg(long, default_value_t = 50)]
        rooms: usize,
        #[arg(long, default_value_t = 100)]
        events: usize,
    },
    /// A room with S members: time for one more user to join and get its first sync.
    Join {
        #[arg(long, default_value_t = 100)]
        members: usize,
    },
    /// N messages over 10 rooms, one of them holding a unique word: time
    /// `/search` for that word (ranked) and for a common word (recent first).
    Search {
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        #[arg(long, default_value_t = 50)]
        queries: usize,
    },
    /// One message with R reactions (and a few replies in a thread): time
    /// `/relations` paged through all of them, its first page, and `/event`
    /// carrying the bundled aggregations.
    Relations {
        #[arg(long, default_value_t = 1000)]
        reactions: usize,
        #[arg(long, default_value_t = 50)]
        queries: usize,
    },
    /// A user in R rooms: a fresh sliding sync (MSC4186) of the 20 most
    /// active (timeline limit 1, Element X's required state), then N
    /// messages' latency through sliding sync and through `/sync`.
    SlidingSync {
        #[arg(long, default_value_t = 300)]
        rooms: usize,
        #[arg(long, default_value_t = 50)]
        messages: usize,
    },
}

/// The longest any single wait in a scenario may take.
pub const WAIT_LIMIT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let result = match cli.scenario.clone() {
        Scenario::Latency { messages } => scenarios::latency(&cli, messages).await?,
        Scenario::Fanout { members, rate, messages } => scenarios::fanout(&cli, members, rate, messages).await?,
        Scenario::Throughput { pairs, in_flight, seconds } => {
            scenarios::throughput(&cli, pairs, in_flight, seconds).await?
        }
        Scenario::Idle { connections, seconds } => scenarios::idle(&cli, connections, seconds).await?,
        Scenario::InitialSync { rooms, events } => scenarios::initial_sync(&cli, rooms, events).await?,
        Scenario::Join { members } => scenarios::join(&cli, members).await?,
        Scenario::SlidingSync { rooms, messages } => scenarios::sliding_sync(&cli, rooms, messages).await?,
        Scenario::Search { messages, queries } => scenarios::search(&cli, messages, queries).await?,
        Scenario::Relations { reactions, queries } => scenarios::relations(&cli, reactions, queries).await?,
    };
    println!("{}", result.summary);
    println!("{}", result.json);
    Ok(())
}
