//! `kiln-train`: the training command line. Each subcommand maps its flags onto the library's
//! options (`kiln_train::lm::LmOptions`, `kiln_train::gan::GanOptions`, …), which hold every
//! default and check; this binary prints what the library returns.

mod eval;
mod gan;
mod lm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Train kiln models on libtorch and export them to ONNX for the `kiln` inference binary.
#[derive(Parser, Debug)]
#[command(name = "kiln-train", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a word-level next-word LSTM and export it to ONNX.
    Lm(lm::LmArgs),
    /// Train a GAN (2-D mixtures, Fashion-MNIST, IDX or picture folders) and export its generator.
    Gan(gan::GanArgs),
    /// Measure an exported generator's samples: PacGAN's mode metrics (2-D) or classifier-based
    /// Inception Score, Fréchet distance and class histogram (Fashion-MNIST).
    Eval(eval::EvalArgs),
}

fn main() -> ExitCode {
    // Training logs go to stdout with println!: behave like other Unix tools when the reader
    // goes away (`kiln-train … | head`) and end quietly instead of panicking on a closed pipe.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Eval(_)) {
        stop_on_signal();
    }
    let result = match cli.command {
        Command::Lm(args) => lm::run(args),
        Command::Gan(args) => gan::run(args),
        Command::Eval(args) => eval::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            // 128 + SIGINT, as a shell reports a command ended by Ctrl-C.
            if err.is::<kiln_train::run::Interrupted>() {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Ctrl-C (or SIGTERM/SIGHUP) ends a run at its next step, keeping the checkpoints saved so
/// far and writing nothing more; a second one ends the process at once, as does the first
/// before training has begun (while data is read). Files are written to a temporary name and
/// renamed, so neither leaves half a file.
fn stop_on_signal() {
    let _ = ctrlc::set_handler(|| {
        if !kiln_train::run::training_began() {
            kiln_infer::fsx::remove_temporaries();
            eprintln!("\ninterrupted before training began: nothing was written");
            std::process::exit(130);
        }
        if kiln_train::run::stop_requested() {
            kiln_infer::fsx::remove_temporaries();
            std::process::exit(130);
        }
        kiln_train::run::request_stop();
        eprintln!("\nstopping at the next step (again to quit at once)");
    });
}
