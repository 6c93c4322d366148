//! The `loadgen` command line: `loadgen run [target] <scenario> [args]` or
//! `loadgen compare --a CMD --b CMD <scenario> [args]`. Prints one JSON summary line on stdout and exits
//! 1 when a guarantee did not hold (a lost or doubled chat, a gap, a failed connection).

use clap::{Parser, Subcommand};
use loadgen::{
    compare,
    conn::{Sources, Target},
    measure::Processes,
    protocol::Protocol,
    scenario::{Env, Scenario},
};
use std::net::SocketAddr;

/// Load generator for the chat server and the baseline relays. See BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// No progress lines on stderr.
    #[arg(long, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one scenario against a running server.
    Run {
        /// The server's address; repeat for several nodes (clients are spread over them in turn).
        #[arg(long = "addr", default_value = "127.0.0.1:8080")]
        addrs: Vec<SocketAddr>,
        /// Its protocol.
        #[arg(long, value_enum, default_value = "chat")]
        protocol: Protocol,
        /// A server process whose CPU and memory are reported (with its descendants); repeatable.
        #[arg(long = "server-pid")]
        server_pids: Vec<u32>,
        /// Local addresses to connect from (127.0.0.1 up to 127.0.0.N); by default enough for the clients.
        #[arg(long)]
        sources: Option<usize>,
        #[command(subcommand)]
        scenario: Scenario,
    },
    /// Runs one scenario against two servers in turns (A B A B), each started afresh and pinned, and
    /// prints the ratios A/B of the medians.
    Compare {
        #[command(flatten)]
        args: compare::Args,
        #[command(subcommand)]
        scenario: Scenario,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One thread: pin the generator to a core of its own with taskset; its CPU is reported.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let summary = runtime.block_on(async {
        match cli.command {
            Command::Run {
                addrs,
                protocol,
                server_pids,
                sources,
                scenario,
            } => {
                let env = Env {
                    target: Target {
                        addrs,
                        protocol,
                        sources: sources.map_or_else(
                            || Sources::for_connections(scenario.connections()),
                            Sources::loopback,
                        ),
                    },
                    processes: Processes::new(server_pids),
                    progress: !cli.quiet,
                };
                anyhow::Ok(scenario.run(&env).await?)
            }
            Command::Compare { args, scenario } => {
                anyhow::Ok(compare::run(&args, &scenario, !cli.quiet).await?)
            }
        }
    })?;
    println!("{summary}");
    let ok = |v: &serde_json::Value| v["ok"].as_bool() != Some(false);
    let all_ok = ok(&summary)
        && ["a", "b"].iter().all(|side| {
            summary[side]
                .as_array()
                .is_none_or(|runs| runs.iter().all(ok))
        });
    if !all_ok {
        std::process::exit(1);
    }
    Ok(())
}
