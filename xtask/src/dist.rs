//! `cargo xtask dist [--check]`: man pages and shell completions for `pop3d` and `pop3`, built
//! from the binaries' own clap definitions (compiled in here from their source files, so the
//! pages can never differ from `--help`), written to `target/dist/`: `man/NAME.1` for each
//! command and subcommand (`pop3d-serve.1`, ...), `completions/{bash,zsh,fish}/`.
//!
//! `--check` also renders every page with `man -l` and fails on any warning groff gives.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::{root, Result};

#[allow(dead_code)]
#[path = "../../crates/pop3d/src/cli.rs"]
mod pop3d_cli;

#[allow(dead_code)]
#[path = "../../crates/pop3-cli/src/args.rs"]
mod pop3_cli;

/// Entry point.
pub fn dist(args: &[String]) -> Result {
    let check = match args {
        [] => false,
        [flag] if flag == "--check" => true,
        _ => return Err("usage: cargo xtask dist [--check]".into()),
    };
    let out = root().join("target").join("dist");
    let _ = fs::remove_dir_all(&out);
    let mut pages = Vec::new();
    for command in [pop3d_cli::Cli::command(), pop3_cli::Cli::command()] {
        pages.extend(man_pages(command.clone(), &out.join("man"))?);
        completions(command, &out.join("completions"))?;
    }
    eprintln!("xtask: {} man pages and completions in {}", pages.len(), out.display());
    if check {
        for page in &pages {
            check_page(page)?;
        }
        eprintln!("xtask: every page renders with `man -l` without a warning");
    }
    Ok(())
}

/// Writes the page of `command` and of each of its subcommands (named `parent-sub`); returns
/// their paths.
fn man_pages(command: clap::Command, dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut command = command;
    command.build();
    let mut written = Vec::new();
    write_pages(&command, command.get_name().to_owned(), dir, &mut written)?;
    Ok(written)
}

fn write_pages(
    command: &clap::Command,
    name: String,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result {
    let page = command.clone().name(name.clone());
    let mut text = Vec::new();
    clap_mangen::Man::new(page).render(&mut text).map_err(|e| e.to_string())?;
    let path = dir.join(format!("{name}.1"));
    fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

fn completions(mut command: clap::Command, dir: &Path) -> Result {
    let name = command.get_name().to_owned();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let shell_dir = dir.join(shell.to_string());
        fs::create_dir_all(&shell_dir).map_err(|e| e.to_string())?;
        clap_complete::generate_to(shell, &mut command, &name, &shell_dir)
            .map_err(|e| format!("{shell} completion of {name}: {e}"))?;
    }
    Ok(())
}

/// Renders `page` as `man -l` does, with groff's warnings on; any warning is an error.
fn check_page(page: &Path) -> Result {
    let out = Command::new("man")
        .args(["--warnings", "-E", "UTF-8", "-l"])
        .arg(page)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .map_err(|e| format!("man: {e} (apt-get install man-db)"))?;
    let warnings = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !warnings.trim().is_empty() || out.stdout.is_empty() {
        return Err(format!("man -l {}: {}\n{}", page.display(), out.status, warnings.trim()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_groff_warns_about_fails_the_check() {
        if Command::new("man").arg("--version").output().is_err() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "man is missing and CI=true");
            eprintln!("SKIPPED: man is not installed (apt-get install man-db); NOT RUN");
            return;
        }
        let dir = tempfile_dir();
        let good = dir.join("good.1");
        fs::write(&good, ".TH GOOD 1\n.SH NAME\ngood \\- a page\n").unwrap();
        check_page(&good).unwrap();
        let bad = dir.join("bad.1");
        fs::write(&bad, ".TH BAD 1\n.SH NAME\nbad \\- a page\n.NOSUCHMACRO\n").unwrap();
        let err = check_page(&bad).unwrap_err();
        assert!(err.contains("NOSUCHMACRO"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-dist-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
