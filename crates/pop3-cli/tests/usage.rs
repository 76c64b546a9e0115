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

/// A listener no test server answers on: what `pop3` must not even connect to.
fn untouched_listener() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("pop3://alice@127.0.0.1:{}", listener.local_addr().unwrap().port());
    (listener, url)
}

fn assert_untouched(listener: &std::net::TcpListener) {
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a server was contacted: {accepted:?}"
    );
}

/// An unknown account, a bad URL, a bad `--to` and bad values in the config file are usage
/// errors (exit 2), found before any server is contacted, even one named before them.
#[test]
fn mistakes_in_accounts_urls_targets_and_config_exit_2_before_any_connection() {
    let home = tempfile::tempdir().unwrap();
    let (listener, url) = untouched_listener();
    common::write_config(
        home.path(),
        &format!(
            "[accounts.good]\nurl = \"{url}\"\nno_tls = true\n\
             [accounts.badpolicy]\nurl = \"{url}\"\npolicy = \"purge\"\n\
             [accounts.badto]\nurl = \"{url}\"\nto = \"maildir\"\n\
             [accounts.badurl]\nurl = \"imap://alice@example.org\"\n"
        ),
    );
    let cases: &[(&[&str], &str)] = &[
        (&["check", "good", "nosuch"], "no account \"nosuch\""),
        (&["check", "good", "pop3://alice@"], "pop3://alice@"),
        (&["check", "good", "pop3://alice@host:99999"], "bad port"),
        (&["check", "badurl"], "badurl: url = imap://"),
        (&["fetch", "good", "--to", "maildir"], "--to \"maildir\": expected maildir:DIR"),
        (&["fetch", "good", "--to", "file:/tmp/x"], "--to \"file:/tmp/x\""),
        (&["fetch", "good", "badto"], "badto: to = \"maildir\""),
        (&["fetch", "good", "badpolicy"], "badpolicy: policy \"purge\""),
        (&["check", "good", "--auth", "magic"], "unknown auth \"magic\""),
        (&["check", "good", "--tls-fingerprint", "12:34"], "bad fingerprint"),
        (&["check", "--no-tls", "pop3s://alice@127.0.0.1:1"], "--no-tls with a pop3s:// URL"),
    ];
    for (args, message) in cases {
        // Bounded even if a server were contacted: the listener never answers.
        let out = run(pop3(home.path(), args).args(["--timeout", "2"]));
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains(message), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        assert_untouched(&listener);
    }
    // A config file that is not valid TOML, or has an unknown key.
    for text in ["[accounts.x\n", "[accounts.x]\nurl = \"pop3://a@b\"\ncolour = 1\n"] {
        common::write_config(home.path(), text);
        let out = run(&mut pop3(home.path(), &["check", "x"]));
        assert_eq!(out.code, 2, "{text:?}: {out:?}");
        assert!(out.stderr.contains("config.toml"), "{text:?}: {out:?}");
    }
}

/// `--help` lists the exit codes, for the program and for each command.
#[test]
fn help_lists_the_exit_codes() {
    let home = tempfile::tempdir().unwrap();
    for args in [&["--help"][..], &["fetch", "--help"], &["check", "--help"], &["list", "--help"]] {
        let out = run(&mut pop3(home.path(), args));
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        for line in ["Exit codes:", "0  new mail", "1  nothing new", "2  usage error", "3  ", "4  "]
        {
            assert!(out.stdout.contains(line), "{args:?} lacks {line:?}: {}", out.stdout);
        }
    }
}
