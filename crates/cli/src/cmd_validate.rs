//! `rein validate FILE`: every error and warning, each naming file, line and
//! key.

use crate::EXIT_USAGE;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ValidateArgs {
    /// The agent file.
    file: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<u8> {
    let report = rein::config::validate_agent(&args.file);
    let errors: Vec<_> = report.errors().collect();
    let warnings: Vec<_> = report.warnings().collect();
    if args.json {
        let to_json = |d: &&rein::config::Diagnostic| {
            serde_json::json!({
                "file": d.file.display().to_string(),
                "line": d.line,
                "column": d.column,
                "key": d.key,
                "message": d.message,
            })
        };
        let body = serde_json::json!({
            "file": args.file.display().to_string(),
            "valid": errors.is_empty(),
            "errors": errors.iter().map(to_json).collect::<Vec<_>>(),
            "warnings": warnings.iter().map(to_json).collect::<Vec<_>>(),
        });
        println!("{body:#}");
    } else {
        for diagnostic in errors.iter().chain(warnings.iter()) {
            eprintln!("{diagnostic}");
        }
        if errors.is_empty() {
            println!("{}: valid ({} warning(s))", args.file.display(), warnings.len());
        } else {
            eprintln!("{}: {} error(s), {} warning(s)", args.file.display(), errors.len(), warnings.len());
        }
    }
    Ok(if errors.is_empty() { 0 } else { EXIT_USAGE })
}
