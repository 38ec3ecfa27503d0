//! The `anypop` command line. Everything testable lives in the library;
//! this file only parses arguments and maps results to exit codes. Output
//! goes through [`anypop::ctl::output`], so a closed stdout ends a command
//! as it ends `cat`, never with a panic.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use anypop::ctl::output::{print, print_line};
use anypop::telemetry::{self, LogFormat};

/// Exit code for an invalid configuration.
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "anypop",
    version,
    about = "PoP routing controller: health-driven BGP anycast and DNS steering",
    long_about = "PoP routing controller: health-driven BGP anycast and DNS steering.\n\n\
        anypop runs beside the routers of a Point of Presence. It health-checks the \
        PoP's services, announces or withdraws the PoP's anycast prefixes over BGP \
        and answers an authoritative DNS zone that steers each client to the best \
        healthy PoP, both from one decided state. Operators drive it through a REST \
        API and `anypop ctl`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (built-in default config without --config).
    Run {
        /// Config file (YAML). Without it, the built-in default config runs.
        #[arg(long, short, env = "ANYPOP_CONFIG")]
        config: Option<PathBuf>,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Validate a config file and print a summary (exit 2 on errors).
    CheckConfig {
        /// Config file (YAML).
        file: PathBuf,
    },
    /// Print the built-in default config, commented, as a starting point.
    PrintDefaultConfig,
    /// Talk to a running anypop through its API (status, drain, explain...).
    Ctl(anypop::ctl::CtlArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: anypop::manual::Shell,
    },
    /// Write the man pages (anypop.1, anypop-ctl.1, ...) into a directory
    /// (for packages).
    ManPages {
        /// Output directory (created if missing).
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, log_format } => {
            telemetry::init(log_format);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("anypop")
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("anypop: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(anypop::daemon::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(anypop::daemon::RunError::Config(errors)) => {
                    eprintln!("anypop: invalid configuration:\n{errors}");
                    ExitCode::from(EXIT_CONFIG)
                }
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("anypop: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { file } => match anypop::config::load(&file) {
            Ok(config) => {
                print(&anypop::config::summary(&config));
                print_line(&format!("{}: configuration is valid", file.display()));
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!("{}: configuration has errors", file.display());
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Ctl(args) => {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("anypop: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(anypop::ctl::run(args)) {
                Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                Err(e) => {
                    eprintln!("anypop ctl: {e:#}");
                    ExitCode::from(u8::try_from(anypop::ctl::EXIT_UNREACHABLE).unwrap_or(2))
                }
            }
        }
        Command::PrintDefaultConfig => {
            print(anypop::config::DEFAULT_CONFIG_YAML);
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            anypop::manual::write_completions(Cli::command(), shell, &mut script);
            print(&String::from_utf8_lossy(&script));
            ExitCode::SUCCESS
        }
        Command::ManPages { dir } => match anypop::manual::write_man_pages(Cli::command(), &dir) {
            Ok(files) => {
                for f in files {
                    print_line(&f.display().to_string());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("anypop: cannot write man pages to {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
    }
}
