//! The arguments of `anypop ctl` (clap definitions only: no I/O, no
//! rendering).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

/// `anypop ctl` arguments.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// API address (`host:port` or `http://host:port`).
    #[arg(long, env = "ANYPOP_API", global = true)]
    pub api: Option<String>,
    /// Bearer token for changes (and protected reads).
    #[arg(long, env = "ANYPOP_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, env = "ANYPOP_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Take the API address and token file from this anypop config.
    #[arg(long, env = "ANYPOP_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Give up on a request after this long (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = parse_timeout, global = true)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub command: CtlCommand,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// DNS first, wait, BGP graceful shutdown, wait, final action.
    Graceful,
    /// Straight to the final state.
    Immediate,
}

impl ModeArg {
    pub fn as_str(self) -> &'static str {
        match self {
            ModeArg::Graceful => "graceful",
            ModeArg::Immediate => "immediate",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Node, PoPs, announcements and BGP peers at a glance.
    Status,
    /// PoPs: state, health, DNS, reason, admin override.
    Pops,
    /// One PoP in detail.
    Pop { name: String },
    /// Every check with its last result and rise/fall counters.
    Checks,
    /// BGP peers.
    Peers,
    /// Take a PoP out of service (graceful by default).
    Drain {
        pop: String,
        /// Why (shown in state, events and logs).
        #[arg(long)]
        reason: Option<String>,
        /// Undrain automatically after this long (e.g. 30m, 2h).
        #[arg(long)]
        duration: Option<String>,
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// Allow draining the last PoP serving traffic.
        #[arg(long)]
        force: bool,
        /// Stay until the drain is complete, printing each step.
        #[arg(long)]
        wait: bool,
    },
    /// Put a drained PoP back in service (ramp by default).
    Undrain {
        pop: String,
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// Stay until the PoP is back in service, printing each step.
        #[arg(long)]
        wait: bool,
    },
    /// Disable a PoP: out of DNS, prefixes withdrawn at once.
    Disable {
        pop: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        force: bool,
    },
    /// Remove a PoP's admin override (disable or drain) at once.
    Enable { pop: String },
    /// Explain the DNS answer for a name.
    Explain {
        name: String,
        /// Query type (A, AAAA, ...).
        #[arg(long = "type", default_value = "A")]
        qtype: String,
        /// Client (or ECS subnet) address to answer for.
        #[arg(long)]
        client: Option<String>,
    },
    /// Stream state-change events (replay of recent ones first).
    Events {
        /// Replay at most this many past events.
        #[arg(long)]
        replay: Option<usize>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Reload the config file on the server (like SIGHUP).
    Reload,
    /// The fleet: peers and their reports, and per PoP the owner's
    /// verdict, each vantage point's, the admin state and the fleet verdict.
    Fleet,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        ctl: CtlArgs,
    }

    #[test]
    fn args_parse() {
        let c = Cli::try_parse_from([
            "ctl",
            "--api",
            "127.0.0.1:1",
            "drain",
            "ams",
            "--reason",
            "fibre",
            "--duration",
            "30m",
            "--mode",
            "immediate",
            "--force",
            "--json",
        ])
        .expect("parse");
        assert!(c.ctl.json);
        match c.ctl.command {
            CtlCommand::Drain {
                pop,
                reason,
                duration,
                mode,
                force,
                ..
            } => {
                assert_eq!(pop, "ams");
                assert_eq!(reason.as_deref(), Some("fibre"));
                assert_eq!(duration.as_deref(), Some("30m"));
                assert_eq!(mode, Some(ModeArg::Immediate));
                assert!(force);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["ctl", "drain", "ams", "--mode", "slow"]).is_err());
        assert!(Cli::try_parse_from(["ctl", "drain"]).is_err());
    }
}
