//! The README's retraining runbook stays runnable: every `leadrouter` line in it parses with
//! the real command line definition (the behaviour of each command is tested in model_ops.rs
//! and cli.rs).
use clap::Parser;
use leadrouter::cli::Cli;

use crate::helpers::repo_path;

fn runbook_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    let start = readme
        .find("## Retraining runbook")
        .expect("runbook section");
    let section = &readme[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
    section[..end]
        .lines()
        .map(str::trim)
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "leadrouter")?;
            // Only command lines: environment assignments may precede the binary.
            words[..at]
                .iter()
                .all(|w| w.contains('='))
                .then(|| words[at..].iter().map(|w| w.to_string()).collect())
        })
        .collect()
}

#[test]
fn every_runbook_command_parses() {
    let commands = runbook_commands();
    let names: Vec<&str> = commands.iter().map(|c| c[1].as_str()).collect();
    for needed in [
        "export-outcomes",
        "train",
        "compare",
        "promote",
        "model-health",
    ] {
        assert!(names.contains(&needed), "runbook lacks {needed}: {names:?}");
    }
    for c in &commands {
        if let Err(e) = Cli::try_parse_from(c) {
            panic!("README runbook line does not parse: {}\n{e}", c.join(" "));
        }
    }
    assert!(Cli::try_parse_from(["leadrouter", "promote", "--modle", "x"]).is_err());
}
