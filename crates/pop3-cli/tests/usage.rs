//! The `pop3` binary's answers to mistakes made before any server is contacted: its config
//! file, its accounts and its arguments.

mod common;

use common::{pop3, run};

/// A config file named with `--config` that does not exist is an error that names it; the
/// default config file may be missing (accounts can be URLs).
#[test]
fn a_missing_named_config_file_says_so() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("nowhere.toml");
    let out = run(pop3(home.path(), &["check", "--config"]).arg(&missing));
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(
        out.stderr.trim(),
        format!("pop3: {}: No such file or directory", missing.display()),
        "{out:?}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
    // Without --config, a missing default file means no configured account.
    let out = run(&mut pop3(home.path(), &["check"]));
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("no account given"), "{out:?}");
}
