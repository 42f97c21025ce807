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
    let result = match cli.command {
        Command::Lm(args) => lm::run(args),
        Command::Gan(args) => gan::run(args),
        Command::Eval(args) => eval::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
